/** The admin listener wired into startServer: metrics reflect real traffic; it is never the public port. */
import { afterEach, expect, test } from "bun:test";
import { ConfigError, makeConfig } from "../../src/config.ts";
import { startServer } from "../../src/server.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

function sample(text: string, name: string, labels: string): number {
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`${name}{${labels}}`) || (labels === "" && l.startsWith(`${name} `)));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

test("/metrics counts requests by route and status, and decisions by outcome and reason", async () => {
  const server = await startServer(
    makeConfig({ listen: { host: "127.0.0.1", port: 0 }, adminListen: { host: "127.0.0.1", port: 0 } }),
    { log: silentLogger },
  );
  stops.push(() => server.stop());
  expect(server.adminUrl).not.toBeNull();
  expect(server.adminUrl).not.toBe(server.url);
  for (let i = 0; i < 3; i++)
    expect((await fetch(`${server.url}/ad_request?country=us&lang=eng`)).status).toBe(200);
  expect((await fetch(`${server.url}/ad_request?country=de&lang=jpn`)).status).toBe(404);
  expect((await fetch(`${server.url}/ad_request?country=zz&lang=eng`)).status).toBe(400);
  expect((await fetch(`${server.url}/ad_request`, { method: "POST" })).status).toBe(405);
  expect((await fetch(`${server.url}/no/such/path/123`)).status).toBe(404);

  const res = await fetch(`${server.adminUrl}/metrics`);
  expect(res.headers.get("content-type")).toContain("text/plain");
  const text = await res.text();
  expect(sample(text, "adsrv_http_requests_total", 'route="ad_request",code="200"')).toBe(3);
  expect(sample(text, "adsrv_http_requests_total", 'route="ad_request",code="404"')).toBe(1);
  expect(sample(text, "adsrv_http_requests_total", 'route="ad_request",code="400"')).toBe(1);
  expect(sample(text, "adsrv_http_requests_total", 'route="ad_request",code="405"')).toBe(1);
  expect(sample(text, "adsrv_http_requests_total", 'route="not_found",code="404"')).toBe(1);
  expect(sample(text, "adsrv_decisions_total", 'outcome="fill"')).toBe(3);
  expect(sample(text, "adsrv_decisions_total", 'outcome="nofill",reason="no_ad_for_country_lang"')).toBe(1);
  expect(text).not.toContain("/no/such/path"); // bounded labels: never the raw path
  expect(sample(text, "adsrv_catalog_ads", "")).toBe(60);

  // Admin routes are not on the public port.
  expect((await fetch(`${server.url}/metrics`)).status).toBe(404);
  expect((await fetch(`${server.url}/dashboard`)).status).toBe(404);
});

test("an admin address equal to the public one is refused", () => {
  expect(() =>
    makeConfig({ listen: { host: "127.0.0.1", port: 8080 }, adminListen: { host: "127.0.0.1", port: 8080 } }),
  ).toThrow(ConfigError);
});

test("an admin port already taken degrades observability, not serving", async () => {
  const taken = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("x") });
  try {
    const server = await startServer(
      makeConfig({
        listen: { host: "127.0.0.1", port: 0 },
        adminListen: { host: "127.0.0.1", port: taken.port as number },
      }),
      { log: silentLogger },
    );
    stops.push(() => server.stop());
    expect(server.adminUrl).toBeNull();
    expect((await fetch(`${server.url}/ad_request?country=us&lang=eng`)).status).toBe(200);
  } finally {
    await taken.stop(true);
  }
});

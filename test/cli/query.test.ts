/**
 * `adsrv query` through the real executable against an in-process server (startServer, port 0,
 * clock fixed at a UTC hour), plus src/client.ts directly.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { adRequestUrl, requestAd } from "../../src/client.ts";
import { makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { createLogger } from "../../src/telemetry/log.ts";
import { ROOT, runCli } from "../rig.ts";

const ROTATION = join(ROOT, "test", "fixtures", "catalog-tools-rotation.json");
/** At 07:xx UTC, us/eng rotates allday-1, morning, allday-2 (see the fixture); fr/fra is outside hours. */
const HOUR = 7;
const US_ENG_AT_7 = ["allday-1", "morning", "allday-2"];

/** A server of its own for one test: rotation counters are per server. */
async function server(): Promise<RunningServer & AsyncDisposable> {
  const running = await startServer(
    makeConfig({ listen: { host: "127.0.0.1", port: 0 }, catalog: ROTATION, refreshSeconds: 3600 }),
    { now: () => Date.UTC(2026, 0, 15, HOUR, 30), log: createLogger({ write: () => {} }) },
  );
  await running.ready;
  if (running.holder.current === null) throw new Error("the fixture catalog did not load");
  return Object.assign(running, { [Symbol.asyncDispose]: () => running.stop() });
}

/** A loopback port with nothing listening: bound, then released. */
async function closedPort(): Promise<number> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const port = s.port as number;
  await s.stop(true);
  return port;
}

interface Seen {
  url: string;
  headers: Headers;
}

/** A stand-in server that records requests and answers with `respond`. */
function recorder(respond: () => Response | Promise<Response>) {
  const seen: Seen[] = [];
  const first = Promise.withResolvers<void>();
  const s = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch(req) {
      seen.push({ url: req.url, headers: req.headers });
      first.resolve();
      return respond();
    },
  });
  return {
    url: `http://127.0.0.1:${s.port}`,
    seen,
    /** Settles when the first request has arrived. */
    firstRequest: first.promise,
    [Symbol.asyncDispose]: () => s.stop(true),
  };
}

describe("adsrv query", () => {
  test("--help has examples and the default server", async () => {
    const r = await runCli(["query", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Examples:");
    expect(r.stdout).toContain("$ adsrv query us eng");
    expect(r.stdout).toContain("http://127.0.0.1:8080");
    expect(r.stdout).toContain("ADSRV_SERVER");
  });

  test("prints the ad, its status and latency; --json shape; exit 0", async () => {
    await using s = await server();
    const [human, json] = await Promise.all([
      runCli(["query", "us", "eng", "--server", s.url]),
      runCli(["query", "US", "en-US", "--server", s.url, "--json"]),
    ]);
    expect(human.code).toBe(0);
    const [head, ...rest] = human.stdout.split("\n");
    expect(head).toMatch(
      new RegExp(
        `^200 OK {2}\\d+\\.\\d ms {2}${s.url.replaceAll(".", "\\.")}/ad_request\\?country=us&lang=eng$`,
      ),
    );
    const ad = JSON.parse(rest.join("\n"));
    expect(US_ENG_AT_7).toContain(ad.id);
    expect(ad.video_url).toBe(`https://cdn.example.com/${ad.id}.mp4`);

    expect(json.code).toBe(0);
    const j = JSON.parse(json.stdout);
    expect(Object.keys(j).sort()).toEqual(["ad", "latency_ms", "ok", "status", "url"]);
    expect(j).toMatchObject({ ok: true, status: 200, url: `${s.url}/ad_request?country=US&lang=en-US` });
    expect(US_ENG_AT_7).toContain(j.ad.id);
    expect(j.latency_ms).toBeGreaterThan(0);
  });

  test("a 404 or 400 prints the problem details and exits 1", async () => {
    await using s = await server();
    const [noAd, outside, bad, badJson] = await Promise.all([
      runCli(["query", "de", "deu", "--server", s.url]),
      runCli(["query", "fr", "fre", "--server", s.url, "--json"]),
      runCli(["query", "xx", "eng", "--server", s.url]),
      runCli(["query", "us", "klingon", "--server", s.url, "--json"]),
    ]);
    expect(noAd.code).toBe(1);
    expect(noAd.stdout).toMatch(/^404 No ad available {2}\d+\.\d ms/);
    const problem = JSON.parse(noAd.stdout.slice(noAd.stdout.indexOf("\n") + 1));
    expect(problem).toMatchObject({
      type: "urn:adsrv:problem:no-fill",
      status: 404,
      reason: "no_ad_for_country_lang",
    });

    expect(outside.code).toBe(1);
    const o = JSON.parse(outside.stdout);
    expect(o).toMatchObject({
      ok: false,
      status: 404,
      problem: { reason: "outside_hours" },
      retry_after: null,
    });

    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("400 Invalid request parameter");
    expect(bad.stdout).toContain('"param": "country"');
    expect(badJson.code).toBe(1);
    expect(JSON.parse(badJson.stdout).problem.param).toBe("lang");
  });

  test("--count N: the distribution over N calls is even for a rotation", async () => {
    await using s = await server();
    const r = await runCli(["query", "us", "eng", "--server", s.url, "--count", "9", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: true, requested: 9, completed: 9, problems: {}, error: null });
    expect(j.ads).toEqual({ "allday-1": 3, morning: 3, "allday-2": 3 });
    // A fresh server starts its rotation at the first ad, in catalog order.
    expect(j.sequence).toEqual([...US_ENG_AT_7, ...US_ENG_AT_7, ...US_ENG_AT_7]);
    expect(Object.keys(j.latency_ms).sort()).toEqual(["max", "min", "p50", "p95", "p99"]);
    expect(j.latency_ms.min).toBeLessThanOrEqual(j.latency_ms.max);

    const human = await runCli(["query", "us", "eng", "--server", s.url, "--count", "6"]);
    expect(human.code).toBe(0);
    const lines = human.stdout.split("\n");
    expect(lines[0]).toMatch(/^6 of 6 requests to \S+ in \d+\.\d ms$/);
    for (const id of US_ENG_AT_7) {
      expect(lines.find((l) => l.trimStart().startsWith(`${id} `))).toMatch(/ 2 +33\.3% +█{10}$/);
    }
    expect(human.stdout).toMatch(/latency: min \d+\.\d ms {2}p50 /);
  });

  test("--count with problem answers: counted by status and reason, exit 1", async () => {
    await using s = await server();
    const r = await runCli(["query", "fr", "fra", "--server", s.url, "--count", "4", "--json"]);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: false, completed: 4, ads: {}, problems: { "404 outside_hours": 4 } });
    expect(j.sequence).toEqual([null, null, null, null]);
  });

  test("an unreachable server (closed port): exit 1, stops at the first failure", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const [one, json, many] = await Promise.all([
      runCli(["query", "us", "eng", "--server", url]),
      runCli(["query", "us", "eng", "--server", url, "--json"]),
      runCli(["query", "us", "eng", "--server", url, "--count", "50", "--json"]),
    ]);
    expect(one.code).toBe(1);
    expect(one.stdout).toBe("");
    expect(one.stderr).toContain(`error: cannot reach ${url}`);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, status: null, error: { kind: "connect" } });
    expect(many.code).toBe(1);
    const m = JSON.parse(many.stdout);
    expect(m).toMatchObject({ ok: false, requested: 50, completed: 0, error: { kind: "connect" } });
    expect(m.sequence).toEqual([null]);
  });

  test("sends credentials and player_id; env twins; never prints the secrets", async () => {
    await using rec = recorder(() =>
      Response.json({ id: "rec-1", video_url: "https://cdn.example.com/r.mp4" }),
    );
    const [withKey, withToken] = await Promise.all([
      runCli(["query", "us", "eng", "--server", rec.url, "--api-key", "k-secret-1", "--player-id", "p 42"]),
      runCli(["query", "gb", "en", "--json"], {
        env: { ADSRV_SERVER: rec.url, ADSRV_TOKEN: "eyJ.tok.en" },
      }),
    ]);
    expect(withKey.code).toBe(0);
    expect(withToken.code).toBe(0);
    const byCountry = (c: string) => rec.seen.find((s) => new URL(s.url).searchParams.get("country") === c);
    const a = byCountry("us");
    expect(a?.headers.get("x-api-key")).toBe("k-secret-1");
    expect(a?.headers.get("authorization")).toBeNull();
    expect(new URL(a?.url ?? "").searchParams.get("player_id")).toBe("p 42");
    const b = byCountry("gb");
    expect(b?.headers.get("authorization")).toBe("Bearer eyJ.tok.en");
    expect(b?.headers.get("x-api-key")).toBeNull();
    expect(new URL(b?.url ?? "").pathname).toBe("/ad_request");
    for (const r of [withKey, withToken]) {
      expect(r.stdout + r.stderr).not.toContain("k-secret-1");
      expect(r.stdout + r.stderr).not.toContain("eyJ.tok.en");
    }
    expect(JSON.parse(withToken.stdout).ad.id).toBe("rec-1");
  });

  test("a 200 that is not an ad, and a server that never answers: exit 1", async () => {
    await using junk = recorder(() => new Response("<html>hello</html>"));
    await using hang = recorder(() => new Promise<Response>(() => {}));
    const [notAd, slow] = await Promise.all([
      runCli(["query", "us", "eng", "--server", junk.url]),
      runCli(["query", "us", "eng", "--server", hang.url, "--timeout", "0.3"]),
    ]);
    expect(notAd.code).toBe(1);
    expect(notAd.stderr).toContain("200 answer is not an ad");
    expect(slow.code).toBe(1);
    expect(slow.stderr).toContain("within 300 ms");
  });

  test("usage errors exit 2", async () => {
    const cases: [string[], string][] = [
      [["query", "us"], "missing required argument 'lang'"],
      [["query", "us", "eng", "--count", "0"], "--count must be an integer of at least 1"],
      [["query", "us", "eng", "--api-key", "k", "--token", "t"], "cannot be used with option"],
      [["query", "us", "eng", "--server", "ftp://x"], "is not an http(s) URL"],
      [["query", "us", "eng", "--server", "nope"], "is not a URL"],
      [["query", "us", "eng", "--bogus"], "unknown option '--bogus'"],
      [["query", "us", "eng", "--timeout", "0"], "--timeout must be a positive number"],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    for (const [i, [, message]] of cases.entries()) {
      expect(results[i]?.code).toBe(2);
      expect(results[i]?.stderr).toContain(message);
    }
  });
});

describe("src/client.ts", () => {
  test("adRequestUrl keeps a path prefix and encodes the parameters", () => {
    expect(adRequestUrl("http://h:1", { country: "us", lang: "eng" }).toString()).toBe(
      "http://h:1/ad_request?country=us&lang=eng",
    );
    expect(adRequestUrl("https://h/adsrv/", { country: "a&b", lang: "é", playerId: "p=1" }).toString()).toBe(
      "https://h/adsrv/ad_request?country=a%26b&lang=%C3%A9&player_id=p%3D1",
    );
  });

  test("requestAd: ad, problem and transport outcomes as values", async () => {
    await using s = await server();
    const ad = await requestAd(s.url, { country: "us", lang: "eng" }, { timeoutMs: 2000 });
    expect(ad.kind).toBe("ad");
    if (ad.kind === "ad") expect(ad.ad.id).toBe("allday-1");
    const nofill = await requestAd(s.url, { country: "de", lang: "deu" }, { timeoutMs: 2000 });
    expect(nofill).toMatchObject({
      kind: "problem",
      status: 404,
      problem: { reason: "no_ad_for_country_lang" },
    });
    const invalid = await requestAd("mailto:x@y", { country: "us", lang: "eng" }, { timeoutMs: 2000 });
    expect(invalid).toMatchObject({ kind: "error", error: "invalid_url" });
    const down = await requestAd(
      `http://127.0.0.1:${await closedPort()}`,
      { country: "us", lang: "eng" },
      {
        timeoutMs: 2000,
      },
    );
    expect(down).toMatchObject({ kind: "error", error: "connect" });
  });

  test("requestAd: a non-problem error body reads as about:blank with the status", async () => {
    await using rec = recorder(() => new Response("busy", { status: 503, headers: { "Retry-After": "2" } }));
    const answer = await requestAd(rec.url, { country: "us", lang: "eng" }, { timeoutMs: 2000 });
    expect(answer).toMatchObject({
      kind: "problem",
      status: 503,
      retryAfter: "2",
      problem: { type: "about:blank", status: 503 },
    });
  });

  test("requestAd: an abort signal ends the request as a timeout", async () => {
    await using hang = recorder(() => new Promise<Response>(() => {}));
    const controller = new AbortController();
    const pending = requestAd(
      hang.url,
      { country: "us", lang: "eng" },
      { timeoutMs: 10_000, signal: controller.signal },
    );
    await hang.firstRequest;
    controller.abort();
    expect(await pending).toMatchObject({ kind: "error", error: "timeout" });
  });
});

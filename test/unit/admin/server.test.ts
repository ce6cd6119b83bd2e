/**
 * The admin listener over a real socket (127.0.0.1, port 0) with a real CatalogHolder and a
 * small catalog built by buildSnapshot; the clock is injected.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AdminServer, startAdminServer } from "../../../src/admin/server.ts";
import type { ServedStats } from "../../../src/admin/types.ts";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import type { Ad } from "../../../src/catalog/types.ts";
import { CatalogHolder } from "../../../src/sync/holder.ts";
import { createLogger, silentLogger } from "../../../src/telemetry/log.ts";
import {
  CATALOG_ADS,
  CATALOG_INFO,
  CATALOG_SYNC_AGE_SECONDS,
  CATALOG_SYNC_FAILURES_TOTAL,
  DECISIONS_TOTAL,
  Decision,
  HTTP_REQUEST_DURATION_SECONDS,
  HTTP_REQUESTS_TOTAL,
  type LastSync,
  Metrics,
  Route,
} from "../../../src/telemetry/metrics.ts";
import { parseExposition, sampleValue } from "../telemetry/exposition.ts";

const HOUR = 3_600_000;
const DAY0 = Date.UTC(2026, 10, 29, 0, 0, 0);

const ad = (id: string, country: string, lang: string, start: number, end: number): Ad => ({
  id,
  video_url: `https://cdn.example.com/${id}.mp4`,
  country,
  lang,
  start_hour: start,
  end_hour: end,
});

const ADS = [
  ad("a", "us", "eng", 0, 0),
  ad("b", "us", "eng", 6, 12),
  ad("c", "us", "eng", 22, 3),
  ad("d", "fr", "fra", 8, 18),
];

const clock = { now: DAY0 + 7 * HOUR + 5 * 60_000 };
const holder = new CatalogHolder();
const metrics = new Metrics();
let lastSync: LastSync | null = null;
let served: ServedStats | null = null;
let admin: AdminServer;
const get = (path: string, init?: RequestInit) => fetch(`${admin.url}${path}`, init);

beforeAll(() => {
  holder.swap(buildSnapshot(ADS, DAY0 + 6 * HOUR));
  admin = startAdminServer({
    listen: { host: "127.0.0.1", port: 0 },
    metrics,
    holder,
    now: () => clock.now,
    lastSync: () => lastSync,
    served: () => served,
    log: silentLogger,
  });
});
afterAll(() => admin.stop());

function expectSecurityHeaders(res: Response): void {
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  expect(res.headers.get("x-frame-options")).toBe("DENY");
}

describe("/metrics", () => {
  test("is Prometheus text 0.0.4 with the values recorded", async () => {
    metrics.request(Route.ad_request, 200, 0.0003);
    metrics.request(Route.ad_request, 200, 0.0004);
    metrics.request(Route.ad_request, 404, 0.0002);
    metrics.decision(Decision.fill, 0.00001);
    metrics.decision(Decision.fill, 0.00001);
    metrics.decision(Decision.outside_hours, 0.00001);
    metrics.sync({ kind: "failed", failure: "http_status", message: "upstream said 500" }, clock.now - 1000);

    const res = await get("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expectSecurityHeaders(res);
    const parsed = parseExposition(await res.text());
    expect(parsed.errors).toEqual([]);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "ad_request", code: "200" })).toBe(2);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "ad_request", code: "404" })).toBe(1);
    expect(sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_count`, { route: "ad_request" })).toBe(3);
    expect(sampleValue(parsed, DECISIONS_TOTAL, { outcome: "fill" })).toBe(2);
    expect(sampleValue(parsed, DECISIONS_TOTAL, { outcome: "nofill", reason: "outside_hours" })).toBe(1);
    expect(sampleValue(parsed, CATALOG_SYNC_FAILURES_TOTAL, { kind: "http_status" })).toBe(1);
    // Catalog gauges are read from the holder at scrape time.
    const version = holder.current?.version ?? "";
    expect(sampleValue(parsed, CATALOG_INFO, { version })).toBe(1);
    expect(sampleValue(parsed, CATALOG_ADS)).toBe(4);
    expect(sampleValue(parsed, CATALOG_SYNC_AGE_SECONDS)).toBeUndefined();
  });

  test("HEAD answers the headers without a body", async () => {
    const res = await get("/metrics", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    expect(await res.text()).toBe("");
  });
});

describe("/debug/decide", () => {
  type Explained = {
    hour: number;
    decision: Record<string, unknown>;
    ads: { id: string; eligible: boolean; reason: string; runs: string }[];
  };
  const decide = async (query: string): Promise<Explained> => {
    const res = await get(`/debug/decide?${query}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    return (await res.json()) as Explained;
  };
  const brief = (e: Explained) => e.ads.map((x) => [x.id, x.eligible, x.reason, x.runs]);

  test("at 04:00 only the all-day ad runs: it is chosen, the others are outside their hours", async () => {
    const e = await decide("country=us&lang=eng&hour=4");
    expect(e.hour).toBe(4);
    expect(e.decision).toEqual({ outcome: "fill", id: "a", video_url: "https://cdn.example.com/a.mp4" });
    expect(brief(e)).toEqual([
      ["a", true, "chosen", "all day (00:00–23:59 UTC)"],
      ["b", false, "outside_hours", "06:00–11:59 UTC"],
      ["c", false, "outside_hours", "22:00–02:59 UTC"],
    ]);
  });

  test("at 23:00 the wrapping ad is eligible beside the chosen one; the rotation is not advanced", async () => {
    const e = await decide("country=US&lang=en&hour=23");
    expect(brief(e)).toEqual([
      ["a", true, "chosen", "all day (00:00–23:59 UTC)"],
      ["b", false, "outside_hours", "06:00–11:59 UTC"],
      ["c", true, "eligible", "22:00–02:59 UTC"],
    ]);
    expect((await decide("country=us&lang=eng&hour=23")).decision).toMatchObject({ id: "a" });
  });

  test("without an hour, the current UTC hour of the injected clock", async () => {
    const e = await decide("country=us&lang=eng");
    expect(e.hour).toBe(7);
    expect(brief(e).map(([id, eligible]) => [id, eligible])).toEqual([
      ["a", true],
      ["b", true],
      ["c", false],
    ]);
  });

  test("no fill, with the reason", async () => {
    const outside = await decide("country=fr&lang=fr&hour=20");
    expect(outside.decision).toEqual({ outcome: "nofill", reason: "outside_hours" });
    expect(brief(outside)).toEqual([["d", false, "outside_hours", "08:00–17:59 UTC"]]);
    const none = await decide("country=de&lang=de&hour=20");
    expect(none.decision).toEqual({ outcome: "nofill", reason: "no_ad_for_country_lang" });
    expect(none.ads).toEqual([]);
  });

  test.each([
    ["lang=eng&hour=4", "country"],
    ["country=zz&lang=eng", "country"],
    ["country=us&lang=eng&country=fr", "country"],
    ["country=us", "lang"],
    ["country=us&lang=eng&hour=24", "hour"],
    ["country=us&lang=eng&hour=-1", "hour"],
    ["country=us&lang=eng&hour=3.5", "hour"],
    ["country=us&lang=eng&hour=", "hour"],
    ["country=us&lang=eng&hour=1&hour=2", "hour"],
    ["country=us&lang=eng&hour=%zz", "hour"],
  ])("?%s is a 400 naming %s", async (query, param) => {
    const res = await get(`/debug/decide?${query}`);
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toMatchObject({ type: "urn:adsrv:problem:invalid-param", param });
  });
});

describe("/catalog", () => {
  test("lists the ads with their windows", async () => {
    const res = await get("/catalog");
    expect(res.status).toBe(200);
    expectSecurityHeaders(res);
    const body = (await res.json()) as Record<string, unknown> & { ads: Record<string, unknown>[] };
    expect(body.version).toBe(holder.current?.version as string);
    expect(body.loaded_at).toBe(new Date(DAY0 + 6 * HOUR).toISOString());
    expect(body.total).toBe(4);
    expect(body.matched).toBe(4);
    expect(body.ads.map((a) => a.id)).toEqual(["a", "b", "c", "d"]);
    expect(body.ads[2]).toEqual({
      id: "c",
      video_url: "https://cdn.example.com/c.mp4",
      country: "us",
      lang: "eng",
      start_hour: 22,
      end_hour: 3,
      runs: "22:00–02:59 UTC",
    });
  });

  test("q filters and limit caps", async () => {
    const filtered = (await (await get("/catalog?q=FRA")).json()) as {
      matched: number;
      ads: { id: string }[];
    };
    expect(filtered.matched).toBe(1);
    expect(filtered.ads.map((a) => a.id)).toEqual(["d"]);
    const capped = (await (await get("/catalog?limit=2")).json()) as { matched: number; ads: unknown[] };
    expect(capped.matched).toBe(4);
    expect(capped.ads.length).toBe(2);
    for (const bad of ["limit=x", "limit=-1", "limit=2000000", "limit=1&limit=2"]) {
      const res = await get(`/catalog?${bad}`);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ param: "limit" });
    }
  });
});

describe("/dashboard", () => {
  test("is one self-contained HTML page whose CSP admits only its own inline script and style", async () => {
    const res = await get("/dashboard");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/]+=*'/);
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await res.text();
    for (const id of [
      "rps-chart",
      "fill-chart",
      "latency-chart",
      "country-chart",
      "ad-chart",
      "catalog-table",
      "last-sync",
    ]) {
      expect(html).toContain(`id="${id}"`);
    }
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!www\.w3\.org)/);
    // The hash in the policy is the hash of the inline script.
    const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? "";
    const hash = new Bun.CryptoHasher("sha256").update(script).digest("base64");
    expect(csp).toContain(`'sha256-${hash}'`);
  });

  test("/dashboard/data joins metrics, last sync, catalog and served counts", async () => {
    lastSync = { kind: "updated", version: "v", ads: 4, skipped: 0, from: "source", at: clock.now - 30_000 };
    served = { byCountry: { us: { served: 5, impressions: 2 } }, byAd: { a: { served: 5, impressions: 2 } } };
    const res = await get("/dashboard/data");
    expect(res.status).toBe(200);
    const d = (await res.json()) as Record<string, Record<string, unknown>>;
    expect(d.now).toBe(clock.now as never);
    expect(d.sync).toEqual({ ...lastSync, age_seconds: 30 });
    expect(d.catalog).toEqual({
      version: holder.current?.version,
      ads: 4,
      loaded_at: new Date(DAY0 + 6 * HOUR).toISOString(),
      age_seconds: 3900,
    });
    expect(d.served).toEqual(served as never);
    expect(d.metrics).toMatchObject({
      at: clock.now,
      requests: { total: 3 },
      decisions: { fill: 2, nofill: 1 },
    });
  });
});

describe("everything else", () => {
  test("an unknown path is a 404 problem", async () => {
    for (const path of ["/", "/nope", "/metrics/", "/ad_request?country=us&lang=eng", "/debug"]) {
      const res = await get(path);
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await res.json()).toMatchObject({ type: "urn:adsrv:problem:not-found" });
    }
  });

  test("other methods on a known path are 405 with Allow", async () => {
    for (const [method, path] of [
      ["POST", "/metrics"],
      ["DELETE", "/catalog"],
      ["PUT", "/debug/decide"],
      ["OPTIONS", "/dashboard"],
    ] as const) {
      const res = await get(path, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("GET, HEAD");
      expect(await res.json()).toMatchObject({ type: "urn:adsrv:problem:method-not-allowed" });
    }
  });

  test("without a catalog, the catalog routes answer 503 no-catalog and the rest still work", async () => {
    const lines: string[] = [];
    const empty = startAdminServer({
      listen: { host: "127.0.0.1", port: 0 },
      metrics: new Metrics(),
      holder: new CatalogHolder(),
      now: () => clock.now,
      log: createLogger({ write: (l) => lines.push(l) }),
    });
    try {
      for (const path of ["/catalog", "/debug/decide?country=us&lang=eng"]) {
        const res = await fetch(`${empty.url}${path}`);
        expect(res.status).toBe(503);
        expect(await res.json()).toMatchObject({ type: "urn:adsrv:problem:no-catalog" });
      }
      const data = (await (await fetch(`${empty.url}/dashboard/data`)).json()) as Record<string, unknown>;
      expect(data.catalog).toBeNull();
      expect(data.sync).toBeNull();
      expect(data.served).toBeNull();
      expect((await fetch(`${empty.url}/metrics`)).status).toBe(200);
      expect(lines.some((l) => l.includes("admin listening") && l.includes(empty.url))).toBe(true);
    } finally {
      await empty.stop();
    }
  });

  test("lastSync defaults to what metrics.sync() recorded", async () => {
    const m = new Metrics();
    m.sync({ kind: "unchanged" }, clock.now - 2000);
    const other = startAdminServer({
      listen: { host: "127.0.0.1", port: 0 },
      metrics: m,
      holder,
      now: () => clock.now,
      log: silentLogger,
    });
    try {
      const data = (await (await fetch(`${other.url}/dashboard/data`)).json()) as Record<string, unknown>;
      expect(data.sync).toEqual({ kind: "unchanged", at: clock.now - 2000, age_seconds: 2 });
    } finally {
      await other.stop();
    }
  });

  test("a throw in a handler is a JSON 500 problem without stack or paths, and is logged", async () => {
    const lines: string[] = [];
    const broken = startAdminServer({
      listen: { host: "127.0.0.1", port: 0 },
      metrics: new Metrics(),
      holder,
      now: () => clock.now,
      served: () => {
        throw new Error("counter store at /srv/secret/path went away");
      },
      log: createLogger({ write: (l) => lines.push(l) }),
    });
    try {
      const res = await fetch(`${broken.url}/dashboard/data`);
      expect(res.status).toBe(500);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      const text = await res.text();
      expect(text).not.toContain("/srv/secret");
      expect(text).not.toContain("at ");
      expect(JSON.parse(text)).toMatchObject({ type: "urn:adsrv:problem:internal", status: 500 });
      expect(lines.some((l) => l.includes('"level":"error"') && l.includes("went away"))).toBe(true);
    } finally {
      await broken.stop();
    }
  });

  test("stop closes the port", async () => {
    const s = startAdminServer({
      listen: { host: "127.0.0.1", port: 0 },
      metrics: new Metrics(),
      holder,
      now: () => clock.now,
      log: silentLogger,
    });
    expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
    await s.stop();
    await s.stop();
    await expect(fetch(`${s.url}/metrics`)).rejects.toThrow();
  });
});

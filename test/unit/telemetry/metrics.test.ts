import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import {
  AUTH_FAILURES_TOTAL,
  AuthFailure,
  Breaker,
  CATALOG_ADS,
  CATALOG_INFO,
  CATALOG_SYNC_AGE_SECONDS,
  CATALOG_SYNC_FAILURES_TOTAL,
  codeLabel,
  DECISION_BUCKETS,
  DECISIONS_TOTAL,
  Decision,
  escapeLabelValue,
  HTTP_REQUEST_DURATION_SECONDS,
  HTTP_REQUESTS_TOTAL,
  Impression,
  METRIC_NAMES,
  Metrics,
  quantileFromBuckets,
  RateLimit,
  REQUEST_BUCKETS,
  ROUTE_NAMES,
  Route,
  routeOfPath,
  StoreError,
  timed,
} from "../../../src/telemetry/metrics.ts";
import { parseExposition, sampleValue } from "./exposition.ts";

const GOLDEN = `${import.meta.dir}/metrics.golden.prom`;
const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);

/** A fixed set of observations touching every metric. */
function scenario(): Metrics {
  const m = new Metrics();
  m.request(Route.ad_request, 200, 0.0002);
  m.request(Route.ad_request, 200, 0.003);
  m.request(Route.ad_request, 404, 0.00005);
  m.request(Route.ad_request, 418, 2); // counted as 4xx; above every bound → only +Inf
  m.request(Route.healthz, 200, 0.0001); // on a bound: `le` is inclusive
  m.request(Route.not_found, 404, 0.5);
  m.decision(Decision.fill, 0.000004);
  m.decision(Decision.fill, 0.00002);
  m.decision(Decision.outside_hours, 0.000003);
  m.decision(Decision.no_ad_for_country_lang, 0.00001);
  m.sync({ kind: "updated", version: "0123456789abcdef", ads: 3, skipped: 1, from: "source" }, T0);
  m.sync({ kind: "failed", failure: "timeout", message: "upstream took too long" }, T0 + 30_000);
  m.sync({ kind: "failed", failure: "malformed_json", message: "bad" }, T0 + 60_000);
  m.storeError(StoreError.timeout);
  m.storeError(StoreError.timeout);
  m.storeError(StoreError.connection);
  m.storeFallback();
  m.breaker(Breaker.half_open);
  m.rateLimited();
  m.rateLimited(RateLimit.auth_failures);
  m.shed();
  m.impression(Impression.counted);
  m.impression(Impression.counted);
  m.impression(Impression.replayed);
  m.impression(Impression.invalid);
  m.authFailure(AuthFailure.missing);
  m.authFailure(AuthFailure.invalid_token);
  return m;
}

describe("exposition", () => {
  test("matches the golden file", () => {
    const text = scenario().render(T0 + 90_500);
    if (process.env.UPDATE_GOLDEN === "1") writeFileSync(GOLDEN, text);
    expect(text).toBe(readFileSync(GOLDEN, "utf8"));
  });

  test("every line is valid exposition syntax, and every family is typed and documented", () => {
    for (const m of [new Metrics(), scenario()]) {
      const parsed = parseExposition(m.render(T0));
      expect(parsed.errors).toEqual([]);
      expect([...parsed.types.keys()]).toEqual([...METRIC_NAMES]);
      expect([...parsed.help.keys()]).toEqual([...METRIC_NAMES]);
    }
  });

  test("the checker itself rejects broken expositions", () => {
    const bad = [
      "adsrv_x 1\n", // no TYPE
      '# TYPE adsrv_x counter\nadsrv_x{a="1"} one\n', // bad value
      '# TYPE adsrv_x counter\nadsrv_x{a="un\\escaped\\q"} 1\n', // bad escape
      "# TYPE adsrv_x counter\nadsrv_x 1", // no final line feed
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
      "# TYPE a counter\na 1\n# TYPE b counter\nb 1\na 2\n", // not contiguous
    ];
    for (const text of bad) expect(parseExposition(text).errors.length).toBeGreaterThan(0);
  });

  test("values read back from the exposition", () => {
    const parsed = parseExposition(scenario().render(T0 + 90_500));
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "ad_request", code: "200" })).toBe(2);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "ad_request", code: "4xx" })).toBe(1);
    expect(
      sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_bucket`, { route: "healthz", le: "0.0001" }),
    ).toBe(1);
    expect(
      sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_bucket`, { route: "ad_request", le: "1" }),
    ).toBe(3);
    expect(
      sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_bucket`, { route: "ad_request", le: "+Inf" }),
    ).toBe(4);
    expect(sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_count`, { route: "vast" })).toBeUndefined();
    expect(sampleValue(parsed, DECISIONS_TOTAL, { outcome: "fill" })).toBe(2);
    expect(sampleValue(parsed, DECISIONS_TOTAL, { outcome: "nofill", reason: "outside_hours" })).toBe(1);
    expect(sampleValue(parsed, DECISIONS_TOTAL, { outcome: "nofill", reason: "frequency_capped" })).toBe(0);
    expect(sampleValue(parsed, CATALOG_INFO, { version: "0123456789abcdef" })).toBe(1);
    expect(sampleValue(parsed, CATALOG_ADS)).toBe(3);
    // The age counts from the last success (T0), not from the later failures.
    expect(sampleValue(parsed, CATALOG_SYNC_AGE_SECONDS)).toBe(90.5);
    expect(sampleValue(parsed, CATALOG_SYNC_FAILURES_TOTAL, { kind: "timeout" })).toBe(1);
    expect(sampleValue(parsed, CATALOG_SYNC_FAILURES_TOTAL, { kind: "state_dir_empty" })).toBe(0);
    expect(sampleValue(parsed, AUTH_FAILURES_TOTAL, { reason: "invalid_token" })).toBe(1);
  });

  test("an empty registry omits the samples it cannot know yet", () => {
    const parsed = parseExposition(new Metrics().render(T0));
    expect(sampleValue(parsed, CATALOG_ADS)).toBeUndefined();
    expect(sampleValue(parsed, CATALOG_SYNC_AGE_SECONDS)).toBeUndefined();
    expect(parsed.samples.some((s) => s.name === CATALOG_INFO)).toBe(false);
    expect(parsed.samples.some((s) => s.name === HTTP_REQUESTS_TOTAL)).toBe(false);
    expect(sampleValue(parsed, DECISIONS_TOTAL, { outcome: "fill" })).toBe(0);
  });

  test("label values are escaped", () => {
    expect(escapeLabelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    const m = new Metrics();
    m.catalog('v"1\\\n', 7);
    const text = m.render(T0);
    expect(text).toContain(`${CATALOG_INFO}{version="v\\"1\\\\\\n"} 1\n`);
    const parsed = parseExposition(text);
    expect(parsed.errors).toEqual([]);
    expect(sampleValue(parsed, CATALOG_INFO, { version: 'v"1\\\n' })).toBe(1);
  });

  test("an unchanged sync keeps the catalog and resets the age", () => {
    const m = new Metrics();
    m.sync({ kind: "updated", version: "aaaa", ads: 2, skipped: 0, from: "source" }, T0);
    m.sync({ kind: "unchanged" }, T0 + 10_000);
    const parsed = parseExposition(m.render(T0 + 12_000));
    expect(sampleValue(parsed, CATALOG_SYNC_AGE_SECONDS)).toBe(2);
    expect(sampleValue(parsed, CATALOG_INFO, { version: "aaaa" })).toBe(1);
    expect(m.lastSync()).toEqual({ kind: "unchanged", at: T0 + 10_000 });
  });
});

describe("labels", () => {
  test("enum values index their names", () => {
    for (const [name, value] of Object.entries(Route)) expect(ROUTE_NAMES[value]).toBe(name as never);
    expect(ROUTE_NAMES).toEqual([
      "ad_request",
      "vast",
      "impression",
      "healthz",
      "readyz",
      "openapi",
      "stats",
      "not_found",
    ]);
  });

  test("status codes fall into a bounded set", () => {
    expect(codeLabel(200)).toBe("200");
    expect(codeLabel(503)).toBe("503");
    expect(codeLabel(418)).toBe("4xx");
    expect(codeLabel(299)).toBe("2xx");
    expect(codeLabel(101)).toBe("1xx");
    expect(codeLabel(42)).toBe("other");
    expect(codeLabel(600)).toBe("other");
    expect(codeLabel(-1)).toBe("other");
    const seen = new Set<string>();
    for (let s = -5; s < 1000; s++) seen.add(codeLabel(s));
    expect(seen.size).toBeLessThanOrEqual(21);
  });

  test("paths map to routes; anything unknown is not_found", () => {
    expect(routeOfPath("/ad_request")).toBe(Route.ad_request);
    expect(routeOfPath("/openapi.json")).toBe(Route.openapi);
    expect(routeOfPath("/stats")).toBe(Route.stats);
    expect(routeOfPath("/ad_request/")).toBe(Route.not_found);
    expect(routeOfPath("/wp-admin")).toBe(Route.not_found);
  });
});

describe("quantiles from buckets", () => {
  const bounds = [1, 2, 4];
  test("interpolates inside the bucket holding the rank", () => {
    expect(quantileFromBuckets(bounds, [0, 0, 0, 0], 0.5)).toBeNull();
    expect(quantileFromBuckets(bounds, [10, 0, 0, 0], 0.5)).toBe(0.5);
    expect(quantileFromBuckets(bounds, [0, 10, 0, 0], 0.5)).toBe(1.5);
    expect(quantileFromBuckets(bounds, [5, 0, 5, 0], 0.5)).toBe(1);
    expect(quantileFromBuckets(bounds, [5, 0, 5, 0], 0.9)).toBe(2 + 2 * 0.8);
    // The +Inf bucket answers the highest finite bound, as PromQL does.
    expect(quantileFromBuckets(bounds, [1, 0, 0, 9], 0.99)).toBe(4);
  });

  test("the summary's percentiles follow the observations", () => {
    const m = new Metrics();
    for (let i = 0; i < 99; i++) m.request(Route.ad_request, 200, 0.0002);
    m.request(Route.ad_request, 503, 0.2);
    for (let i = 0; i < 3; i++) m.decision(Decision.fill, 0.00001);
    m.decision(Decision.frequency_capped, 0.002);
    const s = m.summary(T0);
    expect(s.at).toBe(T0);
    expect(s.requests.total).toBe(100);
    expect(s.requests.byRoute.ad_request).toBe(100);
    expect(s.requests.byRoute.vast).toBe(0);
    expect(s.requests.byCode).toEqual({ "200": 99, "503": 1 });
    const p50 = s.latency.all.p50 as number;
    expect(p50).toBeGreaterThan(0.0001);
    expect(p50).toBeLessThanOrEqual(0.00025);
    expect(s.latency.all.p99 as number).toBeLessThanOrEqual(0.00025);
    expect(s.latency.byRoute.ad_request?.count).toBe(100);
    expect(s.latency.byRoute.healthz).toBeUndefined();
    expect(s.latency.bounds).toEqual(REQUEST_BUCKETS);
    expect(s.latency.buckets.length).toBe(REQUEST_BUCKETS.length + 1);
    expect(s.latency.buckets.reduce((a, b) => a + b, 0)).toBe(100);
    expect(s.latency.decision.count).toBe(4);
    expect(s.latency.decision.p50 as number).toBeLessThanOrEqual(DECISION_BUCKETS[1] as number);
    expect(s.decisions).toEqual({
      total: 4,
      fill: 3,
      nofill: 1,
      byReason: { no_ad_for_country_lang: 0, outside_hours: 0, frequency_capped: 1 },
      fillRate: 0.75,
    });
    expect(s.catalog).toEqual({ version: null, ads: null, lastSuccessAgeSeconds: null });
    expect(s.store.breaker).toBe("closed");
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  test("the summary counts every other family", () => {
    const s = scenario().summary(T0 + 90_500);
    expect(s.catalog).toEqual({ version: "0123456789abcdef", ads: 3, lastSuccessAgeSeconds: 90.5 });
    expect(s.syncFailures.timeout).toBe(1);
    expect(s.syncFailures.malformed_json).toBe(1);
    expect(s.store).toEqual({
      errors: { timeout: 2, connection: 1, reply: 0, other: 0 },
      fallbacks: 1,
      breaker: "half_open",
    });
    expect(s.rateLimited).toEqual({ client: 1, auth_failures: 1 });
    expect(s.shed).toBe(1);
    expect(s.impressions).toEqual({ counted: 2, replayed: 1, invalid: 1 });
    expect(s.authFailures.missing).toBe(1);
    expect(s.requests.byCode["4xx"]).toBe(1);
  });
});

describe("timed", () => {
  test("counts sync, async and throwing handlers with their status and latency", async () => {
    const m = new Metrics();
    let t = 1000;
    const clock = () => t;
    const ok = timed(m, Route.healthz, (_req: Request, _s: unknown) => {
      t += 2;
      return new Response("ok");
    });
    const slow = timed(
      m,
      Route.ad_request,
      async (_req: Request, _s: unknown) => {
        t += 300;
        return new Response("no", { status: 401 });
      },
      clock,
    );
    const boom = timed(
      m,
      Route.stats,
      (_req: Request, _s: unknown): Response => {
        t += 1;
        throw new Error("boom");
      },
      clock,
    );
    const rejects = timed(
      m,
      Route.vast,
      async (_req: Request, _s: unknown): Promise<Response> => {
        throw new Error("late boom");
      },
      clock,
    );
    const req = new Request("http://127.0.0.1/x");
    expect(ok(req, null).status).toBe(200);
    expect((await slow(req, null)).status).toBe(401);
    expect(() => boom(req, null)).toThrow("boom");
    await expect(rejects(req, null)).rejects.toThrow("late boom");
    const parsed = parseExposition(m.render(0));
    expect(parsed.errors).toEqual([]);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "healthz", code: "200" })).toBe(1);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "ad_request", code: "401" })).toBe(1);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "stats", code: "500" })).toBe(1);
    expect(sampleValue(parsed, HTTP_REQUESTS_TOTAL, { route: "vast", code: "500" })).toBe(1);
    // With the injected clock, latencies are exact: 300 ms and 1 ms.
    expect(sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_sum`, { route: "ad_request" })).toBe(0.3);
    expect(sampleValue(parsed, `${HTTP_REQUEST_DURATION_SECONDS}_sum`, { route: "stats" })).toBe(0.001);
  });
});

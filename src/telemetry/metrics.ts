/**
 * Prometheus metrics, hand-written (ENGINEERING.md §3): every metric name is a constant in this
 * module, every label is bounded, and the hot-path methods only index typed arrays with small
 * enum numbers (no Map lookup, no closure, no allocation per request).
 *
 * `render(nowMs)` writes the text exposition format 0.0.4 for `/metrics`; `summary(nowMs)` is a
 * JSON-able digest for the dashboard. Values that change only at scrape time (the age of the
 * last successful sync) are computed from a stored timestamp and the `nowMs` passed in.
 * @module
 */
import type { SyncOutcome } from "../sync/loop.ts";

// ---------------------------------------------------------------------------------------------
// Metric names: the only place they are spelled.

export const HTTP_REQUESTS_TOTAL = "adsrv_http_requests_total";
export const HTTP_REQUEST_DURATION_SECONDS = "adsrv_http_request_duration_seconds";
export const DECISIONS_TOTAL = "adsrv_decisions_total";
export const DECISION_DURATION_SECONDS = "adsrv_decision_duration_seconds";
export const CATALOG_INFO = "adsrv_catalog_info";
export const CATALOG_ADS = "adsrv_catalog_ads";
export const CATALOG_SYNC_AGE_SECONDS = "adsrv_catalog_last_success_age_seconds";
export const CATALOG_SYNC_FAILURES_TOTAL = "adsrv_catalog_sync_failures_total";
export const STORE_ERRORS_TOTAL = "adsrv_store_errors_total";
export const STORE_FALLBACKS_TOTAL = "adsrv_store_fallbacks_total";
export const STORE_BREAKER_STATE = "adsrv_store_breaker_state";
export const RATE_LIMITED_TOTAL = "adsrv_rate_limited_total";
export const SHED_TOTAL = "adsrv_shed_total";
export const IMPRESSIONS_TOTAL = "adsrv_impressions_total";
export const AUTH_FAILURES_TOTAL = "adsrv_auth_failures_total";

/** Every metric family `render` writes, in output order. */
export const METRIC_NAMES = [
  HTTP_REQUESTS_TOTAL,
  HTTP_REQUEST_DURATION_SECONDS,
  DECISIONS_TOTAL,
  DECISION_DURATION_SECONDS,
  CATALOG_INFO,
  CATALOG_ADS,
  CATALOG_SYNC_AGE_SECONDS,
  CATALOG_SYNC_FAILURES_TOTAL,
  STORE_ERRORS_TOTAL,
  STORE_FALLBACKS_TOTAL,
  STORE_BREAKER_STATE,
  RATE_LIMITED_TOTAL,
  SHED_TOTAL,
  IMPRESSIONS_TOTAL,
  AUTH_FAILURES_TOTAL,
] as const;

// ---------------------------------------------------------------------------------------------
// Bounded label sets: small enums. The value is the index into the typed arrays; the key is the
// label value written out.

/** The matched route (never the raw path). Unknown paths count as `not_found`. */
export const Route = {
  ad_request: 0,
  vast: 1,
  impression: 2,
  healthz: 3,
  readyz: 4,
  openapi: 5,
  stats: 6,
  not_found: 7,
} as const;
export type Route = (typeof Route)[keyof typeof Route];
export type RouteName = keyof typeof Route;
export const ROUTE_NAMES = Object.keys(Route) as readonly RouteName[];

/** The outcome of a decision: a fill or the reason for no fill. */
export const Decision = {
  fill: 0,
  no_ad_for_country_lang: 1,
  outside_hours: 2,
  frequency_capped: 3,
} as const;
export type Decision = (typeof Decision)[keyof typeof Decision];
export type NoFillReasonName = Exclude<keyof typeof Decision, "fill">;
const DECISION_NAMES = Object.keys(Decision) as readonly (keyof typeof Decision)[];

/** Why a player-store (Redis) call failed. */
export const StoreError = { timeout: 0, connection: 1, reply: 2, other: 3 } as const;
export type StoreError = (typeof StoreError)[keyof typeof StoreError];
const STORE_ERROR_NAMES = Object.keys(StoreError) as readonly (keyof typeof StoreError)[];

/** Circuit breaker state, exported as the gauge value. */
export const Breaker = { closed: 0, open: 1, half_open: 2 } as const;
export type Breaker = (typeof Breaker)[keyof typeof Breaker];
const BREAKER_NAMES = Object.keys(Breaker) as readonly (keyof typeof Breaker)[];

/** Which limit refused a request with 429. */
export const RateLimit = { client: 0, auth_failures: 1 } as const;
export type RateLimit = (typeof RateLimit)[keyof typeof RateLimit];
const RATE_LIMIT_NAMES = Object.keys(RateLimit) as readonly (keyof typeof RateLimit)[];

/** What became of an impression call. */
export const Impression = { counted: 0, replayed: 1, invalid: 2 } as const;
export type Impression = (typeof Impression)[keyof typeof Impression];
const IMPRESSION_NAMES = Object.keys(Impression) as readonly (keyof typeof Impression)[];

/** Why a request failed authentication or authorization. */
export const AuthFailure = {
  missing: 0,
  invalid_key: 1,
  invalid_token: 2,
  forbidden: 3,
  keys_unavailable: 4,
} as const;
export type AuthFailure = (typeof AuthFailure)[keyof typeof AuthFailure];
const AUTH_FAILURE_NAMES = Object.keys(AuthFailure) as readonly (keyof typeof AuthFailure)[];

/** The failure kinds a sync attempt reports (see sync/loop.ts). */
export type SyncFailureKind = Extract<SyncOutcome, { kind: "failed" }>["failure"];
const SYNC_FAILURE_INDEX = {
  connect: 0,
  timeout: 1,
  http_status: 2,
  redirect: 3,
  too_large: 4,
  read: 5,
  not_found: 6,
  malformed_json: 7,
  wrong_shape: 8,
  all_invalid: 9,
  state_dir_empty: 10,
  worker: 11,
  digest: 12,
} as const satisfies Record<SyncFailureKind, number>;
const SYNC_FAILURE_NAMES = Object.keys(SYNC_FAILURE_INDEX) as readonly SyncFailureKind[];

/**
 * Status codes kept exactly; any other code is counted under its class (`2xx`…`5xx`), and
 * anything outside 100–599 under `other`.
 */
const EXACT_CODES = [200, 204, 304, 400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 503] as const;
const CODE_NAMES: readonly string[] = [
  ...EXACT_CODES.map(String),
  "1xx",
  "2xx",
  "3xx",
  "4xx",
  "5xx",
  "other",
];
const CODE_OTHER = CODE_NAMES.length - 1;
/** status (0–599) → column in CODE_NAMES. */
const CODE_INDEX: Uint8Array = (() => {
  const table = new Uint8Array(600).fill(CODE_OTHER);
  for (let s = 100; s < 600; s++) table[s] = EXACT_CODES.length + Math.floor(s / 100) - 1;
  EXACT_CODES.forEach((code, i) => {
    table[code] = i;
  });
  return table;
})();

/** The label value a status code is counted under. */
export function codeLabel(status: number): string {
  return CODE_NAMES[status >= 0 && status < 600 ? (CODE_INDEX[status | 0] as number) : CODE_OTHER] as string;
}

/** The route enum for a request path, for handlers that do not know it statically (fallbacks). */
export function routeOfPath(path: string): Route {
  switch (path) {
    case "/ad_request":
      return Route.ad_request;
    case "/vast":
      return Route.vast;
    case "/impression":
      return Route.impression;
    case "/healthz":
      return Route.healthz;
    case "/readyz":
      return Route.readyz;
    case "/openapi.json":
      return Route.openapi;
    case "/stats":
      return Route.stats;
    default:
      return Route.not_found;
  }
}

// ---------------------------------------------------------------------------------------------
// Histograms

/** Request latency buckets, seconds (upper bounds; `+Inf` is implied). */
export const REQUEST_BUCKETS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
]);
/** Decision latency buckets, seconds: an in-memory decision takes microseconds, a store trip ms. */
export const DECISION_BUCKETS: readonly number[] = Object.freeze([
  0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
]);

/** Fixed-bucket histograms for `series` label sets, stored flat (non-cumulative counts). */
class Histograms {
  readonly width: number;
  readonly counts: Float64Array;
  readonly sums: Float64Array;
  readonly totals: Float64Array;

  constructor(
    readonly bounds: readonly number[],
    series: number,
  ) {
    this.width = bounds.length + 1;
    this.counts = new Float64Array(series * this.width);
    this.sums = new Float64Array(series);
    this.totals = new Float64Array(series);
  }

  observe(series: number, value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[series * this.width + i] = (this.counts[series * this.width + i] as number) + 1;
    this.sums[series] = (this.sums[series] as number) + value;
    this.totals[series] = (this.totals[series] as number) + 1;
  }

  /** Non-cumulative bucket counts of one series (a copy). */
  series(series: number): number[] {
    return Array.from(this.counts.subarray(series * this.width, (series + 1) * this.width));
  }
}

/**
 * A quantile estimated from bucket counts the way PromQL's `histogram_quantile` does: linear
 * interpolation inside the bucket holding the rank; the `+Inf` bucket answers the highest finite
 * bound. `counts` are non-cumulative, one per bound plus the `+Inf` bucket. Null when empty.
 */
export function quantileFromBuckets(
  bounds: readonly number[],
  counts: readonly number[],
  q: number,
): number | null {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] as number;
    if (c > 0 && below + c >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1] ?? null;
      const lower = i === 0 ? 0 : (bounds[i - 1] as number);
      const upper = bounds[i] as number;
      return lower + (upper - lower) * ((rank - below) / c);
    }
    below += c;
  }
  return bounds[bounds.length - 1] ?? null;
}

// ---------------------------------------------------------------------------------------------
// Exposition helpers

/** A sample value as the text format spells it. */
function num(n: number): string {
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Number.isNaN(n)) return "NaN";
  return String(n);
}

/** A label value escaped for the text format: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

function family(out: string[], name: string, type: string, help: string): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
}

function counterSet(
  out: string[],
  name: string,
  help: string,
  label: string,
  names: readonly string[],
  values: Float64Array,
): void {
  family(out, name, "counter", help);
  for (let i = 0; i < names.length; i++) {
    out.push(`${name}{${label}="${names[i]}"} ${num(values[i] as number)}`);
  }
}

function histogram(out: string[], name: string, h: Histograms, series: number, labels: string): void {
  const sep = labels === "" ? "" : ",";
  let cumulative = 0;
  for (let i = 0; i < h.width; i++) {
    cumulative += h.counts[series * h.width + i] as number;
    const le = i < h.bounds.length ? num(h.bounds[i] as number) : "+Inf";
    out.push(`${name}_bucket{${labels}${sep}le="${le}"} ${num(cumulative)}`);
  }
  const braces = labels === "" ? "" : `{${labels}}`;
  out.push(`${name}_sum${braces} ${num(h.sums[series] as number)}`);
  out.push(`${name}_count${braces} ${num(h.totals[series] as number)}`);
}

// ---------------------------------------------------------------------------------------------
// The summary for the dashboard

export interface LatencySummary {
  readonly count: number;
  readonly sumSeconds: number;
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
}

export interface MetricsSummary {
  /** The `nowMs` the summary was taken at. */
  readonly at: number;
  readonly requests: {
    readonly total: number;
    readonly byRoute: Record<RouteName, number>;
    readonly byCode: Record<string, number>;
  };
  readonly decisions: {
    readonly total: number;
    readonly fill: number;
    readonly nofill: number;
    readonly byReason: Record<NoFillReasonName, number>;
    /** fill / total, null before the first decision. */
    readonly fillRate: number | null;
  };
  readonly latency: {
    /** Request latency over every route. */
    readonly all: LatencySummary;
    /** Bucket bounds (seconds) and the non-cumulative counts over every route (+Inf last). */
    readonly bounds: readonly number[];
    readonly buckets: readonly number[];
    /** Routes that answered at least once. */
    readonly byRoute: Partial<Record<RouteName, LatencySummary>>;
    readonly decision: LatencySummary;
  };
  readonly catalog: {
    readonly version: string | null;
    readonly ads: number | null;
    readonly lastSuccessAgeSeconds: number | null;
  };
  readonly syncFailures: Record<SyncFailureKind, number>;
  readonly store: {
    readonly errors: Record<keyof typeof StoreError, number>;
    readonly fallbacks: number;
    readonly breaker: keyof typeof Breaker;
  };
  readonly rateLimited: Record<keyof typeof RateLimit, number>;
  readonly shed: number;
  readonly impressions: Record<keyof typeof Impression, number>;
  readonly authFailures: Record<keyof typeof AuthFailure, number>;
}

function record<K extends string>(names: readonly K[], values: ArrayLike<number>): Record<K, number> {
  const out = {} as Record<K, number>;
  names.forEach((name, i) => {
    out[name] = values[i] as number;
  });
  return out;
}

function latencySummary(bounds: readonly number[], counts: readonly number[], sum: number): LatencySummary {
  let count = 0;
  for (const c of counts) count += c;
  return {
    count,
    sumSeconds: sum,
    p50: quantileFromBuckets(bounds, counts, 0.5),
    p90: quantileFromBuckets(bounds, counts, 0.9),
    p99: quantileFromBuckets(bounds, counts, 0.99),
  };
}

/** The last sync attempt and when it ended (epoch ms). */
export type LastSync = SyncOutcome & { readonly at: number };

// ---------------------------------------------------------------------------------------------
// The registry

export class Metrics {
  private readonly requests = new Float64Array(ROUTE_NAMES.length * CODE_NAMES.length);
  /**
   * HTTP requests answered since start, all routes, wrapping at 2^31 (the catalog sync and the
   * catalog worker pace rebuilds by whether it moved). In shared memory: the worker reads it.
   */
  readonly answeredCell = new Int32Array(new SharedArrayBuffer(4));
  get answered(): number {
    return this.answeredCell[0] as number;
  }
  private readonly requestLatency = new Histograms(REQUEST_BUCKETS, ROUTE_NAMES.length);
  private readonly decisions = new Float64Array(DECISION_NAMES.length);
  private readonly decisionLatency = new Histograms(DECISION_BUCKETS, 1);
  private readonly syncFailures = new Float64Array(SYNC_FAILURE_NAMES.length);
  private readonly storeErrors = new Float64Array(STORE_ERROR_NAMES.length);
  private readonly rateLimits = new Float64Array(RATE_LIMIT_NAMES.length);
  private readonly impressionResults = new Float64Array(IMPRESSION_NAMES.length);
  private readonly authFailures = new Float64Array(AUTH_FAILURE_NAMES.length);
  private storeFallbacks = 0;
  private sheds = 0;
  private breakerState: Breaker = Breaker.closed;
  private catalogVersion: string | null = null;
  private catalogAds: number | null = null;
  private lastSuccessMs: number | null = null;
  private last: LastSync | null = null;

  /** One answered HTTP request: its matched route, status and latency in seconds. */
  request(route: Route, status: number, seconds: number): void {
    this.answeredCell[0] = ((this.answeredCell[0] as number) + 1) | 0;
    const code = status >= 0 && status < 600 ? (CODE_INDEX[status | 0] as number) : CODE_OTHER;
    const i = route * CODE_NAMES.length + code;
    this.requests[i] = (this.requests[i] as number) + 1;
    this.requestLatency.observe(route, seconds);
  }

  /** One decision: fill or the no-fill reason, and how long deciding took in seconds. */
  decision(outcome: Decision, seconds: number): void {
    this.decisions[outcome] = (this.decisions[outcome] as number) + 1;
    this.decisionLatency.observe(0, seconds);
  }

  /** The catalog being served (call on every swap; the admin server also refreshes it at scrape). */
  catalog(version: string, ads: number): void {
    this.catalogVersion = version;
    this.catalogAds = ads;
  }

  /** A sync attempt ended at `atMs`: a failure counts by kind; success resets the age. */
  sync(outcome: SyncOutcome, atMs: number): void {
    if (outcome.kind === "failed") {
      const i = SYNC_FAILURE_INDEX[outcome.failure];
      this.syncFailures[i] = (this.syncFailures[i] as number) + 1;
    } else {
      this.lastSuccessMs = atMs;
      if (outcome.kind === "updated") {
        this.catalogVersion = outcome.version;
        this.catalogAds = outcome.ads;
      }
    }
    this.last = { ...outcome, at: atMs };
  }

  /** The last outcome passed to `sync`, or null. */
  lastSync(): LastSync | null {
    return this.last;
  }

  storeError(kind: StoreError): void {
    this.storeErrors[kind] = (this.storeErrors[kind] as number) + 1;
  }

  /** A player-keyed decision made without the player's history because the store failed. */
  storeFallback(): void {
    this.storeFallbacks++;
  }

  breaker(state: Breaker): void {
    this.breakerState = state;
  }

  rateLimited(limit: RateLimit = RateLimit.client): void {
    this.rateLimits[limit] = (this.rateLimits[limit] as number) + 1;
  }

  /** A request refused at once because too many were in flight. */
  shed(): void {
    this.sheds++;
  }

  impression(result: Impression): void {
    this.impressionResults[result] = (this.impressionResults[result] as number) + 1;
  }

  authFailure(reason: AuthFailure): void {
    this.authFailures[reason] = (this.authFailures[reason] as number) + 1;
  }

  /** The text exposition format 0.0.4. */
  render(nowMs: number): string {
    const out: string[] = [];
    const codes = CODE_NAMES.length;

    family(out, HTTP_REQUESTS_TOTAL, "counter", "HTTP requests answered, by matched route and status code.");
    for (let r = 0; r < ROUTE_NAMES.length; r++) {
      for (let c = 0; c < codes; c++) {
        const n = this.requests[r * codes + c] as number;
        if (n > 0)
          out.push(`${HTTP_REQUESTS_TOTAL}{route="${ROUTE_NAMES[r]}",code="${CODE_NAMES[c]}"} ${num(n)}`);
      }
    }

    family(
      out,
      HTTP_REQUEST_DURATION_SECONDS,
      "histogram",
      "Time to answer an HTTP request, by matched route.",
    );
    for (let r = 0; r < ROUTE_NAMES.length; r++) {
      if ((this.requestLatency.totals[r] as number) > 0) {
        histogram(out, HTTP_REQUEST_DURATION_SECONDS, this.requestLatency, r, `route="${ROUTE_NAMES[r]}"`);
      }
    }

    family(out, DECISIONS_TOTAL, "counter", "Ad decisions, by outcome and no-fill reason.");
    out.push(`${DECISIONS_TOTAL}{outcome="fill"} ${num(this.decisions[Decision.fill] as number)}`);
    for (let d = 1; d < DECISION_NAMES.length; d++) {
      out.push(
        `${DECISIONS_TOTAL}{outcome="nofill",reason="${DECISION_NAMES[d]}"} ${num(this.decisions[d] as number)}`,
      );
    }

    family(out, DECISION_DURATION_SECONDS, "histogram", "Time to decide which ad to serve.");
    histogram(out, DECISION_DURATION_SECONDS, this.decisionLatency, 0, "");

    family(out, CATALOG_INFO, "gauge", "The catalog version being served (always 1).");
    if (this.catalogVersion !== null) {
      out.push(`${CATALOG_INFO}{version="${escapeLabelValue(this.catalogVersion)}"} 1`);
    }
    family(out, CATALOG_ADS, "gauge", "Ads in the catalog being served.");
    if (this.catalogAds !== null) out.push(`${CATALOG_ADS} ${num(this.catalogAds)}`);
    family(out, CATALOG_SYNC_AGE_SECONDS, "gauge", "Seconds since the last successful catalog sync.");
    if (this.lastSuccessMs !== null) {
      out.push(`${CATALOG_SYNC_AGE_SECONDS} ${num(Math.max(0, nowMs - this.lastSuccessMs) / 1000)}`);
    }
    counterSet(
      out,
      CATALOG_SYNC_FAILURES_TOTAL,
      "Failed catalog sync attempts, by kind.",
      "kind",
      SYNC_FAILURE_NAMES,
      this.syncFailures,
    );

    counterSet(
      out,
      STORE_ERRORS_TOTAL,
      "Failed player-store calls, by kind.",
      "kind",
      STORE_ERROR_NAMES,
      this.storeErrors,
    );
    family(
      out,
      STORE_FALLBACKS_TOTAL,
      "counter",
      "Player-keyed decisions made without history after a store failure.",
    );
    out.push(`${STORE_FALLBACKS_TOTAL} ${num(this.storeFallbacks)}`);
    family(out, STORE_BREAKER_STATE, "gauge", "Player-store circuit breaker: 0 closed, 1 open, 2 half-open.");
    out.push(`${STORE_BREAKER_STATE} ${num(this.breakerState)}`);

    counterSet(
      out,
      RATE_LIMITED_TOTAL,
      "Requests refused by a rate limit, by limit.",
      "limit",
      RATE_LIMIT_NAMES,
      this.rateLimits,
    );
    family(out, SHED_TOTAL, "counter", "Requests refused at once because too many were in flight.");
    out.push(`${SHED_TOTAL} ${num(this.sheds)}`);
    counterSet(
      out,
      IMPRESSIONS_TOTAL,
      "Impression calls, by result.",
      "result",
      IMPRESSION_NAMES,
      this.impressionResults,
    );
    counterSet(
      out,
      AUTH_FAILURES_TOTAL,
      "Requests refused by authentication, by reason.",
      "reason",
      AUTH_FAILURE_NAMES,
      this.authFailures,
    );

    out.push("");
    return out.join("\n");
  }

  /** A JSON-able digest for the dashboard. */
  summary(nowMs: number): MetricsSummary {
    const codes = CODE_NAMES.length;
    const byRoute = {} as Record<RouteName, number>;
    const byCode: Record<string, number> = {};
    let total = 0;
    for (let r = 0; r < ROUTE_NAMES.length; r++) {
      let routeTotal = 0;
      for (let c = 0; c < codes; c++) {
        const n = this.requests[r * codes + c] as number;
        routeTotal += n;
        if (n > 0) byCode[CODE_NAMES[c] as string] = (byCode[CODE_NAMES[c] as string] ?? 0) + n;
      }
      byRoute[ROUTE_NAMES[r] as RouteName] = routeTotal;
      total += routeTotal;
    }

    const h = this.requestLatency;
    const all = new Array<number>(h.width).fill(0);
    let allSum = 0;
    const latencyByRoute: Partial<Record<RouteName, LatencySummary>> = {};
    for (let r = 0; r < ROUTE_NAMES.length; r++) {
      if ((h.totals[r] as number) === 0) continue;
      const counts = h.series(r);
      for (let i = 0; i < h.width; i++) all[i] = (all[i] as number) + (counts[i] as number);
      allSum += h.sums[r] as number;
      latencyByRoute[ROUTE_NAMES[r] as RouteName] = latencySummary(h.bounds, counts, h.sums[r] as number);
    }

    const fill = this.decisions[Decision.fill] as number;
    let nofill = 0;
    for (let d = 1; d < DECISION_NAMES.length; d++) nofill += this.decisions[d] as number;
    const byReason = record(
      DECISION_NAMES.slice(1) as readonly NoFillReasonName[],
      this.decisions.subarray(1),
    );

    return {
      at: nowMs,
      requests: { total, byRoute, byCode },
      decisions: {
        total: fill + nofill,
        fill,
        nofill,
        byReason,
        fillRate: fill + nofill === 0 ? null : fill / (fill + nofill),
      },
      latency: {
        all: latencySummary(h.bounds, all, allSum),
        bounds: h.bounds,
        buckets: all,
        byRoute: latencyByRoute,
        decision: latencySummary(
          this.decisionLatency.bounds,
          this.decisionLatency.series(0),
          this.decisionLatency.sums[0] as number,
        ),
      },
      catalog: {
        version: this.catalogVersion,
        ads: this.catalogAds,
        lastSuccessAgeSeconds:
          this.lastSuccessMs === null ? null : Math.max(0, nowMs - this.lastSuccessMs) / 1000,
      },
      syncFailures: record(SYNC_FAILURE_NAMES, this.syncFailures),
      store: {
        errors: record(STORE_ERROR_NAMES, this.storeErrors),
        fallbacks: this.storeFallbacks,
        breaker: BREAKER_NAMES[this.breakerState] as keyof typeof Breaker,
      },
      rateLimited: record(RATE_LIMIT_NAMES, this.rateLimits),
      shed: this.sheds,
      impressions: record(IMPRESSION_NAMES, this.impressionResults),
      authFailures: record(AUTH_FAILURE_NAMES, this.authFailures),
    };
  }
}

/** Monotonic milliseconds. */
const monotonic = (): number => performance.now();

/**
 * Wraps a route handler once (at startup) so every answer is counted under `route` with its
 * status and latency. The synchronous path allocates nothing; a handler that returns a promise
 * (the JWT branch) is measured when it settles. A throw counts as a 500 and is rethrown for the
 * server's `error` handler.
 */
export function timed<S, R extends Response | Promise<Response>>(
  metrics: Metrics,
  route: Route,
  handler: (req: Request, server: S) => R,
  clock: () => number = monotonic,
): (req: Request, server: S) => R {
  return (req, server) => {
    const started = clock();
    let out: R;
    try {
      out = handler(req, server);
    } catch (error) {
      metrics.request(route, 500, (clock() - started) / 1000);
      throw error;
    }
    if (out instanceof Response) {
      metrics.request(route, out.status, (clock() - started) / 1000);
      return out;
    }
    return timedLater(metrics, route, out, started, clock) as R;
  };
}

/** `timed` for a handler that awaits: apart, so the synchronous path makes no closure. */
function timedLater(
  metrics: Metrics,
  route: Route,
  pending: Promise<Response>,
  started: number,
  clock: () => number,
): Promise<Response> {
  return pending.then(
    (res) => {
      metrics.request(route, res.status, (clock() - started) / 1000);
      return res;
    },
    (error: unknown) => {
      metrics.request(route, 500, (clock() - started) / 1000);
      throw error;
    },
  );
}

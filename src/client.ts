/**
 * A typed client for adsrv, for games and tools written in JS/TS (`adsrv query` uses it).
 * Only `fetch`, no dependencies, no Bun or Node APIs: it runs in Bun, Node ≥ 20.3, Deno and
 * browsers (a browser page needs adsrv on its own origin: adsrv sends no CORS headers).
 * Nothing here throws: every outcome, transport failures included, is a value.
 *
 * ```ts
 * const adsrv = createAdsrvClient({ server: "https://ads.example.com", apiKey: process.env.ADSRV_API_KEY });
 * const answer = await adsrv.ad({ country: "us", lang: "eng", playerId: "p-42" });
 * if (answer.kind === "ad") {
 *   play(answer.ad.video_url, () => adsrv.impression(answer.ad.impression_url ?? ""));
 * } else if (answer.kind === "problem" && answer.problem.reason !== undefined) {
 *   // 404 no-fill: answer.problem.reason is no_ad_for_country_lang, outside_hours or frequency_capped
 * }
 * ```
 *
 * Retries (client methods only; `requestAd` makes exactly one request): a 503 answer
 * (`overloaded`, `no-catalog`, `auth-unavailable`) or a refused/reset connection is retried,
 * at most `retries` times (default 2, so at most 3 requests), after the `Retry-After` the server
 * sent plus a little jitter, or a short backoff when it sent none. A `Retry-After` longer than
 * `maxRetryDelayMs` is not waited for: the 503 is returned at once. 4xx answers (429 included)
 * and timeouts are never retried.
 * @module
 */

/** What to ask for. Codes are sent as given; the server validates them (400 when unknown). */
export interface AdRequest {
  readonly country: string;
  readonly lang: string;
  /** Sent as `player_id` (servers without player history ignore it). */
  readonly playerId?: string | undefined;
}

export interface RequestOptions {
  /** Sent as `X-Api-Key`. */
  readonly apiKey?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Deadline for the whole exchange, body included. */
  readonly timeoutMs: number;
  /** Aborts the request early (counts as a timeout). */
  readonly signal?: AbortSignal;
  /** Sent as `X-Request-Id` (the server echoes it when well formed, else makes its own). */
  readonly requestId?: string;
}

/** The decision body: `id` and `video_url` are fixed; `impression_url` comes with adsrv ≥ issue 7. */
export interface Ad {
  readonly id: string;
  readonly video_url: string;
  /** Call it (GET, no credentials: see `AdsrvClient.impression`) when the ad starts playing. */
  readonly impression_url?: string;
  readonly [field: string]: unknown;
}

/** Problem codes adsrv sends (`type` is `urn:adsrv:problem:<code>`). */
export type ProblemCode =
  | "invalid-param"
  | "invalid-request"
  | "unauthorized"
  | "not-found"
  | "no-fill"
  | "method-not-allowed"
  | "impression-expired"
  | "uri-too-long"
  | "rate-limited"
  | "no-catalog"
  | "overloaded"
  | "auth-unavailable"
  | "shutting-down"
  | "internal";

/** Why a `no-fill` problem (404 from `/ad_request`) or an Error-only VAST document had no ad. */
export type NoFillReason = "no_ad_for_country_lang" | "outside_hours" | "frequency_capped";

/** An RFC 9457 problem document as the server sent it (`reason`, `param`, ... included). */
export interface Problem {
  /** `urn:adsrv:problem:<code>`, or `about:blank` when the answer carried no problem document. */
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  /** `no-fill`: a `NoFillReason`; `invalid-param` on `/impression`: `malformed` or `bad_signature`. */
  readonly reason?: string;
  /** `invalid-param`: the offending query parameter. */
  readonly param?: string;
  readonly [member: string]: unknown;
}

export type TransportFailure = "invalid_url" | "connect" | "timeout" | "protocol";

/** Facts every answer that reached the server carries. */
interface Answered {
  readonly status: number;
  readonly latencyMs: number;
  /** The `X-Request-Id` of the last answer: quote it when reporting a problem. */
  readonly requestId: string | null;
  /** Requests made, retries included (`requestAd`: always 1). */
  readonly attempts: number;
}

export interface ProblemAnswer extends Answered {
  readonly kind: "problem";
  readonly problem: Problem;
  /** `Retry-After` when the server sent one (503, 429). */
  readonly retryAfter: string | null;
}

export interface ErrorAnswer {
  readonly kind: "error";
  readonly error: TransportFailure;
  readonly message: string;
  readonly latencyMs: number;
  readonly attempts: number;
}

export interface AdFound extends Answered {
  readonly kind: "ad";
  readonly ad: Ad;
  /** `Adsrv-Catalog-Version`: the catalog that made the decision. */
  readonly catalogVersion: string | null;
}

export type AdAnswer = AdFound | ProblemAnswer | ErrorAnswer;

export interface VastFound extends Answered {
  readonly kind: "vast";
  /** The VAST 4.2 document, as sent: hand it to the video player (e.g. IMA `adsResponse`). */
  readonly xml: string;
  /** False for the Error-only document adsrv sends on no fill (still a 200). */
  readonly filled: boolean;
  /** On no fill, the reason named by the Error URI (`urn:adsrv:no-fill:<reason>`). */
  readonly noFillReason: string | null;
  readonly catalogVersion: string | null;
}

export type VastAnswer = VastFound | ProblemAnswer | ErrorAnswer;

export interface ImpressionRecorded extends Answered {
  readonly kind: "impression";
  /** `counted` the first time a token is seen, `replay` afterwards (answered, not counted). */
  readonly outcome: "counted" | "replay" | null;
}

export type ImpressionAnswer = ImpressionRecorded | ProblemAnswer | ErrorAnswer;

export interface Rates {
  readonly requests: number;
  readonly served: number;
  readonly impressions: number;
  /** served / requests; null when nothing was requested. */
  readonly fill_rate: number | null;
  /** impressions / served; null when nothing was served. */
  readonly show_rate: number | null;
}

export interface CountryRates extends Rates {
  readonly no_fill: number;
}

/** The `GET /stats` body: counts since the instance started (fleet totals with Redis). */
export interface Stats {
  readonly generated_at: string;
  readonly since: string;
  readonly totals: CountryRates;
  readonly by_ad: Readonly<Record<string, Rates>>;
  readonly by_country: Readonly<Record<string, CountryRates>>;
  readonly no_fill_by_reason: Readonly<Record<string, number>>;
  readonly rows: readonly {
    readonly ad: string;
    readonly country: string;
    readonly lang: string;
    readonly hour: number;
    readonly served: number;
    readonly impressions: number;
  }[];
  readonly no_fill_rows: readonly {
    readonly country: string;
    readonly lang: string;
    readonly reason: string;
    readonly hour: number;
    readonly count: number;
  }[];
  readonly dropped: { readonly served: number; readonly impressions: number; readonly no_fill: number };
  readonly limits: { readonly max_keys: number; readonly max_no_fill_keys: number };
}

export interface StatsFound extends Answered {
  readonly kind: "stats";
  readonly stats: Stats;
}

export type StatsAnswer = StatsFound | ProblemAnswer | ErrorAnswer;

// ---------------------------------------------------------------------------------------------
// URLs

/** `<server><path>?<params>`, keeping a path prefix of `server` (`https://h/adsrv` + `/vast`). */
function routeUrl(server: string, path: string, params: Readonly<Record<string, string>> = {}): URL {
  const base = new URL(server);
  base.pathname = `${base.pathname.replace(/\/+$/, "")}${path}`;
  base.search = new URLSearchParams(params).toString();
  base.hash = "";
  return base;
}

function decisionParams(request: AdRequest): Record<string, string> {
  const params: Record<string, string> = { country: request.country, lang: request.lang };
  if (request.playerId !== undefined) params.player_id = request.playerId;
  return params;
}

/** The request URL: `<server>/ad_request?country=..&lang=..[&player_id=..]`. */
export function adRequestUrl(server: string, request: AdRequest): URL {
  return routeUrl(server, "/ad_request", decisionParams(request));
}

/** The VAST URL: `<server>/vast?country=..&lang=..[&player_id=..]` (for a player's ad tag). */
export function vastUrl(server: string, request: AdRequest): URL {
  return routeUrl(server, "/vast", decisionParams(request));
}

function httpUrl(make: () => URL): URL | null {
  try {
    const url = make();
    return url.protocol === "http:" || url.protocol === "https:" ? url : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// One exchange

interface Exchanged {
  readonly ok: true;
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers;
  readonly text: string;
  readonly latencyMs: number;
}

interface Failed {
  readonly ok: false;
  readonly error: "connect" | "timeout";
  readonly message: string;
  readonly latencyMs: number;
}

function errorName(error: unknown): string {
  if (error && typeof error === "object" && "code" in error && typeof error.code === "string")
    return error.code;
  return error instanceof Error ? error.message || error.name : "error";
}

async function exchange(
  url: URL,
  headers: Readonly<Record<string, string>>,
  timeoutMs: number,
  callerSignal: AbortSignal | undefined,
): Promise<Exchanged | Failed> {
  const started = performance.now();
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = callerSignal ? AbortSignal.any([deadline, callerSignal]) : deadline;
  try {
    // Redirects are not followed: adsrv never sends one, and credentials must not travel on.
    const response = await fetch(url, { headers, redirect: "manual", signal });
    const text = await response.text();
    return {
      ok: true,
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
      text,
      latencyMs: performance.now() - started,
    };
  } catch (error) {
    const latencyMs = performance.now() - started;
    if (signal.aborted) {
      return {
        ok: false,
        error: "timeout",
        message: `no answer from ${url.origin} within ${timeoutMs} ms`,
        latencyMs,
      };
    }
    return {
      ok: false,
      error: "connect",
      message: `cannot reach ${url.origin}: ${errorName(error)}`,
      latencyMs,
    };
  }
}

function asProblem(value: unknown, status: number, statusText: string): Problem {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    return {
      ...v,
      type: typeof v.type === "string" ? v.type : "about:blank",
      title: typeof v.title === "string" ? v.title : statusText,
      status: typeof v.status === "number" ? v.status : status,
    };
  }
  // RFC 9457 §4.2: a response without a problem document reads as "about:blank".
  return { type: "about:blank", title: statusText || `HTTP ${status}`, status };
}

function parseJson(text: string): unknown {
  try {
    return text === "" ? null : JSON.parse(text);
  } catch {
    return null;
  }
}

function isAd(value: unknown): value is Ad {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.id === "string" &&
    typeof v.video_url === "string" &&
    (v.impression_url === undefined || typeof v.impression_url === "string")
  );
}

function isStats(value: unknown): value is Stats {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.totals === "object" &&
    v.totals !== null &&
    typeof v.by_ad === "object" &&
    Array.isArray(v.rows) &&
    typeof v.generated_at === "string"
  );
}

/** What a non-2xx answer becomes. */
function problemAnswer(res: Exchanged, attempts: number): ProblemAnswer {
  return {
    kind: "problem",
    status: res.status,
    problem: asProblem(parseJson(res.text), res.status, res.statusText),
    retryAfter: res.headers.get("retry-after"),
    latencyMs: res.latencyMs,
    requestId: res.headers.get("x-request-id"),
    attempts,
  };
}

function failure(error: TransportFailure, message: string, latencyMs: number, attempts: number): ErrorAnswer {
  return { kind: "error", error, message, latencyMs, attempts };
}

const JSON_ACCEPT = "application/json, application/problem+json";

function requestHeaders(
  accept: string,
  creds: { readonly apiKey?: string | undefined; readonly token?: string | undefined },
  requestId: string | undefined,
): Record<string, string> {
  const headers: Record<string, string> = { Accept: accept };
  if (creds.apiKey !== undefined) headers["X-Api-Key"] = creds.apiKey;
  if (creds.token !== undefined) headers.Authorization = `Bearer ${creds.token}`;
  if (requestId !== undefined) headers["X-Request-Id"] = requestId;
  return headers;
}

function readAd(res: Exchanged, attempts: number): AdAnswer {
  if (res.status < 200 || res.status >= 300) return problemAnswer(res, attempts);
  const body = parseJson(res.text);
  if (!isAd(body)) {
    return failure(
      "protocol",
      `${res.status} answer is not an ad (expected JSON with id and video_url)`,
      res.latencyMs,
      attempts,
    );
  }
  return {
    kind: "ad",
    status: res.status,
    ad: body,
    latencyMs: res.latencyMs,
    requestId: res.headers.get("x-request-id"),
    attempts,
    catalogVersion: res.headers.get("adsrv-catalog-version"),
  };
}

const NO_FILL_URN = /urn:adsrv:no-fill:([a-z_]+)/;

function readVast(res: Exchanged, attempts: number): VastAnswer {
  if (res.status < 200 || res.status >= 300) return problemAnswer(res, attempts);
  const type = res.headers.get("content-type") ?? "";
  if (!/^(application|text)\/xml\b/i.test(type) || !/<VAST[\s>]/.test(res.text)) {
    return failure(
      "protocol",
      `${res.status} answer is not a VAST document (${type || "no type"})`,
      res.latencyMs,
      attempts,
    );
  }
  const filled = /<Ad[\s>]/.test(res.text);
  return {
    kind: "vast",
    status: res.status,
    xml: res.text,
    filled,
    noFillReason: filled ? null : (NO_FILL_URN.exec(res.text)?.[1] ?? null),
    latencyMs: res.latencyMs,
    requestId: res.headers.get("x-request-id"),
    attempts,
    catalogVersion: res.headers.get("adsrv-catalog-version"),
  };
}

function readImpression(res: Exchanged, attempts: number): ImpressionAnswer {
  if (res.status < 200 || res.status >= 300) return problemAnswer(res, attempts);
  const outcome = res.headers.get("adsrv-impression");
  return {
    kind: "impression",
    status: res.status,
    outcome: outcome === "counted" || outcome === "replay" ? outcome : null,
    latencyMs: res.latencyMs,
    requestId: res.headers.get("x-request-id"),
    attempts,
  };
}

function readStats(res: Exchanged, attempts: number): StatsAnswer {
  if (res.status < 200 || res.status >= 300) return problemAnswer(res, attempts);
  const body = parseJson(res.text);
  if (!isStats(body)) {
    return failure("protocol", `${res.status} answer is not a stats document`, res.latencyMs, attempts);
  }
  return {
    kind: "stats",
    status: res.status,
    stats: body,
    latencyMs: res.latencyMs,
    requestId: res.headers.get("x-request-id"),
    attempts,
  };
}

/** Asks the server for an ad, once (no retries). Never throws. */
export async function requestAd(
  server: string,
  request: AdRequest,
  options: RequestOptions,
): Promise<AdAnswer> {
  const url = httpUrl(() => adRequestUrl(server, request));
  if (url === null) return failure("invalid_url", `${server} is not an http(s) URL`, 0, 0);
  const res = await exchange(
    url,
    requestHeaders(JSON_ACCEPT, options, options.requestId),
    options.timeoutMs,
    options.signal,
  );
  if (!res.ok) return failure(res.error, res.message, res.latencyMs, 1);
  return readAd(res, 1);
}

// ---------------------------------------------------------------------------------------------
// Retries

/** Jitter added to each wait: up to this share of it (at least `MIN_JITTER_MS`). */
const JITTER = 0.2;
const MIN_JITTER_MS = 50;
/** Wait before retry n (1-based) when the server named none: 200, 400, 800 ms ... */
const BACKOFF_BASE_MS = 200;

/**
 * `Retry-After` in milliseconds: delta-seconds, or an HTTP date (RFC 9110 §10.2.3) measured
 * from `nowMs`. Null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, nowMs: number = Date.now()): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, date - nowMs);
}

/**
 * How long to wait before retry number `retry` (1-based): the server's `Retry-After` (ms) or an
 * exponential backoff, plus jitter, never more than `maxMs`. Null when the server asks for more
 * than `maxMs`: honouring it would stall the caller, so the answer is returned instead.
 */
export function retryDelayMs(
  retryAfterMs: number | null,
  retry: number,
  maxMs: number,
  random: () => number,
): number | null {
  if (retryAfterMs !== null && retryAfterMs > maxMs) return null;
  const base = retryAfterMs ?? BACKOFF_BASE_MS * 2 ** (retry - 1);
  const jitter = random() * Math.max(MIN_JITTER_MS, base * JITTER);
  return Math.min(maxMs, Math.round(base + jitter));
}

export interface AdsrvClientOptions {
  /** Base URL of adsrv, e.g. `https://ads.example.com` (a path prefix is kept). */
  readonly server: string;
  /** Sent as `X-Api-Key` to the decision and stats routes (never to `/impression`). */
  readonly apiKey?: string | undefined;
  /** A JWT, sent as `Authorization: Bearer` (never to `/impression`). */
  readonly token?: string | undefined;
  /** Deadline per request, body included (default 5000 ms). */
  readonly timeoutMs?: number | undefined;
  /** Retries after a 503 or a failed connection (default 2: at most 3 requests per call). */
  readonly retries?: number | undefined;
  /** Longest wait before a retry; a longer `Retry-After` is not retried (default 10,000 ms). */
  readonly maxRetryDelayMs?: number | undefined;
  /** How to wait between tries (default `setTimeout`); tests pass a recorder. */
  readonly sleep?: ((ms: number) => Promise<void>) | undefined;
  /** Source of jitter in [0, 1) (default `Math.random`). */
  readonly random?: (() => number) | undefined;
}

export interface CallOptions {
  /** Aborts the call, waits included (counts as a timeout). */
  readonly signal?: AbortSignal | undefined;
  /** Sent as `X-Request-Id` on every try. */
  readonly requestId?: string | undefined;
}

export interface AdsrvClient {
  readonly server: string;
  /** `GET /ad_request`: the ad to play, or a problem (404 `no-fill` with a `reason`, 400, 401 ...). */
  ad(request: AdRequest, options?: CallOptions): Promise<AdAnswer>;
  /** `GET /vast`: the same decision as a VAST 4.2 document (no fill: a 200 Error-only document). */
  vast(request: AdRequest, options?: CallOptions): Promise<VastAnswer>;
  /**
   * Reports that an ad started playing: `GET` of the decision's `impression_url`, as given and
   * without credentials (its signed token is the credential). Counted once; a repeat is a replay.
   */
  impression(impressionUrl: string, options?: CallOptions): Promise<ImpressionAnswer>;
  /** `GET /stats`: served, impression and no-fill counts. */
  stats(options?: CallOptions): Promise<StatsAnswer>;
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_RETRIES = 2;
export const DEFAULT_MAX_RETRY_DELAY_MS = 10_000;

/** A client bound to one server and one set of credentials. Never throws. */
export function createAdsrvClient(options: AdsrvClientOptions): AdsrvClient {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const retries = Math.max(0, Math.floor(options.retries ?? DEFAULT_RETRIES));
  const maxDelayMs = options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  const creds = { apiKey: options.apiKey, token: options.token };

  /** Tries until an answer is final: not a 503, not a refused connection, or out of tries. */
  async function call<T>(
    url: URL | null,
    headers: Readonly<Record<string, string>>,
    read: (res: Exchanged, attempts: number) => T,
    opts: CallOptions,
  ): Promise<T | ErrorAnswer> {
    if (url === null) return failure("invalid_url", `${options.server} is not an http(s) URL`, 0, 0);
    for (let attempt = 1; ; attempt++) {
      const res = await exchange(url, headers, timeoutMs, opts.signal);
      const retryable = res.ok ? res.status === 503 : res.error === "connect";
      const retryAfter = res.ok ? parseRetryAfter(res.headers.get("retry-after")) : null;
      const delay =
        retryable && attempt <= retries ? retryDelayMs(retryAfter, attempt, maxDelayMs, random) : null;
      if (delay === null) {
        if (!res.ok) return failure(res.error, res.message, res.latencyMs, attempt);
        return read(res, attempt);
      }
      if (!(await wait(delay, opts.signal))) {
        return failure("timeout", "the call was aborted while waiting to retry", 0, attempt);
      }
    }
  }

  /** Sleeps unless aborted first; false when aborted. */
  async function wait(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
    if (signal === undefined) {
      await sleep(ms);
      return true;
    }
    if (signal.aborted) return false;
    let onAbort = (): void => {};
    const aborted = new Promise<false>((resolve) => {
      onAbort = () => resolve(false);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([sleep(ms).then(() => !signal.aborted), aborted]);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  return {
    server: options.server,
    ad: (request, opts = {}) =>
      call(
        httpUrl(() => adRequestUrl(options.server, request)),
        requestHeaders(JSON_ACCEPT, creds, opts.requestId),
        readAd,
        opts,
      ),
    vast: (request, opts = {}) =>
      call(
        httpUrl(() => vastUrl(options.server, request)),
        requestHeaders("application/xml, application/problem+json", creds, opts.requestId),
        readVast,
        opts,
      ),
    impression: async (impressionUrl, opts = {}) => {
      const url = httpUrl(() => new URL(impressionUrl));
      if (url === null) return failure("invalid_url", "the impression URL is not an http(s) URL", 0, 0);
      return call(url, requestHeaders("application/problem+json", {}, opts.requestId), readImpression, opts);
    },
    stats: (opts = {}) =>
      call(
        httpUrl(() => routeUrl(options.server, "/stats")),
        requestHeaders(JSON_ACCEPT, creds, opts.requestId),
        readStats,
        opts,
      ),
  };
}

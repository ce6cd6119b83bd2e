/**
 * A small typed client for `GET /ad_request`, for games and tools (`adsrv query` uses it).
 * Only `fetch`, no dependencies. Never throws: every outcome is a value.
 *
 * ```ts
 * const answer = await requestAd("http://127.0.0.1:8080", { country: "us", lang: "eng" }, { timeoutMs: 2000 });
 * if (answer.kind === "ad") play(answer.ad.video_url);
 * ```
 * @module
 */

/** What to ask for. Codes are sent as given; the server validates them (400 when unknown). */
export interface AdRequest {
  readonly country: string;
  readonly lang: string;
  /** Sent as `player_id` (servers without player history ignore it). */
  readonly playerId?: string;
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
}

/** The ad body: `id` and `video_url` are fixed; later servers may add fields. */
export interface Ad {
  readonly id: string;
  readonly video_url: string;
  readonly [field: string]: unknown;
}

/** An RFC 9457 problem document as the server sent it (`reason`, `param`, ... included). */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly reason?: string;
  readonly param?: string;
  readonly [member: string]: unknown;
}

export type TransportFailure = "invalid_url" | "connect" | "timeout" | "protocol";

export type AdAnswer =
  | { readonly kind: "ad"; readonly status: number; readonly ad: Ad; readonly latencyMs: number }
  | {
      readonly kind: "problem";
      readonly status: number;
      readonly problem: Problem;
      /** `Retry-After` when the server sent one (503, 429). */
      readonly retryAfter: string | null;
      readonly latencyMs: number;
    }
  | {
      readonly kind: "error";
      readonly error: TransportFailure;
      readonly message: string;
      readonly latencyMs: number;
    };

/** The request URL: `<server>/ad_request?country=..&lang=..[&player_id=..]`. */
export function adRequestUrl(server: string, request: AdRequest): URL {
  const base = new URL(server);
  base.pathname = `${base.pathname.replace(/\/+$/, "")}/ad_request`;
  const params = new URLSearchParams({ country: request.country, lang: request.lang });
  if (request.playerId !== undefined) params.set("player_id", request.playerId);
  base.search = params.toString();
  base.hash = "";
  return base;
}

function isAd(value: unknown): value is Ad {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.id === "string" && typeof v.video_url === "string";
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

function errorName(error: unknown): string {
  if (error && typeof error === "object" && "code" in error && typeof error.code === "string")
    return error.code;
  return error instanceof Error ? error.message || error.name : "error";
}

/** Asks the server for an ad. Never throws. */
export async function requestAd(
  server: string,
  request: AdRequest,
  options: RequestOptions,
): Promise<AdAnswer> {
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;
  let url: URL;
  try {
    url = adRequestUrl(server, request);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError("not http(s)");
  } catch {
    return { kind: "error", error: "invalid_url", message: `${server} is not an http(s) URL`, latencyMs: 0 };
  }
  const headers: Record<string, string> = { Accept: "application/json, application/problem+json" };
  if (options.apiKey !== undefined) headers["X-Api-Key"] = options.apiKey;
  if (options.token !== undefined) headers.Authorization = `Bearer ${options.token}`;
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { headers, redirect: "manual", signal });
    text = await response.text();
  } catch (error) {
    if (signal.aborted) {
      return {
        kind: "error",
        error: "timeout",
        message: `no answer from ${url.origin} within ${options.timeoutMs} ms`,
        latencyMs: elapsed(),
      };
    }
    return {
      kind: "error",
      error: "connect",
      message: `cannot reach ${url.origin}: ${errorName(error)}`,
      latencyMs: elapsed(),
    };
  }
  const latencyMs = elapsed();
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (response.status >= 200 && response.status < 300) {
    if (isAd(body)) return { kind: "ad", status: response.status, ad: body, latencyMs };
    return {
      kind: "error",
      error: "protocol",
      message: `${response.status} answer is not an ad (expected JSON with id and video_url)`,
      latencyMs,
    };
  }
  return {
    kind: "problem",
    status: response.status,
    problem: asProblem(body, response.status, response.statusText),
    retryAfter: response.headers.get("retry-after"),
    latencyMs,
  };
}

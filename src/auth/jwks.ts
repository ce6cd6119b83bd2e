/**
 * A JSON Web Key Set for one URL, kept in memory and refreshed by us rather than by jose's
 * `createRemoteJWKSet`: past its `cacheMaxAge` with the endpoint down, that one fails every
 * verification (docs: ENGINEERING.md §3), while auth must fail closed only when no key was ever
 * loaded (§4). Each good fetch swaps in a fresh `createLocalJWKSet`; a failed one keeps the last
 * good set.
 *
 * - Initial load at creation, then a background refresh (hourly by default) on an unref'd timer;
 *   after a failed background fetch it retries sooner (1 s doubling, capped).
 * - A token whose `kid` is not in the set triggers a refetch, single-flight, and at most one fetch
 *   start per `unknownKidIntervalMs` (10 s) counting every fetch, so a flood of random `kid`s costs
 *   the JWKS endpoint one GET per interval.
 * - Fetches are bounded: total timeout (5 s), `redirect: "manual"` (any 3xx is a failure), a byte
 *   cap (1 MiB) while streaming, and a cap on the number of keys. Only public signature keys of
 *   kty RSA, EC or OKP are kept (symmetric and private members are dropped).
 * - `kid` only selects a key of this set; `jku`, `x5u`, `jwk` and `x5c` headers are never looked at.
 * @module
 */

import type { CryptoKey, FlattenedJWSInput, JSONWebKeySet, JWK, JWSHeaderParameters } from "jose";
import { createLocalJWKSet, errors } from "jose";
import { type CappedBody, readCapped } from "../catalog/upstream.ts";
import { type Logger, silentLogger } from "../telemetry/log.ts";

export interface JwksStoreOptions {
  /** The JWKS document URL (trusted configuration). */
  readonly url: string;
  /** Background refresh period, ms (default one hour). */
  readonly refreshIntervalMs?: number;
  /** Minimum time between two fetch starts caused by an unknown `kid` or a missing key set, ms (10 s). */
  readonly unknownKidIntervalMs?: number;
  /** First retry delay after a failed background fetch, ms (1 s); doubles up to `retryMaxMs`. */
  readonly retryBaseMs?: number;
  /** Longest retry delay after failures, ms (5 min, never above the refresh interval). */
  readonly retryMaxMs?: number;
  /** Whole-exchange timeout of one fetch, body included, ms (5 s). */
  readonly timeoutMs?: number;
  /** Largest JWKS body accepted, bytes (1 MiB). */
  readonly maxBytes?: number;
  /** Largest number of keys kept from one document (100). */
  readonly maxKeys?: number;
  /** Clock for the refetch limit, ms since the epoch (default `Date.now`). Timers use real time. */
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Start the background refresh timer (default true). The initial load happens regardless. */
  readonly backgroundRefresh?: boolean;
}

export const JWKS_DEFAULTS = {
  refreshIntervalMs: 3_600_000,
  unknownKidIntervalMs: 10_000,
  retryBaseMs: 1_000,
  retryMaxMs: 300_000,
  timeoutMs: 5_000,
  maxBytes: 1024 * 1024,
  maxKeys: 100,
} as const;

export type JwksFailure =
  | "connect"
  | "timeout"
  | "redirect"
  | "http_status"
  | "too_large"
  | "malformed"
  | "no_keys"
  | "stopped";

export interface JwksStats {
  /** Fetch attempts started (each is one GET). */
  readonly fetches: number;
  readonly failures: number;
  readonly successes: number;
  /** Fetches started because of an unknown `kid` or a missing key set. */
  readonly unknownKidFetches: number;
  /** Unknown-`kid` lookups that were refused a fetch by the rate limit. */
  readonly rateLimited: number;
  /** Keys in the current set (0 when none was ever loaded). */
  readonly keys: number;
  /** Clock time of the last good fetch, or null. */
  readonly lastSuccessAt: number | null;
  readonly lastFailure: JwksFailure | null;
}

/** Thrown by `getKey` when no key set was ever loaded: the caller answers 503, not 401. */
export class JwksUnavailableError extends Error {
  override readonly name = "JwksUnavailableError";
  constructor() {
    super("no JSON Web Key Set loaded yet");
  }
}

export interface JwksStore {
  /** A jose key resolver (`jwtVerify(token, store.getKey, …)`). */
  readonly getKey: (protectedHeader?: JWSHeaderParameters, token?: FlattenedJWSInput) => Promise<CryptoKey>;
  /** True once a key set has been loaded (it then stays true: the last good set is kept). */
  readonly ready: boolean;
  /** Settles after the initial fetch attempt, with whether keys are loaded. */
  readonly loaded: Promise<boolean>;
  /** Fetches now, joining a fetch in flight; ignores the unknown-`kid` limit. True if a set was loaded. */
  refresh(): Promise<boolean>;
  /** The `kid`s of the current set. */
  kids(): readonly string[];
  stats(): JwksStats;
  /** Stops the timer and aborts a fetch in flight. Cached keys keep working. */
  stop(): void;
}

interface KeySet {
  readonly resolve: ReturnType<typeof createLocalJWKSet>;
  readonly kids: ReadonlySet<string>;
  readonly size: number;
}

type FetchOutcome =
  | { readonly ok: true; readonly set: KeySet }
  | { readonly ok: false; readonly failure: JwksFailure; readonly message: string };

const KEY_TYPES = new Set(["RSA", "EC", "OKP"]);
/** Members that only private or symmetric keys carry. */
const SECRET_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"] as const;

export function createJwksStore(options: JwksStoreOptions): JwksStore {
  const url = options.url;
  const refreshIntervalMs = options.refreshIntervalMs ?? JWKS_DEFAULTS.refreshIntervalMs;
  const unknownKidIntervalMs = options.unknownKidIntervalMs ?? JWKS_DEFAULTS.unknownKidIntervalMs;
  const retryBaseMs = options.retryBaseMs ?? JWKS_DEFAULTS.retryBaseMs;
  const retryMaxMs = Math.min(options.retryMaxMs ?? JWKS_DEFAULTS.retryMaxMs, refreshIntervalMs);
  const timeoutMs = options.timeoutMs ?? JWKS_DEFAULTS.timeoutMs;
  const maxBytes = options.maxBytes ?? JWKS_DEFAULTS.maxBytes;
  const maxKeys = options.maxKeys ?? JWKS_DEFAULTS.maxKeys;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const where = describeUrl(url);

  let current: KeySet | null = null;
  let inflight: Promise<boolean> | null = null;
  let abort: AbortController | null = null;
  let lastFetchStartedAt: number | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  let consecutiveFailures = 0;
  const counters = {
    fetches: 0,
    failures: 0,
    successes: 0,
    unknownKidFetches: 0,
    rateLimited: 0,
    lastSuccessAt: null as number | null,
    lastFailure: null as JwksFailure | null,
  };

  function startFetch(): Promise<boolean> {
    if (inflight) return inflight;
    if (stopped) return Promise.resolve(false);
    lastFetchStartedAt = now();
    counters.fetches++;
    const controller = new AbortController();
    abort = controller;
    inflight = fetchKeySet(controller.signal).then((outcome) => {
      inflight = null;
      abort = null;
      if (outcome.ok) {
        current = outcome.set;
        consecutiveFailures = 0;
        counters.successes++;
        counters.lastSuccessAt = now();
        logger.info("jwks loaded", { jwks: where, keys: outcome.set.size });
        return true;
      }
      consecutiveFailures++;
      counters.failures++;
      counters.lastFailure = outcome.failure;
      logger.warn("jwks fetch failed", {
        jwks: where,
        failure: outcome.failure,
        detail: outcome.message,
        keeping: current ? current.size : 0,
      });
      return false;
    });
    return inflight;
  }

  /** A fetch for an unknown `kid` (or for a missing set): joins one in flight, else rate-limited. */
  function refetchForUnknownKid(): Promise<boolean> {
    if (inflight) return inflight;
    if (stopped) return Promise.resolve(false);
    if (lastFetchStartedAt !== null && now() - lastFetchStartedAt < unknownKidIntervalMs) {
      counters.rateLimited++;
      return Promise.resolve(false);
    }
    counters.unknownKidFetches++;
    return startFetch();
  }

  async function fetchKeySet(signal: AbortSignal): Promise<FetchOutcome> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = AbortSignal.any([signal, timeout]);
    const failed = (failure: JwksFailure, message: string): FetchOutcome => ({ ok: false, failure, message });
    const aborted = (): FetchOutcome =>
      signal.aborted
        ? failed("stopped", "stopped")
        : failed("timeout", `no complete answer within ${timeoutMs} ms`);
    let response: Response;
    try {
      response = await fetch(url, {
        redirect: "manual",
        signal: combined,
        headers: { Accept: "application/jwk-set+json, application/json" },
      });
    } catch (error) {
      if (combined.aborted) return aborted();
      return failed("connect", `cannot reach the JWKS endpoint: ${errorCode(error)}`);
    }
    if (response.status >= 300 && response.status < 400) {
      await cancel(response);
      return failed("redirect", `redirect (${response.status}) not followed`);
    }
    if (response.status !== 200) {
      await cancel(response);
      return failed("http_status", `JWKS endpoint answered ${response.status}`);
    }
    let body: CappedBody;
    try {
      body = await readCapped(response, maxBytes);
    } catch (error) {
      if (combined.aborted) return aborted();
      return failed("connect", `body read failed: ${errorCode(error)}`);
    }
    if (!body.ok) return failed("too_large", body.message);
    let document: unknown;
    try {
      document = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body.body));
    } catch {
      return failed("malformed", "body is not JSON");
    }
    return buildKeySet(document, maxKeys);
  }

  function schedule(delayMs: number): void {
    if (stopped || options.backgroundRefresh === false) return;
    timer = setTimeout(() => {
      timer = null;
      void startFetch().then((ok) => schedule(ok ? refreshIntervalMs : retryDelay()));
    }, delayMs);
    timer.unref();
  }

  function retryDelay(): number {
    const exponent = Math.min(Math.max(consecutiveFailures - 1, 0), 30);
    return Math.min(retryBaseMs * 2 ** exponent, retryMaxMs);
  }

  async function getKey(
    protectedHeader?: JWSHeaderParameters,
    token?: FlattenedJWSInput,
  ): Promise<CryptoKey> {
    let set = current;
    if (set === null) {
      await refetchForUnknownKid();
      set = current;
      if (set === null) throw new JwksUnavailableError();
    }
    try {
      return await set.resolve(protectedHeader, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
      // Only a kid this set does not know may cost a fetch; a known kid with another alg, or no
      // kid at all, is simply refused.
      const kid = protectedHeader?.kid;
      if (typeof kid !== "string" || set.kids.has(kid)) throw error;
      if (current === set) await refetchForUnknownKid();
      const fresh = current;
      if (fresh === null || fresh === set) throw error;
      return fresh.resolve(protectedHeader, token);
    }
  }

  const loaded = startFetch().then((ok) => {
    schedule(ok ? refreshIntervalMs : retryDelay());
    return ok;
  });

  return {
    getKey,
    get ready() {
      return current !== null;
    },
    loaded,
    refresh: () => startFetch(),
    kids: () => (current ? [...current.kids] : []),
    stats: () => ({ ...counters, keys: current ? current.size : 0 }),
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      abort?.abort();
    },
  };
}

/** Validates a JWKS document and keeps its public signature keys. */
function buildKeySet(document: unknown, maxKeys: number): FetchOutcome {
  if (
    typeof document !== "object" ||
    document === null ||
    !Array.isArray((document as { keys?: unknown }).keys)
  ) {
    return { ok: false, failure: "malformed", message: "not a JWK Set (no keys array)" };
  }
  const raw: unknown[] = (document as { keys: unknown[] }).keys;
  const keys: JWK[] = [];
  for (const entry of raw) {
    if (keys.length >= maxKeys) break;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) continue;
    const jwk = entry as JWK;
    if (typeof jwk.kty !== "string" || !KEY_TYPES.has(jwk.kty)) continue;
    if (SECRET_MEMBERS.some((member) => member in jwk)) continue;
    if (jwk.use !== undefined && jwk.use !== "sig") continue;
    if (jwk.kid !== undefined && typeof jwk.kid !== "string") continue;
    keys.push(jwk);
  }
  if (keys.length === 0)
    return { ok: false, failure: "no_keys", message: "no usable signature key in the set" };
  const jwks: JSONWebKeySet = { keys };
  try {
    const resolve = createLocalJWKSet(jwks);
    const kids = new Set(keys.flatMap((k) => (typeof k.kid === "string" ? [k.kid] : [])));
    return { ok: true, set: { resolve, kids, size: keys.length } };
  } catch {
    return { ok: false, failure: "malformed", message: "JWK Set rejected by jose" };
  }
}

async function cancel(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return "(invalid url)";
  }
}

function errorCode(error: unknown): string {
  if (error && typeof error === "object" && "code" in error && typeof error.code === "string")
    return error.code;
  return error instanceof Error ? error.name : "error";
}

/**
 * Per-client rate limits (issue 6): a token bucket per key, kept as one number per key with
 * the generic cell rate algorithm (GCRA), plus the response header fields that describe it.
 *
 * A bucket holds up to `burst` tokens and gains `rate` tokens per second; each request takes
 * one. Instead of a token count each key stores the time at which its bucket will be full
 * again (`full`, ms): `(full - now) * rate / 1000` tokens are missing. A key whose bucket is
 * full is the same as no entry at all, so `sweep` drops those without changing any answer.
 *
 * The caller passes the time (ms, any monotonic origin such as `performance.now()`), so the
 * limiter reads no clock and tests are exact. Memory is bounded: at most `maxEntries` keys; a
 * new key beyond that evicts the least recently used one (whose client then starts with a full
 * bucket, which only ever errs in the client's favour).
 * @module
 */

export interface RatePolicy {
  /** Tokens added per second (> 0). */
  readonly rate: number;
  /** Bucket size: requests allowed at once after a quiet period (integer ≥ 1). */
  readonly burst: number;
}

export type TakeResult =
  | {
      readonly ok: true;
      /** The bucket size (`burst`). */
      readonly limit: number;
      /** Whole requests left right now. */
      readonly remaining: number;
      /** Seconds (rounded up) until the bucket is full again. */
      readonly resetSeconds: number;
      readonly policy: RatePolicy;
    }
  | {
      readonly ok: false;
      readonly limit: number;
      readonly remaining: 0;
      readonly resetSeconds: number;
      /** Seconds (rounded up, at least 1) until one request would be accepted. */
      readonly retryAfterSeconds: number;
      readonly policy: RatePolicy;
    };

export interface RateLimiterOptions extends Partial<RatePolicy> {
  readonly rate: number;
  /** Most keys tracked at once (default 100,000). */
  readonly maxEntries?: number;
}

export const DEFAULT_MAX_ENTRIES = 100_000;

/**
 * Slack for floating-point sums of 1000/rate: a microsecond, above the rounding error of
 * epoch-millisecond times (about 2.4e-4 ms in 2026) and far below anything observable.
 */
const EPSILON_MS = 1e-3;
/** The same slack in tokens, for counting whole remaining requests. */
const EPSILON_TOKENS = 1e-6;

/** Checks a policy: rate finite > 0, burst an integer ≥ 1 (default: one second's worth). */
export function makePolicy(rate: number, burst?: number): RatePolicy {
  if (!Number.isFinite(rate) || rate <= 0) throw new RangeError("rate must be a finite number above 0");
  const b = burst ?? Math.max(1, Math.ceil(rate));
  if (!Number.isSafeInteger(b) || b < 1) throw new RangeError("burst must be an integer of at least 1");
  return Object.freeze({ rate, burst: b });
}

export class RateLimiter {
  readonly policy: RatePolicy;
  readonly maxEntries: number;
  /**
   * key → time at which its bucket is full again, in ms since `#origin`; Map order is least
   * recently used first. Times are kept relative to the first time passed in so that sums of
   * 1000/rate stay exact to far below a microsecond (at epoch-millisecond magnitudes each
   * addition would round by up to 1.2e-4 ms, and a busy key's errors would add up).
   */
  readonly #full = new Map<string, number>();
  #origin: number | undefined;

  constructor(options: RateLimiterOptions) {
    this.policy = makePolicy(options.rate, options.burst);
    const max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isSafeInteger(max) || max < 1)
      throw new RangeError("maxEntries must be an integer of at least 1");
    this.maxEntries = max;
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.#full.size;
  }

  /**
   * Takes one token from `key`'s bucket at time `at` (ms). `policy` overrides the default for
   * this call (e.g. an API key's own `rate_limit`); build it with `makePolicy`.
   */
  take(key: string, at: number, policy: RatePolicy = this.policy): TakeResult {
    this.#origin ??= at;
    const now = at - this.#origin;
    const interval = 1000 / policy.rate;
    const previous = this.#full.get(key);
    // Time still needed to refill the bucket before this request (0 when full or new).
    const debt = previous === undefined || previous <= now ? 0 : previous - now;
    const after = debt + interval;
    const capacity = policy.burst * interval;
    if (after <= capacity + EPSILON_MS) {
      if (previous !== undefined) this.#full.delete(key);
      else if (this.#full.size >= this.maxEntries) this.#evictOne();
      this.#full.set(key, now + after);
      return {
        ok: true,
        limit: policy.burst,
        remaining: Math.max(0, Math.floor((capacity - after) / interval + EPSILON_TOKENS)),
        resetSeconds: Math.ceil((after - EPSILON_MS) / 1000),
        policy,
      };
    }
    // Refused: nothing is taken, but the key counts as used (it stays in memory).
    if (previous !== undefined) {
      this.#full.delete(key);
      this.#full.set(key, previous);
    }
    const wait = after - capacity;
    return {
      ok: false,
      limit: policy.burst,
      remaining: 0,
      resetSeconds: Math.max(0, Math.ceil((debt - EPSILON_MS) / 1000)),
      retryAfterSeconds: Math.max(1, Math.ceil((wait - EPSILON_MS) / 1000)),
      policy,
    };
  }

  /** Drops every key whose bucket is full at time `at` (they behave as new keys). Returns the count. */
  sweep(at: number): number {
    if (this.#origin === undefined) return 0;
    const now = at - this.#origin;
    let dropped = 0;
    for (const [key, full] of this.#full) {
      if (full <= now) {
        this.#full.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Forgets every key. */
  clear(): void {
    this.#full.clear();
  }

  #evictOne(): void {
    for (const key of this.#full.keys()) {
      this.#full.delete(key);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Header fields

/**
 * A policy name as a Structured Field String (RFC 9651 §3.3.3): printable ASCII, with `"` and
 * `\` escaped.
 */
function sfString(name: string): string {
  if (!/^[\x20-\x7e]*$/.test(name)) throw new RangeError("policy name must be printable ASCII");
  return `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * The `RateLimit-Policy` value for a token bucket, per draft-ietf-httpapi-ratelimit-headers-11
 * (May 2026) §3: a List of one String Item with `q` (quota, an Integer) and `w` (window in
 * whole seconds). A bucket is described as `q = burst` requests per `w = ceil(burst / rate)`
 * seconds, the time an empty bucket takes to fill: `"default";q=100;w=1` for 100/s.
 */
export function rateLimitPolicyValue(policy: RatePolicy, policyName = "default"): string {
  const window = Math.max(1, Math.ceil(policy.burst / policy.rate - EPSILON_TOKENS));
  return `${sfString(policyName)};q=${policy.burst};w=${window}`;
}

/**
 * Header fields for an answer that went through the limiter, per
 * draft-ietf-httpapi-ratelimit-headers-11 §3–4: `RateLimit-Policy` (above) and
 * `RateLimit: "<name>";r=<remaining>;t=<seconds until the bucket is full>`, plus
 * `Retry-After` (RFC 9110 §10.2.3, delay-seconds) when the request was refused.
 */
export function rateLimitHeaders(result: TakeResult, policyName = "default"): Record<string, string> {
  const name = sfString(policyName);
  const headers: Record<string, string> = {
    "RateLimit-Policy": rateLimitPolicyValue(result.policy, policyName),
    RateLimit: `${name};r=${result.remaining};t=${result.resetSeconds}`,
  };
  if (!result.ok) headers["Retry-After"] = String(result.retryAfterSeconds);
  return headers;
}

/**
 * The token-bucket limiter with an injected clock: exact burst, refill after exactly 1/rate
 * seconds, per-key policies, Retry-After and reset values, sweeping, bounded memory under a
 * million distinct keys, and the draft RateLimit header fields.
 */
import { describe, expect, test } from "bun:test";
import {
  makePolicy,
  RateLimiter,
  rateLimitHeaders,
  rateLimitPolicyValue,
  type TakeResult,
} from "../../../src/http/ratelimit.ts";

/** A wall-clock-sized origin: the limiter must be exact with epoch milliseconds too. */
const T0 = 1_795_000_000_000;

function oks(results: TakeResult[]): boolean[] {
  return results.map((r) => r.ok);
}

describe("RateLimiter.take", () => {
  test("exactly `burst` requests pass at once, then refusal", () => {
    const limiter = new RateLimiter({ rate: 10, burst: 5 });
    const results = Array.from({ length: 7 }, () => limiter.take("a", T0));
    expect(oks(results)).toEqual([true, true, true, true, true, false, false]);
    expect(results.map((r) => r.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0]);
    expect(results.every((r) => r.limit === 5)).toBe(true);
    expect(results[5]).toEqual({
      ok: false,
      limit: 5,
      remaining: 0,
      resetSeconds: 1, // 5 tokens at 10/s: 0.5 s to full, rounded up
      retryAfterSeconds: 1, // one token in 0.1 s, rounded up to a whole second
      policy: { rate: 10, burst: 5 },
    });
  });

  test("a token comes back after exactly 1/rate seconds, not a microsecond sooner", () => {
    for (const rate of [4, 3, 7, 1000 / 3]) {
      const limiter = new RateLimiter({ rate, burst: 2 });
      const interval = 1000 / rate;
      expect(oks([limiter.take("k", T0), limiter.take("k", T0), limiter.take("k", T0)])).toEqual([
        true,
        true,
        false,
      ]);
      // 50 cycles: each token exactly one interval after the previous one.
      for (let i = 1; i <= 50; i++) {
        const due = T0 + i * interval;
        expect(limiter.take("k", due - 0.01).ok).toBe(false);
        const r = limiter.take("k", due);
        expect(r.ok).toBe(true);
        expect(r.remaining).toBe(0);
        expect(limiter.take("k", due).ok).toBe(false);
      }
    }
  });

  test("over 10 s of constant pressure, exactly burst + 10 × rate requests pass", () => {
    const limiter = new RateLimiter({ rate: 50, burst: 20 });
    let passed = 0;
    for (let t = 0; t < 10_000; t++) {
      // Five attempts every millisecond.
      for (let j = 0; j < 5; j++) if (limiter.take("k", T0 + t).ok) passed++;
    }
    // Tokens earned in [0, 9999] ms: 499 (the 500th arrives at 10,000 ms).
    expect(passed).toBe(20 + 499);
  });

  test("an idle bucket refills to burst and no further", () => {
    const limiter = new RateLimiter({ rate: 2, burst: 3 });
    for (let i = 0; i < 3; i++) limiter.take("k", T0);
    expect(limiter.take("k", T0).ok).toBe(false);
    const later = T0 + 60_000;
    expect(oks(Array.from({ length: 4 }, () => limiter.take("k", later)))).toEqual([true, true, true, false]);
  });

  test("burst defaults to one second's worth, at least 1", () => {
    expect(new RateLimiter({ rate: 100 }).policy).toEqual({ rate: 100, burst: 100 });
    expect(new RateLimiter({ rate: 2.5 }).policy).toEqual({ rate: 2.5, burst: 3 });
    const slow = new RateLimiter({ rate: 0.5 });
    expect(slow.policy).toEqual({ rate: 0.5, burst: 1 });
    expect(slow.take("k", T0).ok).toBe(true);
    const refused = slow.take("k", T0 + 1);
    expect(refused).toMatchObject({ ok: false, retryAfterSeconds: 2, resetSeconds: 2 });
    expect(slow.take("k", T0 + 1999.99).ok).toBe(false);
    expect(slow.take("k", T0 + 2000).ok).toBe(true);
  });

  test("Retry-After counts whole seconds until one request would pass", () => {
    const limiter = new RateLimiter({ rate: 0.1, burst: 1 }); // one request per 10 s
    expect(limiter.take("k", T0).ok).toBe(true);
    const at = (ms: number) => limiter.take("k", T0 + ms);
    expect(at(0)).toMatchObject({ ok: false, retryAfterSeconds: 10, resetSeconds: 10 });
    expect(at(3000)).toMatchObject({ ok: false, retryAfterSeconds: 7, resetSeconds: 7 });
    expect(at(3000.5)).toMatchObject({ ok: false, retryAfterSeconds: 7 });
    expect(at(9000)).toMatchObject({ ok: false, retryAfterSeconds: 1 });
    expect(at(9999.5)).toMatchObject({ ok: false, retryAfterSeconds: 1 });
    expect(at(10_000)).toMatchObject({ ok: true, remaining: 0, resetSeconds: 10 });
  });

  test("resetSeconds is the time until the bucket is full again", () => {
    const limiter = new RateLimiter({ rate: 10, burst: 20 });
    expect(limiter.take("k", T0)).toMatchObject({ ok: true, remaining: 19, resetSeconds: 1 });
    for (let i = 0; i < 18; i++) limiter.take("k", T0);
    expect(limiter.take("k", T0)).toMatchObject({ ok: true, remaining: 0, resetSeconds: 2 });
    expect(limiter.take("k", T0 + 1500)).toMatchObject({ ok: true, remaining: 14, resetSeconds: 1 });
  });

  test("a per-key policy overrides the default for that key only", () => {
    const limiter = new RateLimiter({ rate: 100 });
    const partner = makePolicy(1, 2);
    expect(oks(Array.from({ length: 3 }, () => limiter.take("partner", T0, partner)))).toEqual([
      true,
      true,
      false,
    ]);
    expect(limiter.take("partner", T0, partner)).toMatchObject({ limit: 2, retryAfterSeconds: 1 });
    // Other keys keep the default.
    const others = Array.from({ length: 101 }, () => limiter.take("game", T0));
    expect(others.filter((r) => r.ok).length).toBe(100);
    expect(others[0]).toMatchObject({ limit: 100, remaining: 99 });
    // The partner's bucket refills at its own rate: 1 per second.
    expect(limiter.take("partner", T0 + 999, partner).ok).toBe(false);
    expect(limiter.take("partner", T0 + 1000, partner).ok).toBe(true);
  });

  test("keys are independent", () => {
    const limiter = new RateLimiter({ rate: 1, burst: 1 });
    expect(limiter.take("a", T0).ok).toBe(true);
    expect(limiter.take("a", T0).ok).toBe(false);
    expect(limiter.take("b", T0).ok).toBe(true);
  });

  test("invalid policies and sizes are refused", () => {
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => makePolicy(rate)).toThrow(RangeError);
    }
    for (const burst of [0, 1.5, -2]) expect(() => makePolicy(1, burst)).toThrow(RangeError);
    expect(() => new RateLimiter({ rate: 1, maxEntries: 0 })).toThrow(RangeError);
  });
});

describe("memory", () => {
  test("sweep drops full buckets only, and answers do not change", () => {
    const limiter = new RateLimiter({ rate: 1, burst: 2 });
    limiter.take("idle", T0); // full again at T0 + 1 s
    limiter.take("busy", T0 + 5000);
    limiter.take("busy", T0 + 5000); // full again at T0 + 7 s
    expect(limiter.size).toBe(2);
    expect(limiter.sweep(T0 + 6000)).toBe(1);
    expect(limiter.size).toBe(1);
    // The dropped key starts with a full bucket: what it had anyway.
    expect(oks([limiter.take("idle", T0 + 6000), limiter.take("idle", T0 + 6000)])).toEqual([true, true]);
    // The kept key still has its debt.
    expect(limiter.take("busy", T0 + 6000)).toMatchObject({ ok: true, remaining: 0 });
    expect(limiter.take("busy", T0 + 6000).ok).toBe(false);
    expect(limiter.sweep(T0 + 60_000)).toBe(2);
    expect(limiter.size).toBe(0);
  });

  test("a million distinct keys never hold more than maxEntries", () => {
    const limiter = new RateLimiter({ rate: 1, burst: 1, maxEntries: 1000 });
    let max = 0;
    let passed = 0;
    const started = performance.now();
    for (let i = 0; i < 1_000_000; i++) {
      if (limiter.take(`ip-${i}`, T0).ok) passed++;
      if (limiter.size > max) max = limiter.size;
    }
    expect(passed).toBe(1_000_000); // every new key starts with a full bucket
    expect(max).toBe(1000);
    expect(limiter.size).toBe(1000);
    // O(1) per request: well under a second per million on any machine that runs the tests.
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  test("eviction takes the least recently used key", () => {
    const limiter = new RateLimiter({ rate: 1, burst: 1, maxEntries: 3 });
    limiter.take("a", T0);
    limiter.take("b", T0);
    limiter.take("c", T0);
    expect(limiter.take("a", T0 + 1).ok).toBe(false); // a is now the most recently used
    limiter.take("d", T0 + 2); // evicts b
    expect(limiter.size).toBe(3);
    expect(limiter.take("a", T0 + 3).ok).toBe(false); // a kept its state
    expect(limiter.take("c", T0 + 3).ok).toBe(false); // c kept its state
    expect(limiter.take("b", T0 + 3).ok).toBe(true); // b was forgotten: a new, full bucket
  });

  test("clear forgets every key", () => {
    const limiter = new RateLimiter({ rate: 1 });
    limiter.take("a", T0);
    limiter.clear();
    expect(limiter.size).toBe(0);
    expect(limiter.take("a", T0).ok).toBe(true);
  });
});

describe("header fields (draft-ietf-httpapi-ratelimit-headers-11)", () => {
  // An sf-string item with integer parameters, as §3 and §4 of the draft define them.
  const ITEM = /^"(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"(?:;[a-z][a-z0-9_.*-]*=\d+)+$/;

  test("an accepted request", () => {
    const limiter = new RateLimiter({ rate: 100 });
    const headers = rateLimitHeaders(limiter.take("k", T0), "default");
    expect(headers).toEqual({
      "RateLimit-Policy": '"default";q=100;w=1',
      RateLimit: '"default";r=99;t=1',
    });
    expect(headers["RateLimit-Policy"]).toMatch(ITEM);
    expect(headers.RateLimit).toMatch(ITEM);
  });

  test("a refused request adds Retry-After", () => {
    const limiter = new RateLimiter({ rate: 0.5, burst: 3 });
    for (let i = 0; i < 3; i++) limiter.take("k", T0);
    const refused = limiter.take("k", T0 + 500);
    expect(rateLimitHeaders(refused, "per-client")).toEqual({
      "RateLimit-Policy": '"per-client";q=3;w=6',
      RateLimit: '"per-client";r=0;t=6',
      "Retry-After": "2",
    });
  });

  test("the policy follows the per-key override", () => {
    const limiter = new RateLimiter({ rate: 100 });
    const r = limiter.take("k", T0, makePolicy(20, 40));
    expect(rateLimitHeaders(r)).toEqual({
      "RateLimit-Policy": '"default";q=40;w=2',
      RateLimit: '"default";r=39;t=1',
    });
  });

  test("policy windows are whole seconds, at least 1", () => {
    expect(rateLimitPolicyValue(makePolicy(1000, 10))).toBe('"default";q=10;w=1');
    expect(rateLimitPolicyValue(makePolicy(3, 10))).toBe('"default";q=10;w=4');
    expect(rateLimitPolicyValue(makePolicy(0.1, 1))).toBe('"default";q=1;w=10');
  });

  test("policy names are escaped as sf-strings; non-ASCII names are refused", () => {
    expect(rateLimitPolicyValue(makePolicy(1), 'a"b\\c')).toBe('"a\\"b\\\\c";q=1;w=1');
    expect(rateLimitPolicyValue(makePolicy(1), 'a"b\\c')).toMatch(ITEM);
    expect(() => rateLimitPolicyValue(makePolicy(1), "é")).toThrow(RangeError);
    expect(() => rateLimitPolicyValue(makePolicy(1), "a\nb")).toThrow(RangeError);
  });
});

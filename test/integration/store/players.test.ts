/**
 * Player stores: the rule (same as choosePlayerAd), exact caps under concurrency across
 * connections, key hygiene (hash tags, expiries, no clear player id), in memory and in Redis.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import type { RedisClient } from "bun";
import fc from "fast-check";
import { choosePlayerAd, type PlayerCandidate, type PlayerChoice } from "../../../src/decision/player.ts";
import {
  DECIDE_SCRIPT,
  encodeCandidates,
  hashPlayerId,
  isValidPlayerId,
  LAST_STAMP_FIELD,
  memoryPlayerStore,
  type PlayerStore,
  playerKey,
  redisPlayerStore,
} from "../../../src/store/players.ts";
import { openRedis, type StoreConnection, StoreError } from "../../../src/store/redis.ts";
import { silentLogger } from "../../../src/telemetry/log.ts";
import { type PrivateRedis, startRedis } from "../../fakes/redis.ts";

const HOUR = 3_600_000;
const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

let redis: PrivateRedis;
let admin: RedisClient;
const conns: StoreConnection[] = [];

function connection(): StoreConnection {
  // A generous deadline: these tests are about the rule and exactness, not about latency.
  const conn = openRedis(redis.url, { log: silentLogger, commandTimeoutMs: 2_000, reconnectBaseMs: 50 });
  conns.push(conn);
  return conn;
}

beforeAll(async () => {
  redis = await startRedis();
  admin = await redis.admin();
  for (let i = 0; i < 3; i++) connection();
  for (const conn of conns) expect(await conn.waitConnected(2_000)).toBe(true);
});

beforeEach(async () => {
  await admin.send("FLUSHALL", []);
});

afterAll(async () => {
  for (const conn of conns) conn.close();
  await redis?.stop();
});

const cand = (id: string, cap = 0, windowMs = HOUR): PlayerCandidate => ({ id, cap, windowMs });

function ids(candidates: readonly PlayerCandidate[], choices: readonly PlayerChoice[]): string[] {
  return choices.map((c) => (c.kind === "chosen" ? (candidates[c.index]?.id ?? "?") : "capped"));
}

async function allKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = (await admin.send("SCAN", [cursor, "COUNT", "1000"])) as [string, string[]];
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys.sort();
}

describe("isValidPlayerId and hashing", () => {
  test("1..128 printable ASCII without space", () => {
    expect(isValidPlayerId("p")).toBe(true);
    expect(isValidPlayerId("!~Az09{}:")).toBe(true);
    expect(isValidPlayerId("x".repeat(128))).toBe(true);
    expect(isValidPlayerId("x".repeat(129))).toBe(false);
    expect(isValidPlayerId("")).toBe(false);
    expect(isValidPlayerId("a b")).toBe(false);
    expect(isValidPlayerId("é")).toBe(false);
    expect(isValidPlayerId("a\u0000")).toBe(false);
    expect(isValidPlayerId("a\x7f")).toBe(false);
  });

  test("hashes are 32 hex digits; a pepper changes them", () => {
    expect(hashPlayerId("alice")).toMatch(/^[0-9a-f]{32}$/);
    expect(hashPlayerId("alice")).toBe(
      new Bun.CryptoHasher("sha256").update("alice").digest("hex").slice(0, 32),
    );
    expect(hashPlayerId("alice", "pepper")).not.toBe(hashPlayerId("alice"));
    expect(hashPlayerId("alice", "pepper")).toMatch(/^[0-9a-f]{32}$/);
    // HMAC-SHA-256 keyed by the pepper: the stored form stays what earlier releases wrote.
    for (const id of ["alice", "bob", "x".repeat(128)]) {
      expect(hashPlayerId(id, "pepper")).toBe(
        new Bun.CryptoHasher("sha256", "pepper").update(id).digest("hex").slice(0, 32),
      );
    }
  });

  test("an invalid player id or candidate is refused before any I/O", async () => {
    const store = redisPlayerStore(conns[0] as StoreConnection);
    await expect(store.decide("a b", [cand("a")], T0)).rejects.toThrow(TypeError);
    await expect(store.decide("p", [cand("a", -1)], T0)).rejects.toThrow(RangeError);
    await expect(store.decide("p", [cand("a", 1, 0)], T0)).rejects.toThrow(RangeError);
    await expect(memoryPlayerStore({ maxPlayers: 1 }).decide("", [cand("a")], T0)).rejects.toThrow(TypeError);
    expect(await allKeys()).toEqual([]);
  });
});

const stores: [string, () => PlayerStore][] = [
  ["memory", () => memoryPlayerStore({ maxPlayers: 1_000 })],
  ["redis", () => redisPlayerStore(conns[0] as StoreConnection)],
];

describe.each(stores)("%s store", (_name, make) => {
  test("least recently served rotation; never served first, ties in catalog order", async () => {
    const store = make();
    const three = [cand("a"), cand("b"), cand("c")];
    const got: PlayerChoice[] = [];
    for (let i = 0; i < 6; i++) got.push(await store.decide("p1", three, T0 + i * 1_000));
    expect(ids(three, got)).toEqual(["a", "b", "c", "a", "b", "c"]);
    // A new ad is never-served: it goes first; then the oldest of the others.
    const four = [cand("a"), cand("b"), cand("d"), cand("c")];
    const more: PlayerChoice[] = [];
    for (let i = 0; i < 4; i++) more.push(await store.decide("p1", four, T0 + 10_000 + i));
    expect(ids(four, more)).toEqual(["d", "a", "b", "c"]);
    // Another player has its own history.
    expect(ids(three, [await store.decide("p2", three, T0)])).toEqual(["a"]);
  });

  test("same-millisecond serves still rotate (stamps are strictly increasing per player)", async () => {
    const store = make();
    const two = [cand("a"), cand("b")];
    const got: PlayerChoice[] = [];
    for (let i = 0; i < 4; i++) got.push(await store.decide("p", two, T0));
    expect(ids(two, got)).toEqual(["a", "b", "a", "b"]);
    // Even when the clock goes back a little (another instance's clock).
    got.length = 0;
    for (let i = 0; i < 4; i++) got.push(await store.decide("p", two, T0 - 50 + (i % 2) * 80));
    expect(ids(two, got)).toEqual(["a", "b", "a", "b"]);
  });

  test("rolling-window cap: at most N per window, then capped, then allowed again", async () => {
    const store = make();
    const one = [cand("a", 2, HOUR)];
    expect((await store.decide("p", one, T0)).kind).toBe("chosen");
    expect((await store.decide("p", one, T0 + 10 * 60_000)).kind).toBe("chosen");
    expect(await store.decide("p", one, T0 + 20 * 60_000)).toEqual({ kind: "capped" });
    expect(await store.decide("p", one, T0 + HOUR - 1)).toEqual({ kind: "capped" });
    // The first serve leaves the window at exactly T0 + HOUR.
    expect((await store.decide("p", one, T0 + HOUR)).kind).toBe("chosen");
    expect(await store.decide("p", one, T0 + HOUR + 1)).toEqual({ kind: "capped" });
    // A capped ad gives way to an uncapped one.
    const two = [cand("a", 2, HOUR), cand("b")];
    expect(ids(two, [await store.decide("p", two, T0 + HOUR + 2)])).toEqual(["b"]);
  });
});

describe("memory store bounds", () => {
  test("decideNow is the same decision without a promise", () => {
    const store = memoryPlayerStore({ maxPlayers: 10 });
    const two = [cand("a"), cand("b")];
    expect(store.decideNow("p", two, T0)).toEqual({ kind: "chosen", index: 0 });
    expect(store.decideNow("p", two, T0 + 1)).toEqual({ kind: "chosen", index: 1 });
    expect(() => store.decideNow("bad id", two, T0)).toThrow(TypeError);
  });

  test("keeps at most maxPlayers, evicting the least recently served", async () => {
    const store = memoryPlayerStore({ maxPlayers: 2 });
    const two = [cand("a"), cand("b")];
    await store.decide("p1", two, T0);
    await store.decide("p2", two, T0 + 1);
    await store.decide("p1", two, T0 + 2);
    await store.decide("p3", two, T0 + 3); // evicts p2
    expect(store.size()).toBe(2);
    expect(ids(two, [await store.decide("p2", two, T0 + 4)])).toEqual(["a"]); // forgotten
    expect(ids(two, [await store.decide("p3", two, T0 + 5)])).toEqual(["b"]); // remembered
  });

  test("forgets a player after the last-served TTL (or the largest window, if longer)", async () => {
    const store = memoryPlayerStore({ maxPlayers: 10, lastServedTtlMs: 1_000 });
    const two = [cand("a"), cand("b")];
    await store.decide("p", two, T0);
    expect(ids(two, [await store.decide("p", two, T0 + 999)])).toEqual(["b"]);
    expect(ids(two, [await store.decide("p", two, T0 + 999 + 1_000)])).toEqual(["a"]);
    const capped = [cand("c", 1, 5_000)];
    await store.decide("q", capped, T0);
    expect(await store.decide("q", capped, T0 + 4_999)).toEqual({ kind: "capped" });
    expect(store.size()).toBe(2);
    await store.decide("r", two, T0 + 1_000_000); // sweeps the expired ones
    expect(store.size()).toBe(1);
  });
});

describe("redis store", () => {
  test("the Lua script applies exactly choosePlayerAd's rule to random histories", async () => {
    const pool = ["a", "b{x}", "c:1", "#t", "}d{", "e", "f", "g"];
    const conn = conns[0] as StoreConnection;
    const store = redisPlayerStore(conn);
    const now = T0 + 10 * HOUR;
    const hash = hashPlayerId("prop-player");
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(
          fc.record({
            id: fc.constantFrom(...pool),
            cap: fc.integer({ min: 0, max: 3 }),
            windowMs: fc.constantFrom(1_000, 60_000, HOUR),
            // Small range: ties between ads happen.
            last: fc.option(fc.integer({ min: 0, max: 5 }), { nil: null }),
            // Serve times as offsets before now; exactly windowMs before is out of the window.
            serves: fc.array(fc.constantFrom(0, 1, 999, 1_000, 1_001, 59_999, 60_000, 2 * HOUR), {
              maxLength: 4,
            }),
          }),
          { selector: (r) => r.id, minLength: 1, maxLength: pool.length },
        ),
        async (rows) => {
          await admin.send("FLUSHALL", []);
          for (const r of rows) {
            // A serve always records a stamp: serve times come with one (`stamp|t1,t2`).
            if (r.last === null) continue;
            const times = r.serves.map((offset) => String(now - offset)).join(",");
            const value = `${now - 100 + r.last}${times === "" ? "" : `|${times}`}`;
            await admin.send("HSET", [playerKey(hash), r.id, value]);
          }
          const candidates = rows.map((r) => cand(r.id, r.cap, r.windowMs));
          const history = rows.map((r) => ({
            lastServedMs: r.last === null ? null : now - 100 + r.last,
            servedInWindow:
              r.last === null ? 0 : r.serves.filter((offset) => now - offset > now - r.windowMs).length,
          }));
          const expected = choosePlayerAd(candidates, history);
          expect(await store.decide("prop-player", candidates, now)).toEqual(expected);
          if (expected.kind === "chosen") {
            const id = rows[expected.index]?.id as string;
            const stamp = await admin.send("HGET", [playerKey(hash), id]);
            expect(Number(String(stamp).split("|")[0])).toBe(now); // every stored stamp is older than now
            expect(await admin.send("HGET", [playerKey(hash), LAST_STAMP_FIELD])).toBe(`${now}`);
          }
        },
      ),
      { numRuns: 300, seed: 424_242 },
    );
  });

  test("the expiry only grows: a list without the long-window ad does not cut the history short", async () => {
    await admin.send("FLUSHALL", []);
    const store = redisPlayerStore(conns[0] as StoreConnection, { lastServedTtlMs: 1_000 });
    const now = Date.now();
    expect(await store.decide("long", [cand("a", 1, 9 * HOUR)], now)).toEqual({ kind: "chosen", index: 0 });
    expect(await store.decide("long", [cand("b")], now + 1)).toEqual({ kind: "chosen", index: 0 });
    const pttl = Number(await admin.send("PTTL", [playerKey(hashPlayerId("long"))]));
    expect(pttl).toBeGreaterThan(9 * HOUR - 60_000);
    // And so a is still capped within its window.
    expect(await store.decide("long", [cand("a", 1, 9 * HOUR)], now + 2)).toEqual({ kind: "capped" });
  });

  test("the expiry of an existing history grows when a longer window is served", async () => {
    await admin.send("FLUSHALL", []);
    const store = redisPlayerStore(conns[0] as StoreConnection, { lastServedTtlMs: 1_000 });
    const now = Date.now();
    const key = playerKey(hashPlayerId("grows"));
    await store.decide("grows", [cand("a")], now);
    const first = Number(await admin.send("PTTL", [key]));
    expect(first).toBeGreaterThan(0); // a new history gets an expiry (GT alone would leave none)
    expect(first).toBeLessThanOrEqual(1_000);
    await store.decide("grows", [cand("b", 1, 3 * HOUR)], now + 1);
    expect(Number(await admin.send("PTTL", [key]))).toBeGreaterThan(3 * HOUR - 60_000);
  });

  test("an ad capped, then uncapped, then capped again keeps its serve times (as in memory)", async () => {
    await admin.send("FLUSHALL", []);
    const mem = memoryPlayerStore({ maxPlayers: 10 });
    const red = redisPlayerStore(conns[0] as StoreConnection);
    const steps = [cand("a", 1, HOUR), cand("a"), cand("a", 1, HOUR)];
    for (const [i, c] of steps.entries()) {
      const want = await mem.decide("flip", [c], T0 + i);
      expect(await red.decide("flip", [c], T0 + i)).toEqual(want);
    }
    expect(await red.decide("flip", [cand("a", 1, HOUR)], T0 + 10)).toEqual({ kind: "capped" });
  });

  test("many candidates and distinct policies (wider codes, HMGET slices): Redis agrees with memory", async () => {
    await admin.send("FLUSHALL", []);
    const mem = memoryPlayerStore({ maxPlayers: 10 });
    const red = redisPlayerStore(conns[1] as StoreConnection);
    // 1,200 candidates (two HMGET slices); 200 capped once an hour in distinct windows (> 94
    // policies: two-character codes), so the second round must skip them.
    const candidates = Array.from({ length: 1_200 }, (_, i) =>
      i % 6 === 0 ? cand(`ad-${i}`, 1, HOUR + i) : cand(`ad-${i}`),
    );
    expect(encodeCandidates(candidates, HOUR).tail).toContain("2"); // the code width
    let now = T0;
    for (let step = 0; step < 1_250; step++) {
      now += 7;
      const want = await mem.decide("wide", candidates, now);
      expect(await red.decide("wide", candidates, now)).toEqual(want);
    }
  });

  test("random decision sequences: Redis and memory stores choose alike at every step", async () => {
    const pool = ["a", "b", "c", "d", "e"];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            player: fc.constantFrom("p1", "p2"),
            advanceMs: fc.constantFrom(0, 0, 1, 500, 1_000, 30_000),
            subset: fc.uniqueArray(fc.constantFrom(...pool), { minLength: 1, maxLength: pool.length }),
          }),
          { minLength: 1, maxLength: 25 },
        ),
        async (steps) => {
          await admin.send("FLUSHALL", []);
          const mem = memoryPlayerStore({ maxPlayers: 100 });
          const red = redisPlayerStore(conns[1] as StoreConnection);
          // Fixed per-ad rules: some capped with short windows.
          const rule = (id: string): PlayerCandidate =>
            id === "a" ? cand(id, 2, 1_000) : id === "b" ? cand(id, 1, 30_000) : cand(id);
          let now = T0;
          for (const step of steps) {
            now += step.advanceMs;
            const candidates = step.subset.map(rule);
            const want = await mem.decide(step.player, candidates, now);
            expect(await red.decide(step.player, candidates, now)).toEqual(want);
          }
        },
      ),
      { numRuns: 60, seed: 99 },
    );
  });

  test("the cap is exact under concurrency: 200 decisions for one player over 3 connections", async () => {
    const candidates = [cand("a", 3), cand("b", 3), cand("c", 3), cand("d", 3)];
    const storesByConn = conns.map((conn) => redisPlayerStore(conn));
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (storesByConn[i % storesByConn.length] as PlayerStore).decide(
          "busy-player",
          candidates,
          T0 + (i % 7),
        ),
      ),
    );
    const served = new Map<string, number>();
    let capped = 0;
    for (const r of results) {
      if (r.kind === "capped") capped++;
      else {
        const id = candidates[r.index]?.id as string;
        served.set(id, (served.get(id) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(served)).toEqual({ a: 3, b: 3, c: 3, d: 3 });
    expect(capped).toBe(188);
  });

  test("rotation holds across connections even when their clocks disagree", async () => {
    const three = [cand("a"), cand("b"), cand("c")];
    const skew = [0, -40, 25]; // ms, per connection
    const got: PlayerChoice[] = [];
    for (let i = 0; i < 9; i++) {
      const conn = conns[i % 3] as StoreConnection;
      got.push(await redisPlayerStore(conn).decide("roamer", three, T0 + i * 10 + (skew[i % 3] as number)));
    }
    expect(ids(three, got)).toEqual(["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
  });

  test("keys: one hash tag per player, every key expires, no clear player id anywhere", async () => {
    const store = redisPlayerStore(conns[0] as StoreConnection, { lastServedTtlMs: 7 * 24 * HOUR });
    const players = ["Player-Secret-0001", "player-secret-0002", "ZZ{tag}top", "carol@example.com"];
    const candidates = [cand("a", 2, HOUR), cand("b", 0), cand("c", 5, 24 * HOUR)];
    for (const p of players) for (let i = 0; i < 5; i++) await store.decide(p, candidates, Date.now() + i);
    const keys = await allKeys();
    expect(keys.length).toBeGreaterThan(0);
    const tags = new Set<string>();
    for (const key of keys) {
      const m = key.match(/^adsrv:\{p:([0-9a-f]{32})\}$/);
      expect(m).not.toBeNull();
      tags.add(m?.[1] as string);
      const pttl = Number(await admin.send("PTTL", [key]));
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(7 * 24 * HOUR);
      // Capped ads keep their latest `cap` serve times; an uncapped ad keeps none.
      const fields = (await admin.send("HGETALL", [key])) as Record<string, string>;
      expect(fields.a?.split("|")[1]?.split(",")).toHaveLength(2);
      expect(fields.b).toMatch(/^\d+$/);
      expect(fields.c?.split("|")[1]?.split(",").length).toBeGreaterThan(0);
    }
    expect([...tags].sort()).toEqual(players.map((p) => hashPlayerId(p)).sort());
    // Dump every key and value: the clear ids never appear (in any case).
    let dump = keys.join("\n");
    for (const key of keys) {
      const type = await admin.send("TYPE", [key]);
      if (type === "hash") dump += JSON.stringify(await admin.send("HGETALL", [key]));
      else if (type === "zset")
        dump += JSON.stringify(await admin.send("ZRANGE", [key, "0", "-1", "WITHSCORES"]));
      else throw new Error(`unexpected key type ${type}`);
    }
    for (const p of players) expect(dump.toLowerCase()).not.toContain(p.toLowerCase());
  });

  test("the last-served hash lives at least as long as the largest window of a capped candidate", async () => {
    const store = redisPlayerStore(conns[0] as StoreConnection, { lastServedTtlMs: 1_000 });
    await store.decide("short", [cand("a")], Date.now());
    expect(Number(await admin.send("PTTL", [playerKey(hashPlayerId("short"))]))).toBeLessThanOrEqual(1_000);
    await store.decide("long", [cand("a", 0, 9 * HOUR), cand("b", 1, 2 * HOUR)], Date.now());
    const pttl = Number(await admin.send("PTTL", [playerKey(hashPlayerId("long"))]));
    expect(pttl).toBeGreaterThan(2 * HOUR - 5_000);
    expect(pttl).toBeLessThanOrEqual(2 * HOUR);
  });

  test("one EVALSHA per decision, every key it touches passed in KEYS", async () => {
    const conn = conns[0] as StoreConnection;
    const before = conn.stats().calls;
    const candidates = [cand("a", 1), cand("b", 0), cand("c", 2)];
    await redisPlayerStore(conn).decide("counted", candidates, T0);
    expect(conn.stats().calls - before).toBe(1);
    // The script refers to keys only through KEYS (no key names built inside it).
    expect(DECIDE_SCRIPT.text).not.toContain("adsrv:");
    const info = String(await admin.send("INFO", ["commandstats"]));
    expect(info).toContain("cmdstat_evalsha");
  });

  test("a stalled Redis fails the decision at the deadline with a StoreError", async () => {
    const conn = openRedis(redis.url, { log: silentLogger, commandTimeoutMs: 50 });
    conns.push(conn);
    await conn.waitConnected(2_000);
    const store = redisPlayerStore(conn);
    redis.pause();
    const start = performance.now();
    let error: unknown;
    try {
      await store.decide("p", [cand("a")], T0);
    } catch (e) {
      error = e;
    } finally {
      redis.resume();
    }
    const ms = performance.now() - start;
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).kind).toBe("timeout");
    expect(ms).toBeLessThan(150);
  });
});

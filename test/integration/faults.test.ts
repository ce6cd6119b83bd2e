/**
 * Faults under load on the fleet of fleet.test.ts (three `adsrv serve` behind nginx, one private
 * redis-server; issue 5, "Faults under load"):
 * - the instance fetching the catalog is killed mid-fetch: the lock expires, another instance
 *   fetches, the fleet moves on;
 * - Redis killed, then restarted: in open mode no 5xx at all, each instance fetches for itself
 *   meanwhile, then the shared catalog and the player history resume; in closed mode only
 *   player-keyed requests get 503, only while Redis is away;
 * - Redis paused (SIGSTOP, so calls hang): player-keyed answers still come within the store
 *   deadline plus a few ms;
 * - one adsrv instance killed: nginx's retries keep client errors below 0.1 %.
 * Every figure is logged; thresholds are the issue's. Skipped when nginx or redis-server is missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  catalogOf,
  type Fleet,
  hit,
  load,
  MISSING,
  type Outcome,
  percentile,
  readyVersion,
  startFleet,
  until,
} from "./fleet-rig.ts";

if (MISSING !== null) console.warn(MISSING);
const suite = MISSING === null ? describe : describe.skip;

const REFRESH_S = 1;
const CAP = 2;
const STORE_TIMEOUT_MS = 50;
const ADS = 3;

const isError = (o: Outcome) => o.status === 0 || o.status >= 500;
const summary = (outcomes: readonly Outcome[]) => {
  const by = new Map<string, number>();
  for (const o of outcomes) {
    const key = o.status === 0 ? `error ${o.error ?? ""}`.slice(0, 60) : String(o.status);
    by.set(key, (by.get(key) ?? 0) + 1);
  }
  return JSON.stringify(Object.fromEntries(by));
};

async function versions(fleet: Fleet): Promise<(string | null)[]> {
  return Promise.all(fleet.instances.map(readyVersion));
}

/** Waits until every live instance reports the same version, different from `not`; returns it. */
async function converged(fleet: Fleet, timeoutMs: number, not?: string | null): Promise<string> {
  let version = "";
  await until(
    async () => {
      const vs = (await versions(fleet)).filter((_, i) => fleet.instances[i]?.alive());
      const first = vs[0];
      if (first === null || first === undefined || first === not) return false;
      version = first;
      return vs.every((v) => v === first);
    },
    timeoutMs,
    "the fleet to agree on a catalog version",
    20,
  );
  return version;
}

/**
 * A fresh player asks `ADS * CAP + 1` times, request i on instance i mod 3 (directly): with the
 * player history shared in Redis, that is a permutation of the ads twice, then frequency_capped.
 */
async function historyIsShared(fleet: Fleet, tag: string): Promise<boolean> {
  const player = `probe-${tag}-${Math.random().toString(36).slice(2)}`;
  const ids: string[] = [];
  for (let i = 0; i < ADS * CAP + 1; i++) {
    const instance = fleet.instances[i % fleet.instances.length];
    if (instance === undefined) return false;
    const o = await hit(`${instance.url}/ad_request?country=us&lang=eng&player_id=${player}`, 2_000);
    ids.push(o.status === 200 ? (o.id ?? "?") : `${o.status}:${o.reason ?? ""}`);
  }
  const first = ids.slice(0, ADS);
  const want = [...first, ...first, "404:frequency_capped"];
  return new Set(first).size === ADS && ids.join() === want.join();
}

/** Requests for the background load: half anonymous, half from a large pool of players. */
function mixedUrl(fleet: Fleet, run: string) {
  return (slot: number, n: number) =>
    n % 2 === 0
      ? `${fleet.lb.url}/ad_request?country=us&lang=eng`
      : `${fleet.lb.url}/ad_request?country=us&lang=eng&player_id=load-${run}-${(slot * 7919 + n) % 20_000}`;
}

/**
 * A fleet on a catalog tagged `tag`, converged on one version, and warm: every instance has
 * decided with the shared history (scripts loaded, breakers closed).
 */
async function startWarmFleet(tag: string, args: readonly string[]): Promise<Fleet> {
  const fleet = await startFleet({
    refresh: REFRESH_S,
    cap: CAP,
    catalog: catalogOf(ADS, tag),
    args: ["--store-timeout", String(STORE_TIMEOUT_MS), ...args],
  });
  try {
    await converged(fleet, 10_000);
    await until(() => historyIsShared(fleet, "warm"), 10_000, "player history shared", 50);
  } catch (error) {
    await fleet.stop(); // the caller never gets it to stop
    throw error;
  }
  return fleet;
}

suite("faults under load, open mode (default)", () => {
  let fleet: Fleet;
  const run = Date.now().toString(36);

  beforeAll(async () => {
    fleet = await startWarmFleet("f", ["--fetch-timeout", "5"]);
  }, 30_000);

  afterAll(async () => {
    await fleet?.stop();
  });

  test("the instance fetching the catalog is killed mid-fetch: another instance fetches on a later interval", async () => {
    const before = await converged(fleet, 5_000);
    const { promise: stopLoad, resolve: endLoad } = Promise.withResolvers<void>();
    const loading = load(8, mixedUrl(fleet, `${run}-k`), stopLoad);
    try {
      // The next fetch hangs. The lock holder (its value starts with `host:pid:`) is the fetcher:
      // kill it while it waits for the campaign service.
      const admin = await fleet.redis.admin();
      fleet.service.mode = "hang";
      const count = fleet.service.requests.count;
      await until(() => fleet.service.requests.count > count, 5_000, "the next fetch", 2);
      let lock = "";
      await until(
        async () => {
          lock = String(await admin.send("GET", ["adsrv:{cat}:lock"]));
          return fleet.instances.some((i) => lock.includes(`:${i.pid}:`));
        },
        2_000,
        "an instance holding the fetch lock",
        2,
      );
      const fetcher = fleet.instances.find((i) => lock.includes(`:${i.pid}:`));
      if (fetcher === undefined) throw new Error(`no instance holds the lock ${lock.slice(0, 80)}`);
      console.log(`fetcher: instance ${fetcher.index} (pid ${fetcher.pid}); lock ${lock.slice(0, 60)}`);
      await fetcher.kill("SIGKILL");
      const killedAt = performance.now();
      const afterKill = fleet.service.requests.count;
      fleet.service.catalog = catalogOf(ADS, "g");
      fleet.service.mode = "ok";

      const version = await converged(fleet, 20_000, before);
      const tookMs = performance.now() - killedAt;
      console.log(
        `fetcher killed → another instance fetched and the fleet serves ${version} after ${Math.round(tookMs)} ms`,
      );
      expect(fleet.service.requests.count).toBeGreaterThan(afterKill);

      // Back to three: the restarted instance takes the shared version at start-up.
      await fetcher.restart();
      expect(await converged(fleet, 5_000)).toBe(version);
    } finally {
      fleet.service.mode = "ok";
      endLoad();
    }
    const outcomes = (await loading).map((r) => r.o);
    const errors = outcomes.filter(isError).length;
    console.log(`load during the fetcher kill: ${outcomes.length} requests ${summary(outcomes)}`);
    expect(errors / outcomes.length).toBeLessThan(0.001);
  }, 80_000);

  test("Redis paused (SIGSTOP): player-keyed answers still come within the deadline plus a few ms", async () => {
    await converged(fleet, 5_000);
    const player = (slot: number, n: number) =>
      `${fleet.lb.url}/ad_request?country=us&lang=eng&player_id=pause-${run}-${slot}-${n % 500}`;
    // Baseline, same run, same load.
    const base = (await load(6, player, Bun.sleep(1_500))).map((r) => r.o);
    const { promise: stopLoad, resolve: endLoad } = Promise.withResolvers<void>();
    const loadStart = performance.now();
    const during = load(6, player, stopLoad);
    let paused: Outcome[] = [];
    try {
      await Bun.sleep(200);
      fleet.redis.pause();
      const from = performance.now() - loadStart;
      await Bun.sleep(3_000);
      const to = performance.now() - loadStart;
      fleet.redis.resume();
      endLoad();
      // Requests that started while the server was stopped.
      paused = (await during).filter((r) => r.t >= from && r.t < to).map((r) => r.o);
    } finally {
      fleet.redis.resume();
      endLoad();
    }
    const p = (xs: Outcome[], q: number) =>
      percentile(
        xs.map((o) => o.ms),
        q,
      );
    console.log(
      `Redis paused: ${paused.length} player-keyed requests, p50 ${p(paused, 50).toFixed(1)} ms, p99 ${p(paused, 99).toFixed(1)} ms, ` +
        `max ${Math.max(...paused.map((o) => o.ms)).toFixed(1)} ms ${summary(paused)}; ` +
        `baseline ${base.length}: p50 ${p(base, 50).toFixed(1)} p99 ${p(base, 99).toFixed(1)} ms`,
    );
    expect(paused.filter(isError).length).toBe(0);
    expect(p(paused, 99)).toBeLessThanOrEqual(STORE_TIMEOUT_MS + Math.max(10, p(base, 99)));
    // Redis back: the history is shared again.
    await until(
      () => historyIsShared(fleet, "pause"),
      15_000,
      "player history shared again after SIGCONT",
      100,
    );
  }, 30_000);

  test("Redis killed then restarted: zero 5xx; each instance fetches for itself meanwhile; shared catalog and history resume", async () => {
    const before = await converged(fleet, 5_000);
    const { promise: stopLoad, resolve: endLoad } = Promise.withResolvers<void>();
    const loading = load(12, mixedUrl(fleet, `${run}-r`), stopLoad);
    let soloFetches = 0;
    let rejoinMs = 0;
    let outageVersion = "";
    try {
      await Bun.sleep(1_000);
      await fleet.redis.down();
      // Two intervals without Redis, then each instance polls the service itself ("solo").
      await Bun.sleep(2_500 * REFRESH_S);
      const count = fleet.service.requests.count;
      fleet.service.catalog = catalogOf(ADS, "h");
      outageVersion = await converged(fleet, 5_000, before);
      await Bun.sleep(2_000);
      soloFetches = fleet.service.requests.count - count;
      console.log(
        `Redis down: the fleet converged on ${outageVersion} by fetching itself; ${soloFetches} fetches`,
      );

      await fleet.redis.up();
      const upAt = performance.now();
      // Redis came back empty (no persistence in the test): a lock holder publishes the catalog
      // again, every instance serves the stored version, and histories are kept again.
      const admin = await fleet.redis.admin();
      await until(
        async () => {
          const stored = (await admin.send("HGET", ["adsrv:{cat}", "version"])) as string | null;
          const vs = await versions(fleet);
          return stored !== null && vs.every((v) => v === outageVersion);
        },
        40_000,
        "the catalog stored in Redis again",
        100,
      );
      await until(() => historyIsShared(fleet, "restart"), 40_000, "player history shared again", 100);
      rejoinMs = performance.now() - upAt;
      console.log(`Redis restarted → shared catalog and history again after ${Math.round(rejoinMs)} ms`);
      await Bun.sleep(500);
    } finally {
      await fleet.redis.up(); // no-op when it is running
      endLoad();
    }
    const outcomes = (await loading).map((r) => r.o);
    console.log(`load across the Redis restart: ${outcomes.length} requests ${summary(outcomes)}`);
    expect(outcomes.filter(isError).length).toBe(0);
    // Three instances each polling once per interval for ~2 s: clearly more than the fleet's one.
    expect(soloFetches).toBeGreaterThanOrEqual(3);
  }, 80_000);

  test("one adsrv instance killed under load: nginx's retries keep client errors below 0.1 %", async () => {
    await converged(fleet, 5_000);
    const { promise: stopLoad, resolve: endLoad } = Promise.withResolvers<void>();
    const loading = load(24, mixedUrl(fleet, `${run}-x`), stopLoad);
    const victim = fleet.instances[1];
    if (victim === undefined) throw new Error("no instance 1");
    try {
      await Bun.sleep(1_500);
      await victim.kill("SIGKILL");
      await Bun.sleep(2_500);
    } finally {
      endLoad();
    }
    const results = await loading;
    const outcomes = results.map((r) => r.o);
    const errors = outcomes.filter(isError);
    console.log(
      `instance killed under load: ${outcomes.length} requests, ${errors.length} client errors ` +
        `(${((100 * errors.length) / outcomes.length).toFixed(3)} %) ${summary(outcomes)}`,
    );
    expect(outcomes.length).toBeGreaterThan(2_000);
    expect(errors.length / outcomes.length).toBeLessThan(0.001);
    // After the kill, the two survivors answered everything.
    await victim.restart();
    await converged(fleet, 5_000);
  }, 30_000);
});

suite("faults under load, closed mode", () => {
  let fleet: Fleet;
  const run = Date.now().toString(36);

  beforeAll(async () => {
    fleet = await startWarmFleet("z", ["--on-store-error", "closed"]);
  }, 30_000);

  afterAll(async () => {
    await fleet?.stop();
  });

  test("Redis killed then restarted: 503 only for player-keyed requests and only while Redis is away", async () => {
    const { promise: stopLoad, resolve: endLoad } = Promise.withResolvers<void>();
    const loading = load(12, mixedUrl(fleet, run), stopLoad);
    let downAt = 0;
    let backAt = 0;
    const t0 = performance.now();
    try {
      await Bun.sleep(1_000);
      downAt = performance.now() - t0; // the SIGKILL goes out now
      await fleet.redis.down();
      await Bun.sleep(2_000);
      await fleet.redis.up();
      await until(() => historyIsShared(fleet, "closed"), 40_000, "player history shared again", 100);
      backAt = performance.now() - t0;
      await Bun.sleep(1_000);
    } finally {
      endLoad();
    }
    const results = await loading;
    const anonymous = results.filter((r) => !r.url.includes("player_id"));
    const keyed = results.filter((r) => r.url.includes("player_id"));
    const in503 = keyed.filter((r) => r.o.status === 503);
    console.log(
      `closed mode: Redis down at ${Math.round(downAt)} ms, history shared again at ${Math.round(backAt)} ms; ` +
        `anonymous ${summary(anonymous.map((r) => r.o))}, player-keyed ${summary(keyed.map((r) => r.o))}`,
    );
    // Anonymous requests never touch Redis.
    expect(anonymous.filter((r) => isError(r.o)).length).toBe(0);
    // Player-keyed: 503 (with Retry-After) while Redis is away, nothing else ever.
    expect(keyed.filter((r) => isError(r.o) && r.o.status !== 503).length).toBe(0);
    expect(in503.length).toBeGreaterThan(0);
    expect(in503.filter((r) => r.o.retryAfter === null).length).toBe(0);
    // Requests that started before the kill or after the recovery was seen did not get 503.
    const outside = in503.filter((r) => r.t + r.o.ms < downAt || r.t > backAt);
    if (outside.length > 0)
      console.error(
        `503 outside the outage (start ms + duration ms): ${outside
          .slice(0, 10)
          .map((r) => `${Math.round(r.t)}+${Math.round(r.o.ms)}`)
          .join(", ")}`,
      );
    expect(outside.length).toBe(0);
  }, 60_000);
});

/**
 * Three in-process instances sharing a private redis-server (never the machine's shared one):
 * one catalog fetch per interval for the fleet, one version everywhere, exact caps across
 * instances, fleet stats, and degraded service when Redis goes away. The same topology behind
 * nginx with the real executable is in fleet.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type Config, makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import type { SyncOutcome } from "../../src/sync/loop.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { type PrivateRedis, startRedis } from "../fakes/redis.ts";
import { fakeCampaignService, sampleAd, waiter } from "../rig.ts";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function redis(): Promise<PrivateRedis> {
  const r = await startRedis();
  cleanups.push(() => r.stop());
  return r;
}

interface Instance {
  server: RunningServer;
  outcomes: ReturnType<typeof waiter<SyncOutcome>>;
}

async function fleet(n: number, overrides: Partial<Config>): Promise<Instance[]> {
  const out: Instance[] = [];
  for (let i = 0; i < n; i++) {
    const outcomes = waiter<SyncOutcome>();
    const server = await startServer(makeConfig({ listen: { host: "127.0.0.1", port: 0 }, ...overrides }), {
      log: silentLogger,
      onSyncOutcome: (o) => outcomes.push(o),
    });
    cleanups.push(() => server.stop());
    out.push({ server, outcomes });
  }
  return out;
}

async function versionOf(server: RunningServer): Promise<string | null> {
  const res = await fetch(`${server.url}/readyz`);
  return res.status === 200 ? ((await res.json()) as { catalog_version: string }).catalog_version : null;
}

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await check()) return true;
    await Bun.sleep(50);
  }
  return check();
}

describe("fleet through Redis", () => {
  test("one fetch per interval for the fleet; a change reaches every instance; one version everywhere", async () => {
    const r = await redis();
    const svc = fakeCampaignService({ ads: [sampleAd("v1a"), sampleAd("v1b")] });
    cleanups.push(() => svc.stop());
    const nodes = await fleet(3, { catalog: svc.url, redis: r.url, refreshSeconds: 0.5 });
    await Promise.all(nodes.map((n) => n.server.ready));
    expect(
      await until(
        async () => (await Promise.all(nodes.map((n) => versionOf(n.server)))).every((v) => v !== null),
        5_000,
      ),
    ).toBe(true);

    // Over ~3 s (6 intervals), three instances fetch about 6 times (one lease per interval), not 18.
    const before = svc.requests.count;
    await Bun.sleep(3_000);
    const fetched = svc.requests.count - before;
    expect(fetched).toBeGreaterThanOrEqual(3);
    expect(fetched).toBeLessThanOrEqual(8);

    svc.catalog = { ads: [sampleAd("v2a")] };
    const converged = await until(async () => {
      const versions = await Promise.all(nodes.map((n) => versionOf(n.server)));
      return (
        new Set(versions).size === 1 &&
        versions[0] === nodes[0]?.server.holder.current?.version &&
        nodes.every((n) => n.server.holder.current?.ads.toArray()[0]?.id === "v2a")
      );
    }, 2_000);
    expect(converged).toBe(true);
    const res = await fetch(`${nodes[1]?.server.url}/ad_request?country=us&lang=eng`);
    expect(res.headers.get("adsrv-catalog-version")).toBe(nodes[0]?.server.holder.current?.version as string);
  });

  test("the frequency cap is exact across instances under concurrency; stats add up for the fleet", async () => {
    const r = await redis();
    const svc = fakeCampaignService({ ads: [sampleAd("c1"), sampleAd("c2")] });
    cleanups.push(() => svc.stop());
    const nodes = await fleet(3, {
      catalog: svc.url,
      redis: r.url,
      refreshSeconds: 5,
      frequencyCap: 2,
      storeTimeoutMs: 1_000,
    });
    await Promise.all(nodes.map((n) => n.server.ready));
    expect(
      await until(
        async () => (await Promise.all(nodes.map((n) => versionOf(n.server)))).every((v) => v !== null),
        5_000,
      ),
    ).toBe(true);

    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        fetch(`${nodes[i % 3]?.server.url}/ad_request?country=us&lang=eng&player_id=shared-player`).then(
          async (res) => ({
            status: res.status,
            body: (await res.json()) as { id?: string; reason?: string },
          }),
        ),
      ),
    );
    const served = responses.filter((x) => x.status === 200).map((x) => x.body.id);
    expect(served.filter((id) => id === "c1")).toHaveLength(2);
    expect(served.filter((id) => id === "c2")).toHaveLength(2);
    expect(responses.filter((x) => x.status === 404).every((x) => x.body.reason === "frequency_capped")).toBe(
      true,
    );
    expect(responses.filter((x) => x.status !== 200 && x.status !== 404)).toEqual([]);

    await Promise.all(nodes.map((n) => n.server.flushStats()));
    const stats = (await (await fetch(`${nodes[2]?.server.url}/stats`)).json()) as {
      by_ad: Record<string, { served: number }>;
      no_fill_by_reason: Record<string, number>;
    };
    expect(stats.by_ad.c1?.served).toBe(2);
    expect(stats.by_ad.c2?.served).toBe(2);
    expect(stats.no_fill_by_reason.frequency_capped).toBe(26);
  });

  test("Redis down: open mode keeps answering player requests without history; closed mode 503s; both recover", async () => {
    const r = await redis();
    const svc = fakeCampaignService({ ads: [sampleAd("d1"), sampleAd("d2")] });
    cleanups.push(() => svc.stop());
    const [open] = await fleet(1, { catalog: svc.url, redis: r.url, refreshSeconds: 0.3 });
    const [closed] = await fleet(1, {
      catalog: svc.url,
      redis: r.url,
      refreshSeconds: 0.3,
      onStoreError: "closed",
    });
    if (open === undefined || closed === undefined) throw new Error("no instances");
    await open.server.ready;
    await closed.server.ready;
    expect(
      await until(
        async () => (await versionOf(open.server)) !== null && (await versionOf(closed.server)) !== null,
        5_000,
      ),
    ).toBe(true);
    const player = (s: RunningServer) =>
      fetch(`${s.url}/ad_request?country=us&lang=eng&player_id=p9`).then((x) => x.status);
    expect(await player(open.server)).toBe(200);
    expect(await player(closed.server)).toBe(200);

    await r.down();
    const openStatuses: number[] = [];
    const closedStatuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      openStatuses.push(await player(open.server));
      closedStatuses.push(await player(closed.server));
    }
    expect(openStatuses.every((s) => s === 200)).toBe(true);
    expect(closedStatuses.every((s) => s === 503)).toBe(true);
    // Anonymous requests never touch Redis.
    expect((await fetch(`${closed.server.url}/ad_request?country=us&lang=eng`)).status).toBe(200);
    // The catalog keeps being served, and a source change still arrives (solo fetching).
    svc.catalog = { ads: [sampleAd("solo1")] };
    expect(await until(async () => open.server.holder.current?.ads.toArray()[0]?.id === "solo1", 5_000)).toBe(
      true,
    );

    await r.up();
    expect(await until(async () => (await player(closed.server)) === 200, 10_000)).toBe(true);
  }, 30_000);
});

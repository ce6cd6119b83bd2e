/**
 * FleetSync (src/sync/fleet.ts) with a fake store: a stored catalog that fails its digest is
 * refused and counted as a Redis failure; when Redis has lost its copy, the lock holder publishes
 * the worker's document, not the served catalog serialized on the serving thread; a stored
 * version that holds the served catalog under another version is not read again every tick.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createOffThreadBuilder, type OffThreadBuilder } from "../../../src/catalog/offthread.ts";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import { validateCatalog } from "../../../src/catalog/validate.ts";
import { makeConfig } from "../../../src/config.ts";
import { sha256Hex } from "../../../src/crypto/sha256.ts";
import type { CatalogStore, PublishInput, StoredCatalog } from "../../../src/store/catalog.ts";
import type { StoreError } from "../../../src/store/redis.ts";
import { type FleetOptions, FleetSync } from "../../../src/sync/fleet.ts";
import { CatalogHolder } from "../../../src/sync/holder.ts";
import { CatalogSync } from "../../../src/sync/loop.ts";
import { silentLogger } from "../../../src/telemetry/log.ts";
import { sampleAd, sharedDoc } from "../../rig.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A catalog file holding `ads`, in a temp dir removed after the test. */
async function sourceOf(ads: readonly Record<string, unknown>[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "adsrv-fleet-"));
  dirs.push(dir);
  const source = join(dir, "source.json");
  await writeFile(source, JSON.stringify({ ads }));
  return source;
}

/** A store that holds nothing and where another instance holds the lock; `parts` override. */
function fakeStore(parts: Partial<CatalogStore>): CatalogStore {
  return {
    tryLock: async () => null,
    renew: async () => false,
    publish: async () => "lost_lock",
    release: async () => false,
    readVersion: async () => null,
    readDoc: async () => null,
    onVersion: () => () => {},
    ...parts,
  };
}

/** A store holding `doc()` (called on each read, so a test may change it), counting its reads. */
function storeHolding(doc: () => StoredCatalog): { store: CatalogStore; reads: () => number } {
  let reads = 0;
  const store = fakeStore({
    readVersion: async () => doc().version,
    readDoc: async () => {
      reads++;
      return doc();
    },
  });
  return { store, reads: () => reads };
}

/** A CatalogSync on `source` whose ticks the FleetSync made of `options` coordinates. */
function fleetSync(
  source: string,
  options: Omit<FleetOptions, "log" | "now" | "instanceId">,
  builder?: OffThreadBuilder,
): { fleet: FleetSync; sync: CatalogSync } {
  const fleet = new FleetSync({ ...options, log: silentLogger, now: () => 5, instanceId: "test:1" });
  const sync = new CatalogSync({
    source,
    refreshMs: 60_000,
    limits: makeConfig().fetch,
    stateDir: null,
    holder: options.holder,
    log: silentLogger,
    now: () => 5,
    coordinator: fleet,
    builder: builder ?? null,
  });
  fleet.attach(sync);
  return { fleet, sync };
}

test("a stored catalog failing its digest is not served; it counts as a Redis failure, and the instance turns to the source", async () => {
  const source = await sourceOf([sampleAd("from-source")]);
  const text = JSON.stringify({ ads: [sampleAd("from-redis")] });
  const doc = { version: "v-shared", ...sharedDoc(text, "0".repeat(64)), fetchedAt: 1 };
  const { store, reads } = storeHolding(() => doc);
  const holder = new CatalogHolder();
  holder.swap(buildSnapshot([], 0));
  const errors: StoreError[] = [];
  const { fleet, sync } = fleetSync(source, {
    store,
    holder,
    soloAfter: 2,
    onStoreError: (e) => errors.push(e),
  });

  const first = await sync.refresh();
  expect(first).toMatchObject({ kind: "failed", failure: "read" });
  expect(errors.map((e) => [e.kind, e.message])).toEqual([["reply", "stored catalog fails its digest"]]);
  expect(holder.current?.ads.length).toBe(0);

  // The second failure in a row: solo, the source is read and served.
  const second = await sync.refresh();
  expect(second).toMatchObject({ kind: "updated", from: "source", ads: 1 });
  expect(holder.current?.ads.id(0)).toBe("from-source");
  expect(reads()).toBe(2);
  fleet.stop();
});

test("Redis lost its copy while the source is unchanged: the holder reads the source whole and publishes the worker's document", async () => {
  // Over 1 MiB: built on the worker.
  const source = await sourceOf(Array.from({ length: 12_000 }, (_, i) => sampleAd(`ad-${i}`)));
  const published: PublishInput[] = [];
  // Redis keeps nothing: every tick finds it empty, as after a restart without persistence.
  const store = fakeStore({
    tryLock: async () => "token",
    renew: async () => true,
    publish: async (input) => {
      published.push(input);
      return "published";
    },
    release: async () => true,
  });
  const holder = new CatalogHolder();
  const builder = createOffThreadBuilder();
  const { fleet, sync } = fleetSync(source, { store, holder }, builder);
  try {
    expect(await sync.refresh()).toMatchObject({ kind: "updated", ads: 12_000 });
    // The file is unchanged (same size and modification time): still read and built, not serialized.
    expect(await sync.refresh()).toMatchObject({ kind: "unchanged" });
    expect(published.length).toBe(2);
    for (const p of published) {
      expect(p.doc).toBeInstanceOf(Uint8Array);
      expect(p.sha256).toBe(sha256Hex(p.doc));
      expect(p.version).toBe(holder.current?.version as string);
    }
  } finally {
    fleet.stop();
    builder.close();
  }
});

test("a stored version holding the catalog served under another version (another release's hash) is read once, not every tick", async () => {
  const ads = [sampleAd("a"), sampleAd("b")];
  const source = await sourceOf(ads);
  let stored = { version: "from-an-older-release", ...sharedDoc(JSON.stringify({ ads })), fetchedAt: 1 };
  const { store, reads } = storeHolding(() => stored);
  const holder = new CatalogHolder();
  const valid = validateCatalog({ ads });
  if (!valid.ok) throw new Error("sample ads invalid");
  holder.swap(buildSnapshot(valid.ads, 0));
  const served = holder.current;
  const { fleet, sync } = fleetSync(source, { store, holder });
  try {
    expect(await sync.refresh()).toMatchObject({ kind: "unchanged" });
    expect(await sync.refresh()).toMatchObject({ kind: "unchanged" });
    expect(reads()).toBe(1);
    expect(holder.current).toBe(served);
    // Another catalog stored: loaded.
    const next = [sampleAd("c")];
    stored = { version: "next", ...sharedDoc(JSON.stringify({ ads: next })), fetchedAt: 2 };
    expect(await sync.refresh()).toMatchObject({ kind: "updated", from: "redis", ads: 1 });
    expect(reads()).toBe(2);
    expect(holder.current?.ads.id(0)).toBe("c");
  } finally {
    fleet.stop();
  }
});

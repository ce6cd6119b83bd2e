/**
 * FleetSync with a stored catalog that fails its digest (src/sync/fleet.ts): refused, counted as
 * a Redis failure, and after `soloAfter` of them the instance reads the source itself.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import { makeConfig } from "../../../src/config.ts";
import type { CatalogStore, StoredCatalog } from "../../../src/store/catalog.ts";
import type { StoreError } from "../../../src/store/redis.ts";
import { FleetSync } from "../../../src/sync/fleet.ts";
import { CatalogHolder } from "../../../src/sync/holder.ts";
import { CatalogSync } from "../../../src/sync/loop.ts";
import { silentLogger } from "../../../src/telemetry/log.ts";
import { sampleAd, sharedDoc } from "../../rig.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A store holding `doc` under version "v-shared"; another instance always holds the lock. */
function storeWith(doc: StoredCatalog): CatalogStore & { reads: number } {
  const store = {
    reads: 0,
    tryLock: async () => null,
    renew: async () => false,
    publish: async () => "lost_lock" as const,
    release: async () => false,
    readVersion: async () => doc.version,
    readDoc: async () => {
      store.reads++;
      return doc;
    },
    onVersion: () => () => {},
  };
  return store;
}

test("a stored catalog failing its digest is not served; it counts as a Redis failure, and the instance turns to the source", async () => {
  const dir = await mkdtemp(join(tmpdir(), "adsrv-fleet-"));
  dirs.push(dir);
  const source = join(dir, "source.json");
  await writeFile(source, JSON.stringify({ ads: [sampleAd("from-source")] }));
  const text = JSON.stringify({ ads: [sampleAd("from-redis")] });
  const store = storeWith({ version: "v-shared", ...sharedDoc(text, "0".repeat(64)), fetchedAt: 1 });
  const holder = new CatalogHolder();
  holder.swap(buildSnapshot([], 0));
  const errors: StoreError[] = [];
  const fleet = new FleetSync({
    store,
    holder,
    log: silentLogger,
    now: () => 5,
    instanceId: "test:1",
    soloAfter: 2,
    onStoreError: (e) => errors.push(e),
  });
  const sync = new CatalogSync({
    source,
    refreshMs: 60_000,
    limits: makeConfig().fetch,
    stateDir: null,
    holder,
    log: silentLogger,
    now: () => 5,
    coordinator: fleet,
  });
  fleet.attach(sync);

  const first = await sync.refresh();
  expect(first).toMatchObject({ kind: "failed", failure: "read" });
  expect(errors.map((e) => [e.kind, e.message])).toEqual([["reply", "stored catalog fails its digest"]]);
  expect(holder.current?.ads.length).toBe(0);

  // The second failure in a row: solo, the source is read and served.
  const second = await sync.refresh();
  expect(second).toMatchObject({ kind: "updated", from: "source", ads: 1 });
  expect(holder.current?.ads.id(0)).toBe("from-source");
  expect(store.reads).toBe(2);
  fleet.stop();
});

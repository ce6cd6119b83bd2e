/**
 * The sync loop with the catalog worker (src/sync/loop.ts `prepare`): big catalogs are built off
 * this thread; a failed worker fails that attempt only, and later builds run here in slices.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createOffThreadBuilder,
  type OffThreadBuilder,
  WorkerFailed,
} from "../../../src/catalog/offthread.ts";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import { parseCatalog } from "../../../src/catalog/validate.ts";
import { makeConfig } from "../../../src/config.ts";
import { CatalogHolder } from "../../../src/sync/holder.ts";
import { CatalogSync } from "../../../src/sync/loop.ts";
import { createLogger } from "../../../src/telemetry/log.ts";
import { sampleAd } from "../../rig.ts";

const big = JSON.stringify({
  ads: [...Array.from({ length: 12_000 }, (_, i) => sampleAd(`ad-${i}`)), { id: "no-url" }],
});

const builders: OffThreadBuilder[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const b of builders.splice(0)) b.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function syncWith(builder: OffThreadBuilder, stateDir: string | null = null) {
  const holder = new CatalogHolder();
  holder.swap(buildSnapshot([], 0));
  const lines: string[] = [];
  const sync = new CatalogSync({
    source: "unused",
    refreshMs: 60_000,
    limits: makeConfig().fetch,
    stateDir,
    holder,
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    now: () => 42,
    builder,
  });
  return { sync, holder, lines };
}

describe("catalog sync with the worker", () => {
  expect(big.length).toBeGreaterThan(1 << 20);

  test("a big catalog is built on the worker and swapped in; the state dir gets the canonical copy", async () => {
    const dir = await mkdtemp(join(tmpdir(), "adsrv-worker-"));
    dirs.push(dir);
    const builder = createOffThreadBuilder();
    builders.push(builder);
    const { sync, holder, lines } = syncWith(builder, dir);
    const outcome = await sync.applyText(big, "redis");
    expect(outcome).toMatchObject({ kind: "updated", ads: 12_000, skipped: 1, from: "redis" });
    expect(lines.some((l) => l.includes("building the catalog on the worker thread"))).toBe(true);
    expect(lines.some((l) => l.includes("catalog entry skipped") && l.includes("no-url"))).toBe(true);
    expect(holder.current?.ads.length).toBe(12_000);
    expect(holder.current?.loadedAt).toBe(42);
    const local = parseCatalog(big);
    if (!local.ok) throw new Error("valid fixture");
    expect(holder.current?.version).toBe(buildSnapshot(local.ads, 0).version);
    expect(await readFile(join(dir, "catalog.json"), "utf8")).toBe(JSON.stringify({ ads: local.ads }));
  });

  test("a failed worker fails that attempt; the next one builds here, in slices, without the worker", async () => {
    let calls = 0;
    const broken: OffThreadBuilder = {
      build: () => {
        calls++;
        return Promise.reject(new WorkerFailed("catalog worker exited"));
      },
      close: () => {},
    };
    const { sync, holder, lines } = syncWith(broken);
    const before = holder.current;
    const failed = await sync.applyText(big, "redis");
    expect(failed).toMatchObject({ kind: "failed", failure: "worker" });
    expect(holder.current).toBe(before); // the live catalog stays
    expect(lines.some((l) => l.includes('"level":"error"') && l.includes("catalog worker failed"))).toBe(
      true,
    );
    const next = await sync.applyText(big, "redis");
    expect(next).toMatchObject({ kind: "updated", ads: 12_000 });
    expect(calls).toBe(1);
    expect(lines.some((l) => l.includes("rebuilding the catalog in slices"))).toBe(true);
  });
});

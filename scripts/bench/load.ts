/**
 * Catalog load benchmark: one fresh process reads a catalog file, parses, validates, indexes
 * and swaps it in exactly as `adsrv serve` does (the read here, the build on the catalog worker
 * thread, src/catalog/offthread.ts), timing each stage, then reports peak RSS (both threads).
 *
 *   bun scripts/bench/load.ts <catalog.json>   → one JSON line on stdout
 * @module
 */
import { heapStats } from "bun:jsc";
import { createOffThreadBuilder } from "../../src/catalog/offthread.ts";
import { readSource } from "../../src/catalog/upstream.ts";
import { CatalogHolder } from "../../src/sync/holder.ts";

function vm(field: "VmHWM" | "VmRSS"): number {
  const status = require("node:fs").readFileSync("/proc/self/status", "utf8") as string;
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

const path = process.argv[2];
if (path === undefined) {
  console.error("usage: bun scripts/bench/load.ts <catalog.json>");
  process.exit(2);
}
const holder = new CatalogHolder();
// The longest the event loop went without running a 1 ms timer while the file was read: how
// long a server reading this catalog would stop answering.
let lastTick = performance.now();
let readLoopGapMs = 0;
const ticker = setInterval(() => {
  const t = performance.now();
  readLoopGapMs = Math.max(readLoopGapMs, t - lastTick);
  lastTick = t;
}, 1);
await Bun.sleep(5);
lastTick = performance.now();
const t0 = performance.now();
const read = await readSource(path, null, {
  connectTimeoutMs: 2000,
  totalTimeoutMs: 60_000,
  maxBytes: 1 << 30,
});
if (read.kind !== "body") throw new Error(`read failed: ${JSON.stringify(read)}`);
const t1 = performance.now();
readLoopGapMs = Math.max(readLoopGapMs, t1 - lastTick);
clearInterval(ticker);
// The worker reports when it is done; `snapshotOf` (maps over the transferred arrays) runs here.
let t2 = 0;
const builder = createOffThreadBuilder();
const built = await builder.build(read.data, { canonical: false }, () => {
  t2 = performance.now();
  return Date.now();
});
if (built.kind !== "built") throw new Error(`not built: ${JSON.stringify(built).slice(0, 300)}`);
holder.swap(built.snapshot);
const t4 = performance.now();
builder.close();
console.log(
  JSON.stringify({
    ads: built.ads,
    bytes: read.bytes,
    readMs: t1 - t0,
    readLoopGapMs,
    buildMs: t2 - t1,
    swapMs: t4 - t2,
    totalMs: t4 - t0,
    peakRss: vm("VmHWM"),
    rss: vm("VmRSS"),
    ...liveHeap(),
  }),
);

/** What stays on the JS heap with the snapshot live (after a full collection; outside the timings). */
function liveHeap(): { heapCells: number; heapBytes: number } {
  Bun.gc(true);
  const stats = heapStats();
  return { heapCells: stats.objectCount, heapBytes: stats.heapSize };
}

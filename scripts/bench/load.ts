/**
 * Catalog load benchmark: one fresh process reads a catalog file, parses, validates, indexes
 * and swaps it in exactly as `adsrv serve` does, timing each stage, then reports peak RSS.
 *
 *   bun scripts/bench/load.ts <catalog.json>   → one JSON line on stdout
 * @module
 */
import { heapStats } from "bun:jsc";
import { buildSnapshot } from "../../src/catalog/snapshot.ts";
import { readSource } from "../../src/catalog/upstream.ts";
import { parseCatalog } from "../../src/catalog/validate.ts";
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
const result = parseCatalog(read.text);
if (!result.ok) throw new Error(`rejected: ${result.message}`);
const t2 = performance.now();
const snapshot = buildSnapshot(result.ads, Date.now());
const t3 = performance.now();
holder.swap(snapshot);
const t4 = performance.now();
console.log(
  JSON.stringify({
    ads: result.ads.length,
    bytes: read.bytes,
    readMs: t1 - t0,
    readLoopGapMs,
    parseValidateMs: t2 - t1,
    indexMs: t3 - t2,
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

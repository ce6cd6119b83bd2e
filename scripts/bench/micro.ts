/**
 * Micro-benchmark of the decision alone — `eligible` + rotation tick + `choose`, exactly the
 * handler's steps after the query parse — on a snapshot built from a catalog file.
 * Harness: batches of calls timed with `Bun.nanoseconds()`, warm-up batches discarded, the
 * median (and p10/p90) of per-call nanoseconds reported. Queries cycle through the same
 * traffic-weighted request mix the load tests use, at the current UTC hour.
 *
 *   bun scripts/bench/micro.ts <catalog.json> [batches]   → one JSON line on stdout
 * @module
 */
import { buildSnapshot } from "../../src/catalog/snapshot.ts";
import { parseCatalog } from "../../src/catalog/validate.ts";
import { choose, eligible } from "../../src/decision/decide.ts";
import { utcHour } from "../../src/decision/hours.ts";
import { parseAdQuery, searchOf } from "../../src/http/query.ts";
import { requestPaths } from "./gen.ts";

const path = process.argv[2];
const batches = Number(process.argv[3] ?? "200");
if (path === undefined) {
  console.error("usage: bun scripts/bench/micro.ts <catalog.json> [batches]");
  process.exit(2);
}
const result = parseCatalog(await Bun.file(path).text());
if (!result.ok) throw new Error(result.message);
const snapshot = buildSnapshot(result.ads, Date.now());

// 1024 queries (a power of two, so the index is a mask), already parsed to canonical codes.
const countries: string[] = [];
const langs: string[] = [];
for (const p of requestPaths(result.ads.length, 1, 1024)) {
  const q = parseAdQuery(searchOf(p));
  if (!q.ok) throw new Error(`bad path ${p}`);
  countries.push(q.query.country);
  langs.push(q.query.lang);
}
const hour = utcHour(Date.now());
const N = 10_000;
let sink = 0;
let fills = 0;

function batch(): number {
  const rotation = snapshot.rotation;
  const start = Bun.nanoseconds();
  for (let i = 0; i < N; i++) {
    const k = i & 1023;
    const found = eligible(snapshot, countries[k] as string, langs[k] as string, hour);
    if (found.kind === "nofill") {
      sink++;
      continue;
    }
    const tick = rotation[found.slot] ?? 0;
    rotation[found.slot] = tick + 1;
    sink ^= choose(found.ads, tick);
    fills++;
  }
  return (Bun.nanoseconds() - start) / N;
}

for (let i = 0; i < 50; i++) batch(); // warm-up: let the JIT settle
fills = 0;
const samples: number[] = [];
for (let i = 0; i < batches; i++) samples.push(batch());
samples.sort((a, b) => a - b);
const at = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number;
console.log(
  JSON.stringify({
    ads: result.ads.length,
    buckets: snapshot.rotation.length,
    calls: batches * N,
    fillRate: fills / (batches * N),
    medianNs: at(0.5),
    p10Ns: at(0.1),
    p90Ns: at(0.9),
    sink: sink % 7,
  }),
);

/**
 * Fleet-wide served/impression/no-fill counters: each instance aggregates in memory
 * (src/stats/served.ts) and adds its deltas to one Redis hash every second, in one script call;
 * never per request. `GET /stats` then reads the hash for fleet totals.
 * @module
 */
import type { NoFillRow, StatsDelta, StatsRow, StatsSnapshot } from "../stats/served.ts";
import { ServedStats } from "../stats/served.ts";
import { defineScript, type StoreConnection, StoreError } from "./redis.ts";

export const STATS_KEY = "adsrv:{stats}";
/** The counters expire if no instance writes them for this long. */
const STATS_TTL_MS = 30 * 24 * 3_600_000;

/** KEYS: hash. ARGV: ttl ms, then field, increment pairs. */
const FLUSH_SCRIPT = defineScript(`
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV
`);

const SEP = "\u001f";

function fields(delta: StatsDelta): string[] {
  const out: string[] = [];
  for (const r of delta.rows) {
    const key = [r.ad, r.country, r.lang, r.hour].join(SEP);
    if (r.served > 0) out.push(`s${SEP}${key}`, String(r.served));
    if (r.impressions > 0) out.push(`i${SEP}${key}`, String(r.impressions));
  }
  for (const r of delta.no_fill_rows) {
    out.push(`n${SEP}${[r.country, r.lang, r.reason, r.hour].join(SEP)}`, String(r.count));
  }
  return out;
}

/** Parses the hash back into rows. Unknown or malformed fields are skipped. */
export function parseStatsHash(hash: Readonly<Record<string, string>>): StatsDelta {
  const rows = new Map<
    string,
    { ad: string; country: string; lang: string; hour: number; served: number; impressions: number }
  >();
  const noFill: NoFillRow[] = [];
  for (const [field, value] of Object.entries(hash)) {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0) continue;
    const parts = field.split(SEP);
    const kind = parts[0];
    if ((kind === "s" || kind === "i") && parts.length === 5) {
      const [, ad = "", country = "", lang = "", hourText = ""] = parts;
      const key = parts.slice(1).join(SEP);
      let row = rows.get(key);
      if (row === undefined) {
        row = { ad, country, lang, hour: Number(hourText), served: 0, impressions: 0 };
        rows.set(key, row);
      }
      if (kind === "s") row.served += n;
      else row.impressions += n;
    } else if (kind === "n" && parts.length === 5) {
      const [, country = "", lang = "", reason = "", hourText = ""] = parts;
      noFill.push({ country, lang, reason, hour: Number(hourText), count: n });
    }
  }
  return { rows: [...rows.values()] as StatsRow[], no_fill_rows: noFill };
}

/** Adds two deltas, row by row. */
export function mergeDeltas(a: StatsDelta, b: StatsDelta): StatsDelta {
  if (b.rows.length === 0 && b.no_fill_rows.length === 0) return a;
  if (a.rows.length === 0 && a.no_fill_rows.length === 0) return b;
  const rows = new Map<string, StatsRow>();
  for (const r of [...a.rows, ...b.rows]) {
    const key = [r.ad, r.country, r.lang, r.hour].join(SEP);
    const had = rows.get(key);
    rows.set(
      key,
      had === undefined
        ? r
        : { ...had, served: had.served + r.served, impressions: had.impressions + r.impressions },
    );
  }
  const noFill = new Map<string, NoFillRow>();
  for (const r of [...a.no_fill_rows, ...b.no_fill_rows]) {
    const key = [r.country, r.lang, r.reason, r.hour].join(SEP);
    const had = noFill.get(key);
    noFill.set(key, had === undefined ? r : { ...had, count: had.count + r.count });
  }
  return { rows: [...rows.values()], no_fill_rows: [...noFill.values()] };
}

export interface FleetStats {
  /** Adds this instance's deltas to the fleet hash (puts them back locally on failure). */
  flush(): Promise<void>;
  /** Fleet totals as a `/stats` body. */
  read(nowMs: number): Promise<StatsSnapshot>;
  stop(): void;
}

export function fleetStats(
  conn: StoreConnection,
  local: ServedStats,
  options: {
    readonly startedAtMs: number;
    readonly intervalMs?: number;
    readonly onError: (e: StoreError) => void;
  },
): FleetStats {
  // Deltas not yet in Redis, merged by key (so an outage costs memory bounded by the key count,
  // not by its length). One flush at a time: a later one waits for the one in flight.
  let pending: StatsDelta = { rows: [], no_fill_rows: [] };
  let inFlight: Promise<void> | null = null;
  const once = async (): Promise<void> => {
    const drained = local.drain();
    const delta = mergeDeltas(pending, drained);
    pending = { rows: [], no_fill_rows: [] };
    const args = fields(delta);
    if (args.length === 0) return;
    try {
      await conn.eval(FLUSH_SCRIPT, [STATS_KEY], [String(STATS_TTL_MS), ...args], { timeoutMs: 1_000 });
    } catch (error) {
      // Retried with the next flush; nothing is lost while the process lives.
      pending = mergeDeltas(delta, pending);
      if (error instanceof StoreError) options.onError(error);
    }
  };
  const flush = (): Promise<void> => {
    const run = (inFlight ?? Promise.resolve()).then(once);
    inFlight = run.finally(() => {
      if (inFlight === run) inFlight = null;
    });
    return run;
  };
  const timer = setInterval(() => void flush().catch(() => {}), options.intervalMs ?? 1_000);
  timer.unref();
  return {
    flush,
    async read(nowMs) {
      const reply = (await conn.call("HGETALL", [STATS_KEY], { timeoutMs: 1_000 })) as Record<
        string,
        string
      > | null;
      const fleet = new ServedStats({
        startedAtMs: options.startedAtMs,
        maxKeys: 4_194_304,
        maxNoFillKeys: 1_048_576,
      });
      fleet.merge(parseStatsHash(reply ?? {}));
      return fleet.snapshot(nowMs);
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Counting each impression token once (issue 7).
 *
 * `ImpressionLedger.record(tokenId, expiresAtMs, nowMs)` answers "counted" the first time a
 * token id is seen and "replay" after that, until the token expires (verification refuses it
 * from then on, so the ledger may forget it). The interface allows an asynchronous store: a
 * Redis ledger is one `SET adsrv:{imp}:<tokenId> 1 NX PXAT <expiresAtMs>` (OK = counted, nil =
 * replay), and is needed for once-only counting across processes and instances; the in-memory
 * ledger below counts once per process.
 *
 * `MemoryLedger` has a fixed memory bound: `maxEntries` slots in typed arrays (about 32 bytes
 * per entry, pages touched only as they fill). Token ids are kept as 64-bit keyed hashes (the
 * chance that two of a million live ids collide is about 3·10⁻⁸, and a collision only makes
 * one impression read as a replay). Entries leave in insertion order once expired; when the
 * ledger is full of live entries, the oldest is evicted (counted in `evictions`: a replay of
 * an evicted token would count again, so size `maxEntries` above the impressions expected per
 * token lifetime, or shorten the lifetime).
 * @module
 */

export type LedgerResult = "counted" | "replay";

export interface ImpressionLedger {
  /** Call once per verified token; `expiresAtMs` is the token's own expiry. */
  record(tokenId: string, expiresAtMs: number, nowMs: number): LedgerResult | Promise<LedgerResult>;
}

export interface MemoryLedgerOptions {
  /** Token ids remembered at most (default 1,000,000, about 32 MiB when full). */
  readonly maxEntries?: number;
  /** Hash seed (default: random per process, so ids cannot be chosen to collide). */
  readonly seed?: bigint;
}

export interface LedgerStats {
  readonly size: number;
  readonly capacity: number;
  /** Live entries dropped because the ledger was full. */
  readonly evictions: number;
  readonly counted: number;
  readonly replays: number;
}

export const DEFAULT_MAX_ENTRIES = 1_000_000;

function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[0] as number) << 32n) | BigInt(words[1] as number);
}

export class MemoryLedger implements ImpressionLedger {
  readonly capacity: number;
  #seed: bigint;
  // Open-addressed hash set with linear probing; a slot is empty when both words are 0.
  #mask: number;
  #hi: Uint32Array;
  #lo: Uint32Array;
  // Insertion-ordered ring of the same entries, with their expiry.
  #ringHi: Uint32Array;
  #ringLo: Uint32Array;
  #ringExp: Float64Array;
  #head = 0;
  #size = 0;
  #evictions = 0;
  #counted = 0;
  #replays = 0;

  constructor(options: MemoryLedgerOptions = {}) {
    const max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isSafeInteger(max) || max < 1 || max > 1 << 28) {
      throw new RangeError("maxEntries must be an integer from 1 to 2^28");
    }
    this.capacity = max;
    this.#seed = options.seed ?? randomSeed();
    let tableSize = 2;
    while (tableSize < max * 2) tableSize *= 2; // load factor ≤ 1/2
    this.#mask = tableSize - 1;
    this.#hi = new Uint32Array(tableSize);
    this.#lo = new Uint32Array(tableSize);
    this.#ringHi = new Uint32Array(max);
    this.#ringLo = new Uint32Array(max);
    this.#ringExp = new Float64Array(max);
  }

  record(tokenId: string, expiresAtMs: number, nowMs: number): LedgerResult {
    this.#sweep(nowMs);
    const hash = Bun.hash.wyhash(tokenId, this.#seed);
    let hi = Number(hash >> 32n) >>> 0;
    const lo = Number(hash & 0xffffffffn) >>> 0;
    if (hi === 0 && lo === 0) hi = 1; // (0, 0) marks an empty slot
    if (this.#find(hi, lo) >= 0) {
      this.#replays++;
      return "replay";
    }
    if (this.#size === this.capacity) {
      this.#evictions++;
      this.#dropHead();
    }
    this.#insert(hi, lo);
    const tail = (this.#head + this.#size) % this.capacity;
    this.#ringHi[tail] = hi;
    this.#ringLo[tail] = lo;
    this.#ringExp[tail] = expiresAtMs;
    this.#size++;
    this.#counted++;
    return "counted";
  }

  get stats(): LedgerStats {
    return {
      size: this.#size,
      capacity: this.capacity,
      evictions: this.#evictions,
      counted: this.#counted,
      replays: this.#replays,
    };
  }

  /** Forgets entries from the oldest on, while they have expired. */
  #sweep(nowMs: number): void {
    while (this.#size > 0 && (this.#ringExp[this.#head] as number) <= nowMs) this.#dropHead();
  }

  #dropHead(): void {
    const slot = this.#find(this.#ringHi[this.#head] as number, this.#ringLo[this.#head] as number);
    if (slot >= 0) this.#delete(slot);
    this.#head = (this.#head + 1) % this.capacity;
    this.#size--;
  }

  #find(hi: number, lo: number): number {
    const mask = this.#mask;
    for (let i = lo & mask; ; i = (i + 1) & mask) {
      const h = this.#hi[i] as number;
      const l = this.#lo[i] as number;
      if (h === 0 && l === 0) return -1;
      if (h === hi && l === lo) return i;
    }
  }

  #insert(hi: number, lo: number): void {
    const mask = this.#mask;
    let i = lo & mask;
    while ((this.#hi[i] as number) !== 0 || (this.#lo[i] as number) !== 0) i = (i + 1) & mask;
    this.#hi[i] = hi;
    this.#lo[i] = lo;
  }

  /** Linear-probing deletion by backward shift: no tombstones, probes stay short. */
  #delete(slot: number): void {
    const mask = this.#mask;
    let hole = slot;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const h = this.#hi[j] as number;
      const l = this.#lo[j] as number;
      if (h === 0 && l === 0) break;
      const home = l & mask;
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!between) {
        this.#hi[hole] = h;
        this.#lo[hole] = l;
        hole = j;
      }
    }
    this.#hi[hole] = 0;
    this.#lo[hole] = 0;
  }
}

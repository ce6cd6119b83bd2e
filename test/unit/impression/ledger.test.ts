import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type ImpressionLedger, MemoryLedger } from "../../../src/impression/ledger.ts";

const NOW = 1_000_000;

describe("MemoryLedger", () => {
  test("counts a token once; a replay is answered but not counted", () => {
    const ledger = new MemoryLedger({ maxEntries: 10, seed: 1n });
    expect(ledger.record("tok-a", NOW + 600_000, NOW)).toBe("counted");
    expect(ledger.record("tok-a", NOW + 600_000, NOW + 1)).toBe("replay");
    expect(ledger.record("tok-b", NOW + 600_000, NOW + 2)).toBe("counted");
    expect(ledger.record("tok-a", NOW + 600_000, NOW + 599_999)).toBe("replay");
    expect(ledger.stats).toEqual({ size: 2, capacity: 10, evictions: 0, counted: 2, replays: 2 });
  });

  test("entries are forgotten once expired (injected time)", () => {
    const ledger = new MemoryLedger({ maxEntries: 10, seed: 1n });
    ledger.record("a", NOW + 100, NOW);
    ledger.record("b", NOW + 200, NOW);
    expect(ledger.stats.size).toBe(2);
    ledger.record("c", NOW + 300, NOW + 150);
    expect(ledger.stats.size).toBe(2); // a went
    expect(ledger.record("b", NOW + 200, NOW + 199)).toBe("replay");
    expect(ledger.record("a", NOW + 400, NOW + 200)).toBe("counted"); // b went too; a is new again
    expect(ledger.stats.size).toBe(2);
  });

  test("memory bound: never more than maxEntries; the oldest live entry is evicted and counted", () => {
    const ledger = new MemoryLedger({ maxEntries: 100, seed: 2n });
    for (let i = 0; i < 1000; i++) expect(ledger.record(`t${i}`, NOW + 1e9, NOW + i)).toBe("counted");
    expect(ledger.stats.size).toBe(100);
    expect(ledger.stats.evictions).toBe(900);
    expect(ledger.record("t999", NOW + 1e9, NOW + 1000)).toBe("replay");
    expect(ledger.record("t900", NOW + 1e9, NOW + 1000)).toBe("replay");
    expect(ledger.record("t0", NOW + 1e9, NOW + 1000)).toBe("counted"); // evicted long ago
  });

  test("a long stream of ids (mostly expiring, some evicted) stays within capacity", () => {
    const ledger = new MemoryLedger({ maxEntries: 4096, seed: 3n });
    for (let i = 0; i < 100_000; i++) ledger.record(`id-${i}`, NOW + (i >> 4), NOW + (i >> 4) - 1000);
    const { size, capacity } = ledger.stats;
    expect(size).toBeLessThanOrEqual(capacity);
    expect(size).toBeGreaterThan(0);
    expect(ledger.record("id-99999", NOW, NOW)).toBe("replay");
  });

  test("fast-check: agrees with a reference model (expiry sweeps, evictions, probing deletions)", () => {
    // A tiny capacity forces long probe chains and wrap-around in the hash table.
    const op = fc.record({
      id: fc.integer({ min: 0, max: 40 }),
      ttl: fc.integer({ min: 1, max: 50 }),
      step: fc.integer({ min: 0, max: 5 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), fc.integer({ min: 1, max: 12 }), (ops, max) => {
        const ledger = new MemoryLedger({ maxEntries: max, seed: 4n });
        // Model: insertion-ordered live entries; expired ones leave from the head only.
        const model: { id: number; exp: number }[] = [];
        let now = 0;
        for (const { id, ttl, step } of ops) {
          now += step;
          while (model.length > 0 && (model[0] as { exp: number }).exp <= now) model.shift();
          const seen = model.some((e) => e.id === id);
          if (!seen) {
            if (model.length === max) model.shift();
            model.push({ id, exp: now + ttl });
          }
          expect(ledger.record(`id${id}`, now + ttl, now)).toBe(seen ? "replay" : "counted");
          expect(ledger.stats.size).toBe(model.length);
        }
      }),
      { numRuns: 400, seed: 9 },
    );
  });

  test("fits the ImpressionLedger interface; bad sizes are refused", () => {
    const ledger: ImpressionLedger = new MemoryLedger({ maxEntries: 1 });
    expect(ledger.record("x", 2, 1)).toBe("counted");
    expect(() => new MemoryLedger({ maxEntries: 0 })).toThrow(RangeError);
    expect(() => new MemoryLedger({ maxEntries: 1.5 })).toThrow(RangeError);
  });
});

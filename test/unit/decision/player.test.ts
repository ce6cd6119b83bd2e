import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  choosePlayerAd,
  isCapped,
  type PlayerCandidate,
  type PlayerChoice,
  type PlayerHistory,
} from "../../../src/decision/player.ts";

const cand = (id: string, cap = 0, windowMs = 86_400_000): PlayerCandidate => ({ id, cap, windowMs });
const h = (lastServedMs: number | null, servedInWindow = 0): PlayerHistory => ({
  lastServedMs,
  servedInWindow,
});

/** Brute force: list the open candidates, sort by (last served, never = -∞; then position). */
function model(candidates: readonly PlayerCandidate[], history: readonly PlayerHistory[]): PlayerChoice {
  const open: { index: number; last: number }[] = [];
  candidates.forEach((c, index) => {
    const hist = history[index] ?? { lastServedMs: null, servedInWindow: 0 };
    const capped = c.cap !== 0 && hist.servedInWindow >= c.cap;
    if (!capped) open.push({ index, last: hist.lastServedMs ?? Number.NEGATIVE_INFINITY });
  });
  open.sort((a, b) => (a.last === b.last ? a.index - b.index : a.last < b.last ? -1 : 1));
  const first = open[0];
  return first === undefined ? { kind: "capped" } : { kind: "chosen", index: first.index };
}

describe("choosePlayerAd", () => {
  test("never served beats any served ad; the first never-served wins", () => {
    expect(choosePlayerAd([cand("a"), cand("b"), cand("c")], [h(5), h(null), h(null)])).toEqual({
      kind: "chosen",
      index: 1,
    });
  });

  test("least recently served wins; ties go to catalog order", () => {
    expect(choosePlayerAd([cand("a"), cand("b"), cand("c")], [h(30), h(10), h(20)])).toEqual({
      kind: "chosen",
      index: 1,
    });
    expect(choosePlayerAd([cand("a"), cand("b"), cand("c")], [h(30), h(10), h(10)])).toEqual({
      kind: "chosen",
      index: 1,
    });
  });

  test("a capped ad is skipped even if it is the oldest; cap 0 means no cap", () => {
    const candidates = [cand("a", 2), cand("b", 0), cand("c", 3)];
    expect(choosePlayerAd(candidates, [h(null, 2), h(50, 999), h(40, 2)])).toEqual({
      kind: "chosen",
      index: 2,
    });
    expect(choosePlayerAd(candidates, [h(null, 2), h(50, 999), h(40, 3)])).toEqual({
      kind: "chosen",
      index: 1,
    });
  });

  test("capped when every candidate is capped, or when there is none", () => {
    expect(choosePlayerAd([cand("a", 1), cand("b", 2)], [h(1, 1), h(2, 5)])).toEqual({ kind: "capped" });
    expect(choosePlayerAd([], [])).toEqual({ kind: "capped" });
  });

  test("missing history counts as never served", () => {
    expect(choosePlayerAd([cand("a"), cand("b")], [h(3)])).toEqual({ kind: "chosen", index: 1 });
  });

  test("isCapped", () => {
    expect(isCapped(0, 1_000)).toBe(false);
    expect(isCapped(3, 2)).toBe(false);
    expect(isCapped(3, 3)).toBe(true);
    expect(isCapped(3, 4)).toBe(true);
  });

  test("property: agrees with a brute-force model", () => {
    const arbitrary = fc.array(
      fc.record({
        cap: fc.integer({ min: 0, max: 4 }),
        last: fc.option(fc.integer({ min: 0, max: 6 }), { nil: null }),
        served: fc.integer({ min: 0, max: 5 }),
      }),
      { maxLength: 12 },
    );
    fc.assert(
      fc.property(arbitrary, (rows) => {
        const candidates = rows.map((r, i) => cand(`ad${i}`, r.cap));
        const history = rows.map((r) => h(r.last, r.served));
        expect(choosePlayerAd(candidates, history)).toEqual(model(candidates, history));
      }),
      { numRuns: 2_000, seed: 20_260_501 },
    );
  });

  test("property: the choice is never capped and no open ad is strictly older", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.option(fc.nat(100), { nil: null }), fc.nat(4)), {
          minLength: 1,
          maxLength: 10,
        }),
        (rows) => {
          const candidates = rows.map(([cap], i) => cand(`ad${i}`, cap));
          const history = rows.map(([, last, served]) => h(last, served));
          const choice = choosePlayerAd(candidates, history);
          const open = rows.map(([cap, , served]) => !isCapped(cap, served));
          if (choice.kind === "capped") {
            expect(open.some(Boolean)).toBe(false);
            return;
          }
          expect(open[choice.index]).toBe(true);
          const mine = history[choice.index]?.lastServedMs ?? Number.NEGATIVE_INFINITY;
          rows.forEach(([, last], i) => {
            if (!open[i]) return;
            const theirs = last ?? Number.NEGATIVE_INFINITY;
            expect(theirs >= mine).toBe(true);
            if (theirs === mine) expect(i >= choice.index).toBe(true);
          });
        },
      ),
      { numRuns: 1_000, seed: 7 },
    );
  });
});

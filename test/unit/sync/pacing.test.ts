/**
 * How a sliced rebuild yields between slices (src/sync/loop.ts): a 1 ms timer while requests are
 * being answered or are in flight, `setImmediate` (with a timer now and then) while idle.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import { makeConfig } from "../../../src/config.ts";
import { CatalogHolder } from "../../../src/sync/holder.ts";
import { CatalogSync } from "../../../src/sync/loop.ts";
import { silentLogger } from "../../../src/telemetry/log.ts";
import { sampleAd, sharedDoc } from "../../rig.ts";

const big = JSON.stringify({ ads: Array.from({ length: 12_000 }, (_, i) => sampleAd(`ad-${i}`)) });

function syncWith(signals: { answered?: () => number; inFlight?: () => number }): CatalogSync {
  const holder = new CatalogHolder();
  holder.swap(buildSnapshot([], 0)); // a live snapshot: big texts are then rebuilt in slices
  return new CatalogSync({
    source: "unused",
    refreshMs: 60_000,
    limits: makeConfig().fetch,
    stateDir: null,
    holder,
    log: silentLogger,
    now: Date.now,
    ...signals,
  });
}

/** Runs a sliced rebuild and counts the pauses of each kind it took. */
async function pauses(sync: CatalogSync): Promise<{ timers: number; immediates: number }> {
  const timeout = spyOn(globalThis, "setTimeout");
  const immediate = spyOn(globalThis, "setImmediate");
  try {
    const outcome = await sync.applyShared(sharedDoc(big));
    expect(outcome.kind).toBe("updated");
    return {
      timers: timeout.mock.calls.filter((call) => call[1] === 1).length,
      immediates: immediate.mock.calls.length,
    };
  } finally {
    timeout.mockRestore();
    immediate.mockRestore();
  }
}

describe("rebuild pacing", () => {
  expect(big.length).toBeGreaterThan(1 << 20);

  test("requests being answered: a 1 ms timer after every slice", async () => {
    let answered = 0;
    const p = await pauses(syncWith({ answered: () => answered++ }));
    expect(p.timers).toBeGreaterThan(5);
    expect(p.immediates).toBe(0);
  });

  test("a request in flight (awaiting Redis, say): a 1 ms timer too", async () => {
    const p = await pauses(syncWith({ answered: () => 7, inFlight: () => 1 }));
    expect(p.timers).toBeGreaterThan(5);
    expect(p.immediates).toBe(0);
  });

  test("idle: mostly setImmediate, with a timer now and then so a new request gets in", async () => {
    const p = await pauses(syncWith({ answered: () => 7, inFlight: () => 0 }));
    expect(p.immediates).toBeGreaterThan(p.timers);
    expect(p.timers).toBeGreaterThan(0);
  });
});

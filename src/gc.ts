/**
 * Paces the garbage collector while requests flow: a collection for every 500 answers, at most
 * one per step of 50 ms, and one a second at low traffic.
 *
 * Two runtime behaviours make serving stall without it (docs/performance.md, "Ninth session" and
 * "Eleventh session"):
 *
 * - Bun's own collection timer slows to one run every 30 s after quiet seconds, and speeds up
 *   only when it sees its block heap grow: after 40 s idle nothing was collected for the first
 *   6.6 s of renewed load, the heap grew from 234 to 563 MB, and the collection that came then
 *   stalled serving (worst 3 s window p99 37-383 ms).
 * - JavaScriptCore sweeps the garbage a collection found (destructors of every Request,
 *   Response, header set and string) on the serving thread, starting 100 ms after the
 *   collection, in slices of about 10 ms (a slice ends after the block that crosses 10 ms) 100 ms
 *   apart until done: its IncrementalSweeper, constants compiled in. With a collection every
 *   250-900 ms those slices were adsrv's most frequent stall: 20 in 8 s at 20,000 req/s on the
 *   1M-ad catalog, 10.2-11.4 ms the longest (`perf`, serving thread). A collection before the
 *   100 ms are up re-arms that timer, so the garbage is swept by the allocator as it reuses
 *   blocks, a block at a time between requests: with a collection every 50 ms no slice came.
 *
 * So, per process: from 10,000 answers a second, a collection every step (50 ms); from 5,000, one
 * every 100 ms (the sweeper's delay: a slice may come, sweeping at most 500 requests' garbage);
 * slower, one per `everyAnswers` answers (the sweeper then comes after each, sweeping at most that
 * many requests' garbage), or one per `maxSteps` steps when anything was answered (Bun's timer's
 * once a second, without its slowing down). Nothing answered, nothing asked. `Bun.gc(false)`
 * asks; the collector picks young or full (mostly young).
 *
 * The cost: the sweeper is also what hands empty blocks back, so under steady load they are
 * reused rather than released until the load stops. Measured: RSS flat over 120 s at 20,000
 * req/s (254-284 MB, against 294-312 MB before; docs/performance.md, "Eleventh session").
 * @module
 */

export interface PacerOptions {
  /** Answers since the last collection that make a step ask for the next one. */
  readonly everyAnswers: number;
  /** Steps after which any answer makes a step ask for one. */
  readonly maxSteps: number;
}

/** 50 ms steps: half the sweeper's 100 ms (see the module comment for the rates this covers). */
export const PACER_STEP_MS = 50;
export const PACER_OPTIONS: PacerOptions = Object.freeze({ everyAnswers: 500, maxSteps: 20 });

/**
 * One step of the pacer (see the module comment). Pure of clocks, for tests; `paceCollections`
 * calls it on a timer. `answered` may wrap around (an Int32 cell): differences are taken mod 2^32,
 * so a count that went backwards reads as many answers (one collection, then counting from it).
 */
export function collectionStep(
  answered: () => number,
  collect: () => void,
  { everyAnswers, maxSteps }: PacerOptions = PACER_OPTIONS,
): () => void {
  if (!(Number.isInteger(everyAnswers) && everyAnswers >= 1 && Number.isInteger(maxSteps) && maxSteps >= 1)) {
    throw new RangeError("the pacer needs whole numbers everyAnswers >= 1 and maxSteps >= 1");
  }
  let last = answered();
  let steps = 0;
  return () => {
    steps++;
    const count = answered();
    const moved = (count - last) >>> 0;
    if (moved === 0 || (moved < everyAnswers && steps < maxSteps)) return;
    last = count;
    steps = 0;
    collect();
  };
}

/**
 * Runs `collectionStep` every `stepMs` on an unref'd timer (it never keeps the process alive).
 * `collect` defaults to `Bun.gc(false)`: it returns the allocator's freed pages (mimalloc's
 * cleanup, unforced: 0.1-0.25 ms in a scratch process, under 0.5 ms in adsrv serving the 1M-ad
 * catalog) and asks for a collection asynchronously; the collector picks young or full and runs
 * it at its next safe point. Returns a stop function.
 */
export function paceCollections(
  answered: () => number,
  stepMs = PACER_STEP_MS,
  collect: () => void = () => Bun.gc(false),
  options: PacerOptions = PACER_OPTIONS,
): () => void {
  const timer = setInterval(collectionStep(answered, collect, options), stepMs);
  timer.unref();
  return () => clearInterval(timer);
}

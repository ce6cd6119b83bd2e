/**
 * Paces the garbage collector while requests flow: a young collection for every few hundred
 * answers, at most one per step of 50 ms, and one a second at low traffic.
 *
 * Two runtime behaviours make serving stall without it (docs/performance.md, "Ninth session" and
 * "Eleventh session"):
 *
 * - Bun's own collection timer slows to one run every 30 s after quiet seconds, and speeds up
 *   only when it sees its block heap grow: after 40 s idle nothing was collected for the first
 *   6.6 s of renewed load, the heap grew from 234 to 563 MB, and the collection that came then
 *   stalled serving (worst 3 s window p99 37-383 ms).
 * - JavaScriptCore sweeps the garbage a collection found (destructors of every Request,
 *   Response, header set and string) on the serving thread, 100 ms after the collection, in one
 *   slice of up to 10 ms (its IncrementalSweeper, hard-coded). With a collection every 250-900 ms
 *   that slice was 2.5-11 ms, and it was adsrv's most frequent stall: 20 of them in 8 s at 20,000
 *   req/s (`perf`, serving thread). A collection before the 100 ms are up re-arms that timer, so
 *   the garbage is swept by the allocator as it reuses blocks, a block at a time, spread over
 *   the requests: with a collection every 50 ms the slices did not occur at all.
 *
 * So: while answers come faster than `everyAnswers` per step, a collection per step; slower, one
 * per `everyAnswers` answers (a slice then sweeps at most that many requests' garbage), or one
 * per `maxSteps` steps when anything was answered (Bun's timer's once a second, without its
 * slowing down). Nothing answered, nothing asked.
 * @module
 */

export interface PacerOptions {
  /** Answers since the last collection that make a step ask for the next one. */
  readonly everyAnswers: number;
  /** Steps after which any answer makes a step ask for one. */
  readonly maxSteps: number;
}

/** 50 ms steps: under the sweeper's 100 ms, so its slices do not come at these rates. */
export const PACER_STEP_MS = 50;
export const PACER_OPTIONS: PacerOptions = Object.freeze({ everyAnswers: 500, maxSteps: 20 });

/**
 * One step of the pacer (see the module comment). Pure of clocks, for tests; `paceCollections`
 * calls it on a timer. `answered` may wrap around (an Int32 cell): differences are taken mod 2^32.
 */
export function collectionStep(
  answered: () => number,
  collect: () => void,
  { everyAnswers, maxSteps }: PacerOptions = PACER_OPTIONS,
): () => void {
  let last = answered();
  let steps = 0;
  return () => {
    steps = Math.min(steps + 1, maxSteps);
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
 * cleanup, unforced; about 0.1 ms) and asks for a collection asynchronously; the collector picks
 * young or full and runs it at its next safe point. Returns a stop function.
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

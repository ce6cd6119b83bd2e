/**
 * Paces the garbage collector while requests flow.
 *
 * Bun's own collection timer runs every second, but after five quiet ticks it slows to one run
 * every 30 s, and it speeds up again only when it sees its block heap grow. Measured here (1M-ad
 * catalog, 32,000 req/s after 40 s idle, docs/performance.md "Ninth session"): nothing collected
 * for the first 6.6 s of renewed load, the heap grew from 234 to 563 MB, and the collection that
 * came then stalled serving: the worst 3 s window's p99 was 37-383 ms in three runs. Asking for a
 * collection once a second while requests are being answered keeps the young generation small
 * from the first second. A second without answers asks for nothing (a health probe is an answer:
 * a probed server asks at most once a second, as Bun's fast timer does).
 * @module
 */

/**
 * One step of the pacer: asks for a collection when `answered()` moved since the last step. Pure
 * of clocks, for tests; `paceCollections` calls it on a timer.
 */
export function collectionStep(answered: () => number, collect: () => void): () => void {
  let last = answered();
  return () => {
    const count = answered();
    if (count === last) return;
    last = count;
    collect();
  };
}

/**
 * Runs `collectionStep` every `intervalMs` on an unref'd timer (it never keeps the process
 * alive). `collect` defaults to `Bun.gc(false)`: it returns the allocator's freed pages
 * (mimalloc's cleanup, unforced) and asks for a collection asynchronously; the collector picks
 * young or full and runs it at its next safe point. Returns a stop function.
 */
export function paceCollections(
  answered: () => number,
  intervalMs = 1_000,
  collect: () => void = () => Bun.gc(false),
): () => void {
  const timer = setInterval(collectionStep(answered, collect), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Small helpers shared by the store tests. */
import { createLogger, type Logger } from "../../../src/telemetry/log.ts";

/** Polls `predicate` every 5 ms until it holds; throws after `timeoutMs`. */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 3_000,
  what = "condition",
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await predicate())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** A logger that keeps its lines, for assertions on what was logged. */
export function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: "debug", write: (line) => lines.push(line) }), lines };
}

/** Runs `fn` and returns how long it took to settle, and how. */
export async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown; ok: boolean }> {
  const start = performance.now();
  try {
    const value = await fn();
    return { ms: performance.now() - start, value, ok: true };
  } catch (error) {
    return { ms: performance.now() - start, error, ok: false };
  }
}

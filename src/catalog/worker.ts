/**
 * The catalog build off the serving thread: a `Worker` entry (started by offthread.ts). It
 * parses and validates a catalog (text, or UTF-8 bytes parsed piece by piece), packs the ads,
 * hashes the columns (the version) and indexes them. The columns and the index are typed arrays
 * and a few strings, posted back with their buffers transferred, so the serving thread receives
 * a snapshot's data without a million objects to copy or to collect (docs/performance.md,
 * "Fourth session").
 *
 * Paced like the serving thread's own sliced rebuild (src/sync/loop.ts): slices of SLICE_MS,
 * and a PAUSE_MS sleep after each while the server answers requests (its answered-requests
 * counter, in shared memory, moved), so that a build, which takes a core's worth of CPU for
 * seconds, leaves room to the serving thread when both compete for the same cores (measured on
 * this 2-core machine: docs/performance.md). The thread also runs at the lowest priority.
 *
 * The protocol (`BuildRequest` → `BuildReply`) is in offthread.ts.
 * @module
 */
import { setPriority } from "node:os";
import type { BuildReply, BuildRequest } from "./offthread.ts";
import { indexSteps, versionSteps } from "./snapshot.ts";
import { packSteps, textsAsBytes } from "./table.ts";
import type { ValidationResult } from "./types.ts";
import { parseBytesSteps, parseSteps } from "./validate.ts";

/** Bytes hashed per step of the source digest. */
const DIGEST_PIECE = 1 << 20;
/** Skipped entries sent back to be logged one by one (the rest are counted). */
const ISSUES_SENT = 100;
const SLICE_MS = 1;
const PAUSE_MS = 1;

declare const self: Worker;

// The lowest CPU priority for this thread only (Linux: setpriority on the calling thread): when
// the cores are busy, the serving thread runs first (reloading p99 by hand, runs side by side:
// 26 and 43 ms with it, 91 and 158 ms without). A thread the runtime starts from this one inherits it: the collector's
// helper thread, shared with the serving thread, kept priority 0 through the first load and
// reloads here (/proc/<pid>/task/*/stat), so the serving thread started it first.
try {
  setPriority(19);
} catch {
  // Not permitted here: the build runs at the process's priority.
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Sleeps taken by the current build. */
let pauses = 0;

/** Runs stepped work to the end, sleeping PAUSE_MS after each slice while `activity` moves. */
function runPaced<T>(steps: Generator<void, T>, activity: Int32Array | null): T {
  let seen = activity === null ? 0 : Atomics.load(activity, 0);
  let sliceStart = performance.now();
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
    if (activity === null || performance.now() - sliceStart < SLICE_MS) continue;
    const now = Atomics.load(activity, 0);
    if (now !== seen) {
      seen = now;
      pauses++;
      Atomics.wait(sleeper, 0, 0, PAUSE_MS);
    }
    sliceStart = performance.now();
  }
}

/** SHA-256 of bytes (hex), a MiB per step: the source's, and the canonical document's. */
function* digestSteps(bytes: Uint8Array): Generator<void, string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for (let at = 0; at < bytes.byteLength; at += DIGEST_PIECE) {
    hasher.update(bytes.subarray(at, at + DIGEST_PIECE));
    yield;
  }
  return hasher.digest("hex");
}

function build(
  request: BuildRequest,
  source: string | Uint8Array,
): { reply: BuildReply; transfer: ArrayBuffer[] } {
  pauses = 0;
  const activity = request.serving ? request.activity : null;
  const paced = <T>(steps: Generator<void, T>): T => runPaced(steps, activity);
  const answeredAtStart = activity === null ? 0 : Atomics.load(activity, 0);
  const digest = typeof source === "string" ? null : paced(digestSteps(source));
  // A document from Redis whose bytes are not those published: refused before any parsing.
  if (digest !== null && request.expectedDigest !== null && digest !== request.expectedDigest) {
    return { reply: { id: request.id, kind: "mismatch", digest }, transfer: [] };
  }
  // The same bytes as the catalog served (a source rewritten unchanged, or changed back):
  // a hash instead of a build that would end in the same version.
  if (digest !== null && digest === request.unchangedDigest) {
    return { reply: { id: request.id, kind: "same", digest }, transfer: [] };
  }
  // A full collection of this heap after the parse keeps the build's peak memory down (1M ads,
  // scripts/bench/load.ts: 1.02-1.03 GB without, 0.84-0.85 GB with), but it cannot be paced,
  // so it is taken only while the server answers nothing (an idle server) or serves nothing yet (a first
  // load). Reloading p99 by hand, runs side by side: 16 and 38 ms so, 20 and 43 ms collecting
  // always.
  const collect = (): void => {
    if (activity === null || Atomics.load(activity, 0) === answeredAtStart) Bun.gc(true);
  };
  // Once parsed (or decoded whole, for a document that is not the plain shape), the bytes are
  // not needed: their memory goes then (a detached buffer), not at the next collection of this
  // thread's heap.
  const release = (): void => {
    if (
      typeof source !== "string" &&
      source.buffer instanceof ArrayBuffer &&
      source.byteLength > 0 && // not released yet
      source.byteLength === source.buffer.byteLength
    )
      source.buffer.transfer(0);
  };
  // Bytes are parsed piece by piece, decoded one piece at a time: no string of the whole
  // document (docs/performance.md, "Tenth session").
  const result: ValidationResult =
    typeof source === "string" ? paced(parseSteps(source)) : paced(parseBytesSteps(source, release));
  release();
  const issues = result.issues.slice(0, ISSUES_SENT);
  const skipped = result.issues.length;
  if (!result.ok) {
    return {
      reply: {
        id: request.id,
        kind: "rejected",
        code: result.code,
        message: result.message,
        issues,
        skipped,
      },
      transfer: [],
    };
  }
  // The parse's garbage can go before the ads are packed.
  collect();
  const ads = result.ads.length;
  const packed = paced(packSteps(result.ads));
  // Hashed as packed (texts as strings), as a build on the serving thread hashes them.
  const version = paced(versionSteps(packed));
  const columns = textsAsBytes(packed);
  const index = paced(indexSteps(columns));
  const canonical = request.canonical ? new TextEncoder().encode(JSON.stringify({ ads: result.ads })) : null;
  const canonicalDigest =
    canonical === null || !request.canonicalDigest ? null : paced(digestSteps(canonical));
  const buffers = [
    columns.country,
    columns.lang,
    columns.hours,
    columns.plain,
    columns.pos,
    columns.extra,
    index.pool,
    index.ranges,
    canonical,
    ...columns.texts.filter((t) => typeof t !== "string"),
  ].flatMap((a) => (a === null ? [] : [a.buffer as ArrayBuffer]));
  return {
    reply: {
      id: request.id,
      kind: "built",
      version,
      ads,
      issues,
      skipped,
      columns,
      index,
      canonical,
      canonicalDigest,
      pauses,
      digest,
    },
    transfer: buffers,
  };
}

self.onmessage = (event: MessageEvent<BuildRequest>) => {
  const request = event.data;
  try {
    const source = request.text;
    (request as { text: unknown }).text = null;
    const { reply, transfer } = build(request, source);
    self.postMessage(reply, transfer);
  } catch (error) {
    const reply: BuildReply = { id: request.id, kind: "error", message: String(error).slice(0, 200) };
    self.postMessage(reply);
  }
};

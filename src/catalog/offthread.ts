/**
 * Builds catalogs on a worker thread (worker.ts), one at a time, for the sync loop: the serving
 * thread then spends its time on requests, not on parsing a million ads. A worker that fails to
 * start, crashes or answers with an error makes `build` reject; the caller builds on its own
 * thread instead (slower for requests, never wrong), and the next build starts a fresh worker.
 * @module
 */
import { type IndexData, type Snapshot, snapshotOf } from "./snapshot.ts";
import { type AdColumns, AdTable } from "./table.ts";
import type { Issue, RejectCode } from "./types.ts";

export interface BuildRequest {
  readonly id: number;
  /** The catalog document: text, or UTF-8 bytes (moved to the worker, not copied). */
  readonly text: string | Uint8Array;
  /** Whether to send the canonical document (`{"ads":[…]}` of the valid ads) back, as UTF-8. */
  readonly canonical: boolean;
  /** Whether to hash that document too (the fleet publishes it with its SHA-256). */
  readonly canonicalDigest: boolean;
  /**
   * The SHA-256 (hex) `text`'s bytes must have (a document read from Redis), or null: bytes with
   * another digest are answered `mismatch` as soon as they are hashed, and not built.
   */
  readonly expectedDigest: string | null;
  /**
   * Whether a snapshot is being served meanwhile: only then is the build paced and its heap
   * collected only while idle (a first load has nothing to protect, and the readiness probes
   * it answers would otherwise count as load).
   */
  readonly serving: boolean;
  /**
   * The server's answered-requests counter in shared memory (`Metrics.answeredCell`), or null:
   * the worker pauses between slices while it moves.
   */
  readonly activity: Int32Array | null;
  /**
   * The source digest of the catalog being served (see `Built`), or null: when `text` is bytes
   * with this digest, the worker answers `same` without parsing them.
   */
  readonly unchangedDigest: string | null;
}

interface Counts {
  readonly id: number;
  /** The first skipped entries (up to 100), for the log. */
  readonly issues: readonly Issue[];
  /** All skipped entries. */
  readonly skipped: number;
}

export type BuildReply =
  | (Counts & { readonly kind: "rejected"; readonly code: RejectCode; readonly message: string })
  | (Counts & {
      readonly kind: "built";
      readonly version: string;
      readonly ads: number;
      readonly columns: AdColumns;
      readonly index: IndexData;
      readonly canonical: Uint8Array | null;
      /** SHA-256 (hex) of `canonical` when asked for, hashed on the worker (for the fleet's publish). */
      readonly canonicalDigest: string | null;
      /** Sleeps the paced build took (0 when not serving or the server was idle). */
      readonly pauses: number;
      /** SHA-256 of the source's bytes (hex), or null when the source was a string. */
      readonly digest: string | null;
    })
  /** The source's bytes have `unchangedDigest`: not parsed, nothing built. */
  | { readonly id: number; readonly kind: "same"; readonly digest: string }
  /** The bytes do not have `expectedDigest` (their own is `digest`): not parsed, nothing built. */
  | { readonly id: number; readonly kind: "mismatch"; readonly digest: string }
  | { readonly id: number; readonly kind: "error"; readonly message: string };

/** A build's outcome, with the snapshot made from a `built` reply. */
export type Built =
  | Exclude<BuildReply, { kind: "built" } | { kind: "error" }>
  | (Counts & {
      readonly kind: "built";
      readonly snapshot: Snapshot;
      readonly ads: number;
      readonly canonical: Uint8Array | null;
      readonly canonicalDigest: string | null;
      readonly pauses: number;
      readonly digest: string | null;
    });

/** See `BuildRequest`. */
export interface BuildOptions {
  readonly canonical: boolean;
  /** See `BuildRequest` (default false). */
  readonly canonicalDigest?: boolean;
  /** See `BuildRequest` (default null). */
  readonly expectedDigest?: string | null;
  /** Whether a snapshot is served, asked when the build starts (builds queue one at a time). */
  readonly serving?: () => boolean;
  /**
   * The source digest of the catalog served, asked when the build starts: bytes with that digest
   * are answered `same`, not built (a source rewritten with the same content costs a hash).
   */
  readonly unchangedDigest?: () => string | null;
}

export interface OffThreadBuilder {
  /**
   * Builds `text` (a string, or UTF-8 bytes: these are moved to the worker when they own their
   * buffer, and are unusable here afterwards). Rejects when the worker fails (start, crash, error).
   */
  build(text: string | Uint8Array, options: BuildOptions, loadedAt: () => number): Promise<Built>;
  /** Stops the worker: the build in progress and any later one reject. */
  close(): void;
}

export class WorkerFailed extends Error {
  override readonly name = "WorkerFailed";
  /** The worker gave no answer in time (slow, not necessarily broken). */
  readonly timedOut: boolean;

  constructor(message: string, options: { readonly timedOut?: boolean } = {}) {
    super(message);
    this.timedOut = options.timedOut ?? false;
  }
}

/**
 * The worker's module: beside this one in the source tree. In the compiled executable (built
 * with it as a second entry point, scripts/build.ts) modules live under `/$bunfs/root/`, and a
 * worker is found by its source path from the project root; a URL made from this module's own
 * (`/$bunfs/root/adsrv`) is not (checked with a scratch build: ModuleNotFound).
 */
const WORKER_URL = import.meta.url.includes("/$bunfs/")
  ? "./src/catalog/worker.ts"
  : new URL("./worker.ts", import.meta.url).href;

export interface OffThreadOptions {
  /** The worker's module (default: worker.ts, as found in the source tree or the executable). */
  readonly workerUrl?: string;
  /** See `BuildRequest.activity`. */
  readonly activity?: Int32Array | null;
  /**
   * A build not answered within this many ms fails (default 120,000, a chosen bound: a 1M-ad
   * catalog of 144 MiB builds in about 2 s on an idle server here, and paced under load the
   * reload runs swapped a new one in every 10-20 s; the default byte cap is 256 MiB), so a stuck
   * worker never stops the sync loop.
   */
  readonly timeoutMs?: number;
}

export function createOffThreadBuilder(options: OffThreadOptions = {}): OffThreadBuilder {
  const workerUrl = options.workerUrl ?? WORKER_URL;
  const activity = options.activity ?? null;
  const timeoutMs = options.timeoutMs ?? 120_000;
  let worker: Worker | null = null;
  let nextId = 0;
  let pending: {
    readonly id: number;
    readonly resolve: (reply: BuildReply) => void;
    readonly reject: (error: Error) => void;
    readonly timer: ReturnType<typeof setTimeout>;
  } | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  const fail = (message: string, timedOut = false): void => {
    worker?.terminate();
    worker = null;
    const p = pending;
    pending = null;
    if (p === null) return;
    clearTimeout(p.timer);
    p.reject(new WorkerFailed(message, { timedOut }));
  };

  const started = (): Worker => {
    if (worker !== null) return worker;
    const w = new Worker(workerUrl);
    w.unref();
    w.onmessage = (event: MessageEvent<BuildReply>) => {
      const p = pending;
      if (p === null || event.data.id !== p.id) return;
      pending = null;
      clearTimeout(p.timer);
      p.resolve(event.data);
    };
    w.onerror = (event) => fail(`catalog worker failed: ${event.message}`);
    w.addEventListener("close", () => {
      if (worker === w) fail("catalog worker exited");
    });
    worker = w;
    return w;
  };

  const once = (
    text: string | Uint8Array,
    { canonical, canonicalDigest, expectedDigest, serving, unchangedDigest }: BuildOptions,
  ): Promise<BuildReply> =>
    new Promise<BuildReply>((resolve, reject) => {
      if (closed) {
        reject(new WorkerFailed("catalog worker closed"));
        return;
      }
      const id = nextId++;
      // Not unref'd: while a build is pending the event loop is held, so it sleeps until the
      // answer. (With nothing holding it, Bun spun the waiting thread at 100 % of a core: a
      // review helper measured a 300k-ad build at twice its wall time in CPU.)
      const timer = setTimeout(
        () => fail(`catalog worker gave no answer within ${timeoutMs} ms`, true),
        timeoutMs,
      );
      pending = { id, resolve, reject, timer };
      try {
        const request: BuildRequest = {
          id,
          text,
          canonical,
          canonicalDigest: canonicalDigest ?? false,
          expectedDigest: expectedDigest ?? null,
          serving: serving?.() ?? false,
          activity,
          unchangedDigest: unchangedDigest?.() ?? null,
        };
        // Moved only when the view owns a whole buffer; else copied (or shared: a SharedArrayBuffer).
        const owned =
          typeof text !== "string" &&
          text.buffer instanceof ArrayBuffer &&
          text.byteOffset === 0 &&
          text.byteLength === text.buffer.byteLength;
        started().postMessage(request, owned ? [text.buffer as ArrayBuffer] : []);
      } catch (error) {
        fail(`catalog worker could not start: ${String(error).slice(0, 200)}`);
      }
    });

  return {
    build(text, options, loadedAt) {
      // One build at a time: the worker has one thread, and the sync loop runs one anyway.
      const run = queue.then(async (): Promise<Built> => {
        const reply = await once(text, options);
        // A worker per build: its heap, which held the parsed catalog, goes with it.
        worker?.terminate();
        worker = null;
        if (reply.kind === "error") throw new WorkerFailed(reply.message);
        if (reply.kind !== "built") return reply;
        const { columns, index, version, ...rest } = reply;
        return { ...rest, snapshot: snapshotOf(new AdTable(columns), index, version, loadedAt()) };
      });
      queue = run.catch(() => {});
      return run;
    },
    close() {
      closed = true;
      fail("catalog worker closed");
    },
  };
}

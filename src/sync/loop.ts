/**
 * Keeps the live snapshot in step with the catalog source.
 *
 * At start: read the source; if that fails, fall back to the last good copy in the state dir.
 * Then every refresh interval: read again (conditional for URLs, stamp check for files).
 * A failure of any kind keeps the current snapshot, is logged with its reason, and is retried
 * with backoff (1 s doubling, never longer than the interval). A validated catalog is built
 * off to the side, swapped in whole, and saved to the state dir.
 * @module
 */
import { loadLastGood, saveLastGood } from "../catalog/lastgood.ts";
import { type Built, type OffThreadBuilder, WorkerFailed } from "../catalog/offthread.ts";
import {
  buildSnapshot,
  buildSnapshotChunked,
  catalogVersion,
  type Snapshot,
  versionChunked,
} from "../catalog/snapshot.ts";
import type { Issue, RejectCode, ValidationResult } from "../catalog/types.ts";
import {
  type FetchFailure,
  type FetchLimits,
  lazyBody,
  readSource,
  type Validators,
} from "../catalog/upstream.ts";
import { parseCatalog, parseCatalogChunked } from "../catalog/validate.ts";
import { sha256Hex } from "../crypto/sha256.ts";
import type { Logger } from "../telemetry/log.ts";
import type { CatalogHolder } from "./holder.ts";

export type SyncOutcome =
  | {
      readonly kind: "updated";
      readonly version: string;
      readonly ads: number;
      readonly skipped: number;
      readonly from: "source" | "state_dir" | "builtin" | "redis";
    }
  | { readonly kind: "unchanged" }
  | {
      readonly kind: "failed";
      readonly failure: FetchFailure | RejectCode | "state_dir_empty" | "worker" | "digest";
      readonly message: string;
    };

export interface SyncOptions {
  readonly source: string;
  readonly refreshMs: number;
  readonly limits: FetchLimits;
  readonly stateDir: string | null;
  readonly holder: CatalogHolder;
  readonly log: Logger;
  readonly now: () => number;
  /** Called after every attempt: tests wait on it instead of sleeping. */
  readonly onOutcome?: (outcome: SyncOutcome) => void;
  /** First retry delay after a failure, in ms (default 1000). */
  readonly initialBackoffMs?: number;
  /**
   * Replaces the solo attempt (read the source, apply) on each tick: the fleet coordinator
   * (src/sync/fleet.ts) decides whether this instance fetches or loads what another published.
   */
  readonly coordinator?: { tick(): Promise<SyncOutcome> };
  /**
   * Requests answered so far, and requests in flight: between two slices of a rebuild the sync
   * waits 1 ms while the first grows or the second is not 0 (requests get the loop), and hardly
   * at all otherwise (see `pause`).
   */
  readonly answered?: () => number;
  readonly inFlight?: () => number;
  /**
   * Builds big catalogs on a worker thread while a snapshot is live (see `prepare`); without
   * it, or when it fails, they are built here in slices.
   */
  readonly builder?: OffThreadBuilder | null;
}

/** A catalog text parsed and validated: here (ads), or on the worker (a built snapshot). */
type Prepared =
  | { readonly kind: "ads"; readonly result: ValidationResult; readonly chunked: boolean }
  | { readonly kind: "built"; readonly built: Built }
  | { readonly kind: "worker_failed"; readonly message: string };

/** A source read and validated, not yet applied. */
export type Fetched =
  | { readonly kind: "unchanged" }
  | { readonly kind: "failed"; readonly outcome: SyncOutcome }
  | {
      readonly kind: "valid";
      readonly prepared: Prepared;
      readonly bytes: number;
      readonly validators: Validators;
    };

/**
 * While a snapshot is live, a catalog text of this many characters or more is parsed,
 * validated and indexed in slices of SLICE_MS, yielding to the event loop between slices, so
 * requests keep being answered during the rebuild (a million ads take a few seconds of CPU).
 * The first load, with nothing to serve yet, and small catalogs run in one go (faster overall).
 *
 * Short slices and a 1 ms timer between them: a client with one request in flight per connection
 * gets at most one answer per connection per loop turn, so the slice length caps the rate served
 * during a rebuild; and in Bun (a scratch experiment) `setImmediate` between slices starved the
 * sockets (p50 755 ms for a 5k req/s load beside a busy loop of 2 ms slices) and `setTimeout(0)`
 * let them wait (p99 11.5 ms) where a 1 ms timer did not (p99 2 ms). With a 1M-ad catalog
 * replaced every 3 s under 25k req/s (`scripts/bench/run`'s reload scenario, run by hand),
 * serving p99 was 2.2-6.2 s with 2 ms slices and a 0 ms timer, 0.2-0.65 s with these (the rebuild
 * still needs more CPU than the serving thread has left: see docs/performance.md). The 1 ms wait
 * only while requests are being answered (see `pause`): with it always, a 1M-ad rebuild on an
 * idle server took 6.0 s of wall time against 2.2 s without pauses; with the rule, a replaced
 * 1M-ad file was live 4.0-4.5 s after the change (refresh 1 s), as with the earlier 2 ms slices
 * and `setTimeout(0)`.
 */
const CHUNKED_FROM_CHARS = 1 << 20;
const SLICE_MS = 0.5;
/** A shared document whose bytes do not have the digest it was published with. */
const DIGEST_MISMATCH = "the catalog stored in Redis fails its digest: not loaded";
/** Longest run of slices without a timer pause, so requests arriving at an idle server get in. */
const IDLE_POLL_MS = 8;

export class CatalogSync {
  private validators: Validators | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private backoffMs: number;
  private stopped = false;
  private running: Promise<SyncOutcome> | null = null;
  private answeredAtPause = 0;
  /** Set when the catalog worker failed once: builds then run on this thread. */
  private workerFailed = false;
  /**
   * The source digest (SHA-256 of its bytes) of a worker-built catalog and the snapshot it is
   * equivalent to: while that snapshot is served, the worker answers the same bytes with `same`.
   */
  private sourceDigest: { readonly snapshot: Snapshot; readonly digest: string } | null = null;
  private timerPauseAt = 0;

  /**
   * Between two slices of a rebuild: a 1 ms timer, which lets pending requests run, when
   * requests were answered since the previous pause or are in flight, or IDLE_POLL_MS went by
   * without one; else `setImmediate`, which does not poll the sockets but costs no wait (an idle
   * server rebuilds at about full speed, and a request that arrives then waits at most
   * IDLE_POLL_MS).
   */
  private readonly pause = (): Promise<void> => {
    const answered = this.options.answered?.() ?? 0;
    // In flight too: a request awaiting Redis or a JWT key is answered only later.
    const busy = answered !== this.answeredAtPause || (this.options.inFlight?.() ?? 0) > 0;
    this.answeredAtPause = answered;
    const t = performance.now();
    if (busy || t - this.timerPauseAt >= IDLE_POLL_MS) {
      this.timerPauseAt = t;
      return new Promise((resolve) => setTimeout(resolve, 1));
    }
    return new Promise((resolve) => setImmediate(resolve));
  };

  constructor(private readonly options: SyncOptions) {
    this.backoffMs = options.initialBackoffMs ?? 1_000;
  }

  /**
   * Serves the state dir's copy at once if there is one (a slow or dead source then does not
   * delay serving), reads the source, then keeps polling in the background.
   */
  async start(): Promise<SyncOutcome> {
    if (this.options.stateDir !== null) await this.loadFromStateDir();
    let outcome: SyncOutcome;
    try {
      outcome = await this.refresh();
    } catch (error) {
      // Whatever went wrong, polling must go on: a crash here would freeze the catalog for good.
      outcome = { kind: "failed", failure: "read", message: `sync error: ${String(error).slice(0, 200)}` };
      this.report(outcome);
    }
    this.schedule(outcome);
    return outcome;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One attempt now. Concurrent calls share the attempt in progress. */
  refresh(): Promise<SyncOutcome> {
    this.running ??= (this.options.coordinator ? this.options.coordinator.tick() : this.attempt()).finally(
      () => {
        this.running = null;
      },
    );
    return this.running;
  }

  private schedule(last: SyncOutcome): void {
    if (this.stopped) return;
    const interval = this.options.refreshMs;
    let delay = interval;
    if (last.kind === "failed") {
      delay = Math.min(this.backoffMs, interval);
      this.backoffMs = Math.min(this.backoffMs * 2, interval);
    } else {
      this.backoffMs = this.options.initialBackoffMs ?? 1_000;
    }
    this.timer = setTimeout(() => {
      this.refresh().then(
        (outcome) => this.schedule(outcome),
        () => this.schedule({ kind: "failed", failure: "read", message: "unexpected sync error" }),
      );
    }, delay);
    this.timer.unref?.();
  }

  /** The solo attempt: read the source, validate, apply. */
  attempt(): Promise<SyncOutcome> {
    return this.fetchValidated().then((fetched) => this.applyFetched(fetched, "source"));
  }

  /**
   * Reads and validates the source without applying it (a rejected document is reported).
   * `forPublish`: the fleet will publish it, so a build on the worker also returns its canonical
   * document (see `canonicalDoc`). `whole`: read it without validators and build it even when its
   * bytes are those served (the fleet lost its copy: the canonical document is then made on the
   * worker, not serialized from the served catalog on this thread, 0.5 s for 1M ads).
   */
  async fetchValidated(forPublish = false, whole = false): Promise<Fetched> {
    const { source, limits } = this.options;
    const fetched = await readSource(source, whole ? null : this.validators, limits);
    if (fetched.kind === "unchanged") return { kind: "unchanged" };
    if (fetched.kind === "failed") {
      return {
        kind: "failed",
        outcome: { kind: "failed", failure: fetched.failure, message: fetched.message },
      };
    }
    const prepared = await this.prepare(fetched, "source", { forPublish, whole });
    this.logIssues(prepared);
    const rejected = rejectionOf(prepared);
    if (rejected !== null) {
      return {
        kind: "failed",
        outcome: {
          kind: "failed",
          failure: rejected.code,
          message: `${rejected.message} (${fetched.bytes} bytes)`,
        },
      };
    }
    return { kind: "valid", prepared, bytes: fetched.bytes, validators: fetched.validators };
  }

  /** Applies what `fetchValidated` returned (swap, save) and reports the outcome. */
  async applyFetched(fetched: Fetched, from: "source" | "redis"): Promise<SyncOutcome> {
    if (fetched.kind === "unchanged") return this.report({ kind: "unchanged" });
    if (fetched.kind === "failed") return this.report(fetched.outcome);
    const outcome = await this.accept(fetched.prepared, from, fetched.bytes, false);
    // Remember validators only for an accepted document, so a rejected one is read again; and
    // not for bytes found `same` as a snapshot no longer served (another was swapped in while
    // the worker hashed them, by the fleet): those are read again next time.
    if (outcome.kind !== "failed" && from === "source" && !this.sameAsReplaced(fetched.prepared))
      this.validators = fetched.validators;
    return this.report(outcome);
  }

  /**
   * Validates a catalog document from another instance (Redis) and applies it, if its bytes have
   * the digest it was published with (failure `digest` otherwise). A big document's bytes go to
   * the worker as a source body's do; the worker hashes them first and answers `mismatch` before
   * parsing anything. A small one, or one built here after the worker failed, is hashed here. So
   * this thread neither decodes nor hashes a big document (1M ads: about 170 ms of blocking,
   * measured).
   */
  async applyShared(doc: { readonly data: Uint8Array; readonly sha256: string }): Promise<SyncOutcome> {
    const { data, sha256 } = doc;
    const bytes = data.byteLength;
    const body = lazyBody(data);
    // On the worker, bytes with another digest are answered `mismatch` before any parsing (see
    // `rejectionOf`). Built here, they are still here: bytes moved to a worker that failed come
    // back as `worker_failed`, and nothing is built from them.
    const prepared = await this.prepare(body, "redis", { expectedDigest: sha256 });
    if (prepared.kind === "ads" && sha256Hex(data) !== sha256) {
      return this.report({
        kind: "failed",
        failure: "digest",
        message: `${DIGEST_MISMATCH} (${bytes} bytes)`,
      });
    }
    return this.report(await this.accept(prepared, "redis", bytes));
  }

  /**
   * Parses and validates. A big text: on the worker thread, which also builds the snapshot, so
   * this thread's heap never holds the parsed catalog; if there is no worker or it fails, here:
   * in slices while a snapshot is live, else at once. A small text: here at once.
   */
  private async prepare(
    source: string | { readonly data: Uint8Array; readonly text: string },
    from: "source" | "redis" | "state_dir",
    {
      forPublish = false,
      expectedDigest = null,
      whole = false,
    }: { forPublish?: boolean; expectedDigest?: string | null; whole?: boolean } = {},
  ): Promise<Prepared> {
    const { holder, log, builder, stateDir, now } = this.options;
    const live = holder.current;
    // For the copy saved in the state dir, and for the fleet's shared copy.
    const canonical = (stateDir !== null && from !== "state_dir") || forPublish;
    // A read body: its bytes (for the worker), and its text decoded only if built here.
    const body = typeof source === "string" ? source : source.data;
    const size = typeof body === "string" ? body.length : body.byteLength;
    const text = (): string => (typeof source === "string" ? source : source.text);
    if (size < CHUNKED_FROM_CHARS) return { kind: "ads", result: parseCatalog(text()), chunked: false };
    if (builder && !this.workerFailed) {
      log.debug("building the catalog on the worker thread", { size, from });
      try {
        const options = {
          canonical,
          canonicalDigest: forPublish,
          expectedDigest,
          serving: () => holder.current !== null,
          unchangedDigest: () =>
            !whole && this.sourceDigest !== null && this.sourceDigest.snapshot === holder.current
              ? this.sourceDigest.digest
              : null,
        };
        const built = await builder.build(body, options, now);
        if (built.kind === "built")
          log.debug("catalog built on the worker thread", { ads: built.ads, pauses: built.pauses });
        if (built.kind === "same") log.debug("catalog bytes unchanged: not built", { size, from });
        return { kind: "built", built };
      } catch (error) {
        const message = `catalog worker failed: ${String(error).slice(0, 200)}`;
        // Stopping closes the worker: not a failure of the worker.
        if (this.stopped) return { kind: "worker_failed", message: "stopped during a catalog build" };
        if (error instanceof WorkerFailed && error.timedOut) {
          // Slow, not broken: the next build uses a fresh worker again.
          log.error("catalog worker timed out; the next build starts a new one", { error: message });
        } else {
          this.workerFailed = true;
          log.error("catalog worker failed; catalogs are built on the serving thread from now on", {
            error: message,
          });
        }
        // Bytes moved to the worker are gone (a detached buffer): this attempt fails and is
        // retried with backoff. A string, or bytes that were copied, is built here now.
        if (typeof body !== "string" && body.byteLength === 0) return { kind: "worker_failed", message };
      }
    }
    if (live === null) return { kind: "ads", result: parseCatalog(text()), chunked: false };
    log.debug("rebuilding the catalog in slices", { size, from });
    return { kind: "ads", result: await parseCatalogChunked(text(), this.pause, SLICE_MS), chunked: true };
  }

  /** Reports an outcome decided elsewhere (the fleet coordinator): logs and `onOutcome`. */
  reportOutcome(outcome: SyncOutcome): SyncOutcome {
    return this.report(outcome);
  }

  /** Whether the worker found these bytes `same` as a snapshot that is no longer served. */
  private sameAsReplaced(prepared: Prepared): boolean {
    return (
      prepared.kind === "built" &&
      prepared.built.kind === "same" &&
      this.sourceDigest?.snapshot !== this.options.holder.current
    );
  }

  private logIssues(prepared: Prepared): void {
    const { log } = this.options;
    const { issues, skipped } = issuesOf(prepared);
    for (const issue of issues.slice(0, 100)) {
      log.warn("catalog entry skipped", {
        index: issue.index,
        id: issue.id,
        reason: issue.code,
        detail: issue.message,
      });
    }
    if (skipped > 100) log.warn("more catalog entries skipped", { count: skipped - 100 });
  }

  async loadFromStateDir(): Promise<SyncOutcome> {
    const dir = this.options.stateDir;
    const text = dir === null ? null : await loadLastGood(dir);
    if (text === null) {
      this.options.log.info("no saved catalog in the state dir yet", { dir });
      return { kind: "failed", failure: "state_dir_empty", message: "no saved catalog in the state dir" };
    }
    return this.report(await this.accept(await this.prepare(text, "state_dir"), "state_dir", text.length));
  }

  private async accept(
    prepared: Prepared,
    from: "source" | "state_dir" | "redis",
    bytes: number,
    logIssues = true,
  ): Promise<SyncOutcome> {
    const { holder, log, now, stateDir } = this.options;
    if (logIssues) this.logIssues(prepared);
    const rejected = rejectionOf(prepared);
    if (rejected !== null) {
      return { kind: "failed", failure: rejected.code, message: `${rejected.message} (${bytes} bytes)` };
    }
    const save = (doc: string | Uint8Array | (() => string)): Promise<void> | undefined =>
      stateDir === null || from === "state_dir"
        ? undefined
        : saveLastGood(stateDir, typeof doc === "function" ? doc() : doc).catch((error: unknown) => {
            log.error("cannot save the catalog to the state dir", { error: String(error).slice(0, 200) });
          });
    if (prepared.kind === "worker_failed") throw new Error("unreachable: a failed build was accepted");
    if (prepared.kind === "built") {
      const built = prepared.built;
      if (built.kind !== "built") return { kind: "unchanged" };
      const current = holder.current;
      if (current?.version === built.snapshot.version) {
        // Other bytes, the same catalog: the next copy of these bytes is not built either.
        if (current !== null && built.digest !== null)
          this.sourceDigest = { snapshot: current, digest: built.digest };
        return { kind: "unchanged" };
      }
      holder.swap(built.snapshot);
      this.sourceDigest = built.digest === null ? null : { snapshot: built.snapshot, digest: built.digest };
      if (built.canonical !== null) await save(built.canonical);
      return {
        kind: "updated",
        version: built.snapshot.version,
        ads: built.ads,
        skipped: built.skipped,
        from,
      };
    }
    const { result, chunked } = prepared;
    if (!result.ok) throw new Error("unreachable: a rejected catalog was accepted");
    let snapshot: Snapshot;
    if (chunked) {
      // Version first: an unchanged catalog costs no index.
      const { columns, version } = await versionChunked(result.ads, this.pause, SLICE_MS);
      if (holder.current?.version === version) return { kind: "unchanged" };
      snapshot = await buildSnapshotChunked(columns, version, now(), this.pause, SLICE_MS);
      if (holder.current?.version === snapshot.version) return { kind: "unchanged" };
    } else {
      snapshot = buildSnapshot(result.ads, now());
      if (holder.current?.version === snapshot.version) return { kind: "unchanged" };
    }
    holder.swap(snapshot);
    await save(() => JSON.stringify({ ads: result.ads }));
    return {
      kind: "updated",
      version: snapshot.version,
      ads: result.ads.length,
      skipped: result.issues.length,
      from,
    };
  }

  private report(outcome: SyncOutcome): SyncOutcome {
    const { log } = this.options;
    if (outcome.kind === "updated") {
      log.info("catalog loaded", {
        version: outcome.version,
        ads: outcome.ads,
        skipped: outcome.skipped,
        from: outcome.from,
      });
    } else if (outcome.kind === "failed" && this.stopped) {
      log.debug("catalog sync stopped", { failure: outcome.failure, detail: outcome.message });
    } else if (outcome.kind === "failed") {
      const serving = this.options.holder.current?.version ?? null;
      log.warn("catalog sync failed; keeping the last good catalog", {
        failure: outcome.failure,
        detail: outcome.message,
        serving,
      });
    } else {
      log.debug("catalog unchanged");
    }
    this.options.onOutcome?.(outcome);
    return outcome;
  }
}

/** Why a prepared catalog was refused (or could not be built), or null when it was not. */
function rejectionOf(
  prepared: Prepared,
): { readonly code: RejectCode | "worker" | "digest"; readonly message: string } | null {
  if (prepared.kind === "worker_failed") return { code: "worker", message: prepared.message };
  if (prepared.kind === "built") {
    const { built } = prepared;
    if (built.kind === "mismatch") return { code: "digest", message: DIGEST_MISMATCH };
    return built.kind === "rejected" ? built : null;
  }
  return prepared.result.ok ? null : prepared.result;
}

/** The first skipped entries, and how many there were. */
function issuesOf(prepared: Prepared): { readonly issues: readonly Issue[]; readonly skipped: number } {
  if (prepared.kind === "worker_failed") return { issues: [], skipped: 0 };
  if (prepared.kind === "built")
    return prepared.built.kind === "same" || prepared.built.kind === "mismatch"
      ? { issues: [], skipped: 0 }
      : prepared.built;
  return { issues: prepared.result.issues, skipped: prepared.result.issues.length };
}

/**
 * The canonical document (`{"ads":[…]}` of the valid ads) of a valid fetch and its version, for
 * the fleet to publish: the worker's UTF-8 bytes (asked for with `fetchValidated(true)`), or
 * serialized here. Null when the fetch was not valid or the worker was not asked for it.
 */
export function canonicalDoc(
  fetched: Fetched,
): { readonly version: string; readonly doc: string | Uint8Array; readonly sha256?: string } | null {
  if (fetched.kind !== "valid") return null;
  const { prepared } = fetched;
  if (prepared.kind === "built") {
    const built = prepared.built;
    if (built.kind !== "built" || built.canonical === null) return null;
    const { canonical, canonicalDigest } = built;
    return {
      version: built.snapshot.version,
      doc: canonical,
      ...(canonicalDigest === null ? {} : { sha256: canonicalDigest }),
    };
  }
  if (prepared.kind === "ads" && prepared.result.ok) {
    const { ads } = prepared.result;
    return { version: catalogVersion(ads), doc: JSON.stringify({ ads }) };
  }
  return null;
}

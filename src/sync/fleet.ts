/**
 * One catalog for the whole fleet, through Redis.
 *
 * Each tick (every refresh interval):
 *   1. version check: a stored version that differs from the one served is loaded from Redis
 *      (catches a missed pub/sub message), unless it proved to hold the catalog served (an
 *      older release's version of it);
 *   2. the instance that takes the lock fetches the source and validates it, then publishes the
 *      canonical validated catalog under its content hash (one fenced script: a stale lock
 *      holder cannot overwrite) and applies it itself. The lock is a lease of just under one
 *      interval and is kept after a successful fetch, so the fleet fetches once per interval
 *      however many instances tick; if its holder dies, it expires and another instance
 *      fetches on the next interval. A failed fetch releases it at once.
 * Every instance also loads a new version as soon as it is announced on the channel.
 * A document that fails validation is never published. When Redis fails for two ticks in a
 * row (or at start-up with nothing to serve) the instance reads the source itself ("solo")
 * and keeps doing so until Redis answers again; then it rejoins the shared catalog.
 * @module
 */

import type { CatalogStore } from "../store/catalog.ts";
import { StoreError } from "../store/redis.ts";
import type { Logger } from "../telemetry/log.ts";
import type { CatalogHolder } from "./holder.ts";
import { type CatalogSync, canonicalDoc, type SyncOutcome } from "./loop.ts";

export interface FleetOptions {
  readonly store: CatalogStore;
  readonly holder: CatalogHolder;
  readonly log: Logger;
  readonly now: () => number;
  /** Identifies this instance in the lock value (host:pid). */
  readonly instanceId: string;
  /** Redis failures in a row after which this instance reads the source itself. */
  readonly soloAfter?: number;
  readonly onStoreError?: (error: StoreError) => void;
}

export class FleetSync {
  private sync: CatalogSync | null = null;
  private failures = 0;
  private solo = false;
  private unsubscribe: (() => void) | null = null;
  private loading: Promise<SyncOutcome> | null = null;
  /**
   * A stored version whose document turned out to be the catalog served under another version
   * (published by a release that computes versions differently, during a rolling upgrade): not
   * loaded again while that version is served, or every tick would read and hash it again.
   * Versions, not the snapshot: an alias must not keep an old snapshot alive.
   */
  private alias: { readonly served: string; readonly stored: string } | null = null;

  constructor(private readonly options: FleetOptions) {}

  /** Binds to the CatalogSync whose coordinator this is, and listens for announcements. */
  attach(sync: CatalogSync): void {
    this.sync = sync;
    this.unsubscribe = this.options.store.onVersion((version) => {
      if (!this.serves(version)) void this.loadShared().catch(() => {});
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  async tick(): Promise<SyncOutcome> {
    const sync = this.bound();
    try {
      const stored = await this.options.store.readVersion();
      const shared = stored !== null && !this.serves(stored) ? await this.loadShared() : null;
      const outcome = await this.fetchIfLockHolder(stored);
      if (this.solo) this.options.log.info("Redis answers again; rejoining the shared catalog");
      this.failures = 0;
      this.solo = false;
      return outcome ?? shared ?? { kind: "unchanged" };
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      this.options.onStoreError?.(error);
      this.failures++;
      const nothingServed = this.options.holder.current === null;
      if (!this.solo && (this.failures >= (this.options.soloAfter ?? 2) || nothingServed)) {
        this.solo = true;
        this.options.log.warn("Redis unavailable; reading the catalog source directly until it returns", {
          kind: error.kind,
        });
      }
      if (this.solo) return sync.attempt();
      return sync.reportOutcome({
        kind: "failed",
        failure: "read",
        message: `Redis ${error.kind}: catalog check skipped`,
      });
    }
  }

  /** Whether the catalog served is the one stored as `version` (its own, or an alias). */
  private serves(version: string): boolean {
    const current = this.options.holder.current;
    if (current === null) return false;
    return (
      version === current.version || (this.alias?.served === current.version && this.alias.stored === version)
    );
  }

  private bound(): CatalogSync {
    if (this.sync === null) throw new Error("FleetSync used before attach()");
    return this.sync;
  }

  /** Reads the stored document and applies it (re-validated). Concurrent calls share one load. */
  private loadShared(): Promise<SyncOutcome> {
    this.loading ??= (async () => {
      try {
        const doc = await this.options.store.readDoc();
        if (doc === null || doc.version === this.options.holder.current?.version)
          return { kind: "unchanged" } as const;
        const outcome = await this.bound().applyShared(doc);
        const served = this.options.holder.current;
        if (outcome.kind === "unchanged" && served !== null && served.version !== doc.version)
          this.alias = { served: served.version, stored: doc.version };
        // A stored copy that fails its digest is Redis failing, as an undecodable one is: the
        // tick counts it, and reads the source itself (solo) as it would when Redis is down.
        if (outcome.kind === "failed" && outcome.failure === "digest")
          throw new StoreError("reply", "stored catalog fails its digest");
        return outcome;
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  /** Takes the lock; the holder fetches, validates, publishes, applies and releases. */
  private async fetchIfLockHolder(stored: string | null): Promise<SyncOutcome | null> {
    const { store, holder, log, now } = this.options;
    const token = await store.tryLock(this.options.instanceId);
    if (token === null) return null;
    const sync = this.bound();
    let keep = false;
    try {
      // Redis has nothing (it lost its data, say): the source is read whole, even if unchanged,
      // so that the document published is the worker's, not the served catalog serialized here.
      const fetched = await sync.fetchValidated(true, stored === null);
      keep = fetched.kind !== "failed";
      const applied = await sync.applyFetched(fetched, "source");
      const version = holder.current?.version;
      // Publish a document this tick took from the source, or, when Redis has nothing and the
      // source could not be read, what this instance serves. Never otherwise: a stored version
      // this build could not load must not be replaced by an older one.
      const fresh = fetched.kind === "valid" && applied.kind !== "failed";
      if (version === undefined || version === stored || !(fresh || stored === null)) return applied;
      // The canonical validated catalog, never the raw body: what is stored has passed validation.
      // The fetched document when it is what is served now (a load from Redis may have swapped
      // meanwhile), else what is served.
      const fetchedDoc = fresh ? canonicalDoc(fetched) : null;
      const { doc, sha256 } =
        fetchedDoc !== null && fetchedDoc.version === version
          ? fetchedDoc
          : { doc: JSON.stringify({ ads: holder.current?.ads.toArray() ?? [] }), sha256: undefined };
      const published = await store.publish({ token, version, doc, sha256, fetchedAt: now() });
      if (published === "lost_lock")
        log.warn("catalog fetch lock lost before publishing; another instance will publish");
      else if (published === "published") log.info("catalog published to the fleet", { version });
      return applied;
    } finally {
      if (!keep) await store.release(token).catch(() => false);
    }
  }
}

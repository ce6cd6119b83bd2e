/**
 * `startServer(config, deps)`: the catalog sync plus the HTTP listener, as a library.
 * Bun.serve only wires the route functions of http/routes.ts.
 * @module
 */
import { constants } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import openapiDocument from "../openapi.json";
import { startAdminServer } from "./admin/server.ts";
import { KeyStore } from "./auth/apikey.ts";
import { Gate } from "./auth/gate.ts";
import { createJwtVerifier } from "./auth/jwt.ts";
import { createOffThreadBuilder } from "./catalog/offthread.ts";
import sample from "./catalog/sample-catalog.json";
import { buildSnapshot } from "./catalog/snapshot.ts";
import { validateCatalog } from "./catalog/validate.ts";
import { type Config, ConfigError, decodeImpressionKey } from "./config.ts";
import { eligible } from "./decision/decide.ts";
import { paceCollections } from "./gc.ts";
import { clientAddress, isLoopback, requestIds } from "./http/edge.ts";
import { problem } from "./http/problem.ts";
import { RateLimiter } from "./http/ratelimit.ts";
import { makeRoutes, type PlayerDecisions, playerCandidates, storeErrorKind } from "./http/routes.ts";
import { MemoryLedger } from "./impression/ledger.ts";
import { createImpressionUrls } from "./impression/record.ts";
import { createImpressionSigner, nonceSequence } from "./impression/token.ts";
import { ServedStats } from "./stats/served.ts";
import { catalogStore } from "./store/catalog.ts";
import { redisLedger } from "./store/ledger.ts";
import { memoryPlayerStore, redisPlayerStore } from "./store/players.ts";
import { openRedis, type StoreConnection, type StoreError } from "./store/redis.ts";
import { type FleetStats, fleetStats } from "./store/stats.ts";
import { FleetSync } from "./sync/fleet.ts";
import { CatalogHolder } from "./sync/holder.ts";
import { CatalogSync, type SyncOutcome } from "./sync/loop.ts";
import { createLogger, type Logger } from "./telemetry/log.ts";
import { Breaker, Metrics } from "./telemetry/metrics.ts";
import { createVastCache } from "./vast/render.ts";

export interface ServerDeps {
  /** Epoch milliseconds (default Date.now). */
  readonly now?: () => number;
  readonly log?: Logger;
  readonly onSyncOutcome?: (outcome: SyncOutcome) => void;
  /** First retry delay after a failed sync, ms. */
  readonly initialBackoffMs?: number;
  /** How often the API keys file is checked for changes, ms (default 1000). */
  readonly keysPollMs?: number;
  readonly metrics?: Metrics;
  /** False in worker processes other than the first: one admin listener per instance. */
  readonly adminEnabled?: boolean;
  /** Build big catalogs on a worker thread (default true); false builds them in slices here. */
  readonly catalogWorker?: boolean;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly holder: CatalogHolder;
  readonly sync: CatalogSync | null;
  /** Settles when the first load attempt (state dir, then source) has finished. */
  readonly ready: Promise<void>;
  /** Stops accepting, lets in-flight requests finish within the grace period, then closes. */
  stop(): Promise<void>;
  /** Re-reads the TLS certificate and key (SIGHUP). */
  reloadTls(): void;
  /** Requests in flight on the public listener. */
  inFlight(): number;
  /** The admin listener's URL, or null when it is off (or could not bind). */
  readonly adminUrl: string | null;
  readonly metrics: Metrics;
  readonly stats: ServedStats;
  /** The Redis connection when --redis is set. */
  readonly store: StoreConnection | null;
  /** Flushes this instance's served counters to Redis now (tests; normally every second). */
  flushStats(): Promise<void>;
}

/** The sample catalog built into the executable. */
export function sampleSnapshot(now: number) {
  const result = validateCatalog(sample);
  if (!result.ok) throw new Error("the built-in sample catalog is invalid");
  return buildSnapshot(result.ads, now);
}

/** Memoizes an async read for `ms` (a failed read is not kept): /stats reads Redis at most once a second. */
function cachedFor<T>(ms: number, now: () => number, read: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | null = null;
  return () => {
    const t = now();
    if (last !== null && t - last.at < ms) return last.value;
    const value = read();
    const entry = { at: t, value };
    last = entry;
    value.catch(() => {
      if (last === entry) last = null;
    });
    return value;
  };
}

/** Served and impression counts by country and by ad, for the dashboard's charts. */
function servedForDashboard(stats: ServedStats, nowMs: number): import("./admin/types.ts").ServedStats {
  const snapshot = stats.snapshot(nowMs);
  const pick = (r: { served: number; impressions: number }) => ({
    served: r.served,
    impressions: r.impressions,
  });
  return {
    byCountry: Object.fromEntries(Object.entries(snapshot.by_country).map(([k, v]) => [k, pick(v)])),
    byAd: Object.fromEntries(Object.entries(snapshot.by_ad).map(([k, v]) => [k, pick(v)])),
  };
}

/** The base URL of impression links when --public-url is not set: the listen address. */
function publicBase(config: Config, port: number): string {
  const host =
    config.listen.host === "0.0.0.0" || config.listen.host === "::" ? "127.0.0.1" : config.listen.host;
  const shown = host.includes(":") ? `[${host}]` : host;
  return `${config.tls === null ? "http" : "https"}://${shown}:${port}`;
}

export async function startServer(config: Config, deps: ServerDeps = {}): Promise<RunningServer> {
  const now = deps.now ?? Date.now;
  const log = deps.log ?? createLogger({ level: config.logLevel, format: config.logFormat });
  const metrics = deps.metrics ?? new Metrics();
  const holder = new CatalogHolder();
  let draining = false;

  // What can fail on bad configuration is read first, before anything is started.
  const tlsOptions = () => {
    if (config.tls === null) return undefined;
    try {
      return {
        cert: readFileSync(config.tls.cert, "utf8"),
        key: readFileSync(config.tls.key, "utf8"),
        // TLS 1.2 minimum: refuse 1.0 and 1.1 explicitly, whatever the library's default.
        secureOptions: constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1,
      };
    } catch (error) {
      throw new ConfigError(
        `cannot read the TLS certificate or key: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  };

  const tls = tlsOptions();

  const keys =
    config.apiKeysFile === null
      ? null
      : await KeyStore.open(config.apiKeysFile, {
          logger: log,
          ...(deps.keysPollMs ? { pollMs: deps.keysPollMs } : {}),
        });
  const jwt =
    config.jwt === null
      ? null
      : createJwtVerifier({
          jwksUrl: config.jwt.jwksUrl,
          issuer: config.jwt.issuer,
          audience: config.jwt.audience,
          algorithms: config.jwt.algorithms,
          now,
          logger: log,
        });
  const gate = new Gate(keys, jwt);
  if (!gate.enabled && !isLoopback(config.listen.host)) {
    log.warn("serving without authentication on a non-loopback address (--allow-anonymous)", {
      host: config.listen.host,
    });
  }

  // Redis, when configured: shared catalog, player history and caps, impressions, stats.
  const conn =
    config.redis === null ? null : openRedis(config.redis, { log, commandTimeoutMs: config.storeTimeoutMs });
  const onStoreError = (error: StoreError): void => metrics.storeError(storeErrorKind(error));
  let breakerTimer: ReturnType<typeof setInterval> | null = null;
  if (conn !== null) {
    const breakerState = {
      closed: Breaker.closed,
      open: Breaker.open,
      half_open: Breaker.half_open,
    } as const;
    breakerTimer = setInterval(() => metrics.breaker(breakerState[conn.state()]), 1_000);
    breakerTimer.unref();
  }
  const fleet =
    conn === null
      ? null
      : new FleetSync({
          // The fetch lock is a lease of just under one refresh interval (see sync/fleet.ts).
          store: catalogStore(conn, { lockTtlMs: Math.max(100, Math.floor(config.refreshSeconds * 900)) }),
          holder,
          log,
          now,
          instanceId: `${hostname()}:${process.pid}`,
          onStoreError,
        });

  let sync: CatalogSync | null = null;
  const builder =
    config.catalog !== null && deps.catalogWorker !== false
      ? createOffThreadBuilder({ activity: metrics.answeredCell })
      : null;
  /** The public listener once it is open: a rebuild's pacing reads its requests in flight. */
  let listening: { readonly pendingRequests: number } | null = null;
  if (config.catalog === null) {
    holder.swap(sampleSnapshot(now()));
    log.info("serving the built-in sample catalog", {
      version: holder.current?.version,
      ads: holder.current?.ads.length,
    });
  } else {
    sync = new CatalogSync({
      source: config.catalog,
      refreshMs: config.refreshSeconds * 1000,
      limits: config.fetch,
      stateDir: config.stateDir,
      holder,
      log,
      now,
      onOutcome: (outcome) => {
        metrics.sync(outcome, now());
        deps.onSyncOutcome?.(outcome);
      },
      ...(deps.initialBackoffMs !== undefined ? { initialBackoffMs: deps.initialBackoffMs } : {}),
      ...(fleet === null ? {} : { coordinator: fleet }),
      answered: () => metrics.answered,
      inFlight: () => listening?.pendingRequests ?? 0,
      builder,
    });
    fleet?.attach(sync);
  }

  const stats = new ServedStats({ startedAtMs: now() });
  const shared: FleetStats | null =
    conn === null ? null : fleetStats(conn, stats, { startedAtMs: now(), onError: onStoreError });

  let keyBytes: Uint8Array;
  if (config.impressionKey !== null) {
    keyBytes = decodeImpressionKey(config.impressionKey);
  } else {
    keyBytes = crypto.getRandomValues(new Uint8Array(32));
    log.warn(
      "no impression key configured: impression URLs are valid only on this process until it restarts",
      {
        hint: "set ADSRV_IMPRESSION_KEY (or --impression-key-file) to the same key on every instance",
      },
    );
  }
  const players = conn === null ? memoryPlayerStore({ maxPlayers: 1_000_000 }) : null;
  const memoryLedger = new MemoryLedger();
  const playerDecisions: PlayerDecisions = {
    store: players ?? redisPlayerStore(conn as StoreConnection, { timeoutMs: config.storeTimeoutMs }),
    decideNow: players === null ? null : players.decideNow,
    defaultCap: config.frequencyCap,
    defaultWindowMs: Math.round(config.frequencyWindowSeconds * 1000),
    onStoreError: config.onStoreError,
  };
  // Impression links point at --public-url, or at the bound address once it is known.
  let impressionUrls = createImpressionUrls(config.publicUrl ?? publicBase(config, config.listen.port));

  const limiter = config.rateLimit === null ? null : new RateLimiter(config.rateLimit);
  // Failed authentications: 20 per minute per address, then 429.
  const authFailures = gate.enabled ? new RateLimiter({ rate: 20 / 60, burst: 20 }) : null;
  const sweeper = setInterval(() => {
    limiter?.sweep(now());
    authFailures?.sweep(now());
  }, 60_000);
  sweeper.unref();
  const stopPacing = paceCollections(() => metrics.answered);
  const { routes, fallback } = makeRoutes({
    holder,
    now,
    retryAfterSeconds: Math.max(1, Math.min(5, Math.ceil(config.refreshSeconds))),
    draining: () => draining,
    gate,
    limiter,
    authFailures,
    requestId: requestIds(),
    clientAddress: clientAddress(config.trustedProxies),
    maxPending: config.maxInFlight,
    requestTimeoutMs: config.requestTimeoutMs,
    log,
    metrics,
    players: playerDecisions,
    impressions: {
      signer: createImpressionSigner(keyBytes, { ttlSeconds: config.impressionTtlSeconds }),
      ledger: conn === null ? memoryLedger : redisLedger(conn, memoryLedger, onStoreError),
      urls: {
        url: (token) => impressionUrls.url(token),
        withImpressionUrl: (head, token) => impressionUrls.withImpressionUrl(head, token),
      },
      nonce: nonceSequence(),
    },
    stats,
    fleetStats: shared === null ? null : cachedFor(1_000, now, () => (shared as FleetStats).read(now())),
    vast: createVastCache(),
    openapi: JSON.stringify(openapiDocument),
  });

  // The port opens at once; the first load runs beside it (503 `no-catalog` until it lands).
  // With Redis, give the connection a moment first (it connects in the background): otherwise
  // every starting instance finds Redis "down" and fetches the source itself.
  const storeUp = conn === null ? Promise.resolve(true) : conn.waitConnected(1_000);
  const ready: Promise<void> =
    sync === null
      ? Promise.resolve()
      : storeUp
          .then(() => (sync as CatalogSync).start())
          .then(
            () => {},
            (error: unknown) =>
              log.error("first catalog load crashed", { error: String(error).slice(0, 200) }),
          );

  // With TLS, a certificate reload binds a second listener on the same port (SO_REUSEPORT) with
  // the new certificate, then drains the old one: Bun's server.reload() does not swap certificates.
  const listen = (port: number, tlsNow: typeof tls) =>
    Bun.serve({
      ...(tlsNow === undefined ? {} : { tls: tlsNow }),
      hostname: config.listen.host,
      port,
      reusePort: config.workers > 1 || config.tls !== null,
      // Never the development error page: it would show source and paths.
      development: false,
      idleTimeout: config.idleTimeoutSeconds,
      // No route takes a body: anything over 4 KiB is refused (413) before a handler runs.
      maxRequestBodySize: 4096,
      routes,
      fetch: fallback,
      error(error) {
        log.error("unhandled error in a request handler", { error: String(error).slice(0, 200) });
        return problem("internal", "the server could not answer this request");
      },
    });
  let admin: Awaited<ReturnType<typeof startAdminServer>> | null = null;
  /** Everything started besides the listener, released once (after the drain, or on a failed start). */
  let released: Promise<void> | null = null;
  const releaseResources = (): Promise<void> => {
    released ??= (async () => {
      sync?.stop();
      builder?.close();
      fleet?.stop();
      if (breakerTimer !== null) clearInterval(breakerTimer);
      stopPacing();
      if (shared !== null) {
        shared.stop();
        await shared.flush().catch(() => {});
      }
      conn?.close();
      await admin?.stop();
      gate.stop();
      clearInterval(sweeper);
    })();
    return released;
  };
  let server: ReturnType<typeof listen>;
  try {
    server = listen(config.listen.port, tls);
    listening = server;
  } catch (error) {
    await releaseResources();
    throw error;
  }

  const port = server.port ?? config.listen.port;
  if (config.publicUrl === null) impressionUrls = createImpressionUrls(publicBase(config, port));
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  const url = `${tls === undefined ? "http" : "https"}://${host}:${port}`;
  log.info("listening", { url, workers: config.workers, auth: gate.enabled });

  // The admin listener never shares the public port. With --workers, only worker 0 runs it (its
  // metrics are that process's). A bind failure degrades observability, not serving.
  if (config.adminListen !== null && deps.adminEnabled !== false) {
    try {
      admin = startAdminServer({
        listen: config.adminListen,
        metrics,
        holder,
        now,
        log,
        served: () => servedForDashboard(stats, now()),
        playerView: async (playerId, country, lang, hour) => {
          const snapshot = holder.current;
          if (snapshot === null) return null;
          const found = eligible(snapshot, country, lang, hour);
          if (found.kind !== "ads") return null;
          const candidates = playerCandidates(snapshot.ads, found.ads, playerDecisions);
          return { candidates, history: await playerDecisions.store.peek(playerId, candidates, now()) };
        },
      });
    } catch (error) {
      log.error("admin listener could not start; serving continues without it", {
        error: String(error).slice(0, 200),
      });
    }
  }

  const reloadTls = (): void => {
    if (config.tls === null || draining) return;
    let next: typeof server;
    try {
      next = listen(port, tlsOptions());
    } catch (error) {
      log.error("TLS reload failed; keeping the current certificate", { error: String(error).slice(0, 200) });
      return;
    }
    const old = server;
    server = next;
    void old.stop(false);
    log.info("TLS certificate reloaded");
  };

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Readiness off, then drain HTTP while every dependency still works; only then stop the
      // background work, flush the last counters and close Redis.
      draining = true;
      sync?.stop();
      const grace = config.shutdownGraceSeconds * 1000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const graceful = server.stop(false).then(() => "done" as const);
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), grace);
      });
      if ((await Promise.race([graceful, timeout])) === "timeout") {
        log.warn("grace period over; closing remaining connections");
        await server.stop(true);
      }
      clearTimeout(timer);
      await releaseResources();
    })();
    return stopping;
  };

  return {
    url,
    port,
    holder,
    sync,
    ready,
    stop,
    reloadTls,
    inFlight: () => server.pendingRequests,
    adminUrl: admin?.url ?? null,
    metrics,
    stats,
    store: conn,
    flushStats: () => shared?.flush() ?? Promise.resolve(),
  };
}

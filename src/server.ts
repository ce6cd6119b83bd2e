/**
 * `startServer(config, deps)`: the catalog sync plus the HTTP listener, as a library.
 * Bun.serve only wires the route functions of http/routes.ts.
 * @module
 */
import { constants } from "node:crypto";
import { readFileSync } from "node:fs";
import { startAdminServer } from "./admin/server.ts";
import { KeyStore } from "./auth/apikey.ts";
import { Gate } from "./auth/gate.ts";
import { createJwtVerifier } from "./auth/jwt.ts";
import sample from "./catalog/sample-catalog.json";
import { buildSnapshot } from "./catalog/snapshot.ts";
import { validateCatalog } from "./catalog/validate.ts";
import { type Config, ConfigError } from "./config.ts";
import { clientAddress, isLoopback, requestIds } from "./http/edge.ts";
import { problem } from "./http/problem.ts";
import { RateLimiter } from "./http/ratelimit.ts";
import { makeRoutes } from "./http/routes.ts";
import { CatalogHolder } from "./sync/holder.ts";
import { CatalogSync, type SyncOutcome } from "./sync/loop.ts";
import { createLogger, type Logger } from "./telemetry/log.ts";
import { Metrics } from "./telemetry/metrics.ts";

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
}

/** The sample catalog built into the executable. */
export function sampleSnapshot(now: number) {
  const result = validateCatalog(sample);
  if (!result.ok) throw new Error("the built-in sample catalog is invalid");
  return buildSnapshot(result.ads, now);
}

export async function startServer(config: Config, deps: ServerDeps = {}): Promise<RunningServer> {
  const now = deps.now ?? Date.now;
  const log = deps.log ?? createLogger({ level: config.logLevel, format: config.logFormat });
  const metrics = deps.metrics ?? new Metrics();
  const holder = new CatalogHolder();
  let draining = false;

  let sync: CatalogSync | null = null;
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
    });
  }

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
  const limiter = config.rateLimit === null ? null : new RateLimiter(config.rateLimit);
  // Failed authentications: 20 per minute per address, then 429.
  const authFailures = gate.enabled ? new RateLimiter({ rate: 20 / 60, burst: 20 }) : null;
  const sweeper = setInterval(() => {
    limiter?.sweep(now());
    authFailures?.sweep(now());
  }, 60_000);
  sweeper.unref();
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
  });

  // The port opens at once; the first load runs beside it (503 `no-catalog` until it lands).
  const ready: Promise<void> =
    sync === null
      ? Promise.resolve()
      : sync.start().then(
          () => {},
          (error: unknown) => log.error("first catalog load crashed", { error: String(error).slice(0, 200) }),
        );

  const tls = tlsOptions();
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
      routes,
      fetch: fallback,
      error(error) {
        log.error("unhandled error in a request handler", { error: String(error).slice(0, 200) });
        return problem("internal", "the server could not answer this request");
      },
    });
  let server = listen(config.listen.port, tls);

  const port = server.port ?? config.listen.port;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  const url = `${tls === undefined ? "http" : "https"}://${host}:${port}`;
  log.info("listening", { url, workers: config.workers, auth: gate.enabled });

  // The admin listener never shares the public port. With --workers, only worker 0 runs it (its
  // metrics are that process's). A bind failure degrades observability, not serving.
  let admin: Awaited<ReturnType<typeof startAdminServer>> | null = null;
  if (config.adminListen !== null && deps.adminEnabled !== false) {
    try {
      admin = startAdminServer({ listen: config.adminListen, metrics, holder, now, log });
      log.info("admin listening", { url: admin.url });
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
      draining = true;
      sync?.stop();
      await admin?.stop();
      gate.stop();
      clearInterval(sweeper);
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
  };
}

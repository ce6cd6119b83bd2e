/**
 * `startServer(config, deps)`: the catalog sync plus the HTTP listener, as a library.
 * Bun.serve only wires the route functions of http/routes.ts.
 * @module
 */
import sample from "./catalog/sample-catalog.json";
import { buildSnapshot } from "./catalog/snapshot.ts";
import { validateCatalog } from "./catalog/validate.ts";
import type { Config } from "./config.ts";
import { problem } from "./http/problem.ts";
import { makeRoutes } from "./http/routes.ts";
import { CatalogHolder } from "./sync/holder.ts";
import { CatalogSync, type SyncOutcome } from "./sync/loop.ts";
import { createLogger, type Logger } from "./telemetry/log.ts";

export interface ServerDeps {
  /** Epoch milliseconds (default Date.now). */
  readonly now?: () => number;
  readonly log?: Logger;
  readonly onSyncOutcome?: (outcome: SyncOutcome) => void;
  /** First retry delay after a failed sync, ms. */
  readonly initialBackoffMs?: number;
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
      ...(deps.onSyncOutcome ? { onOutcome: deps.onSyncOutcome } : {}),
      ...(deps.initialBackoffMs !== undefined ? { initialBackoffMs: deps.initialBackoffMs } : {}),
    });
  }

  const { routes, fallback } = makeRoutes({
    holder,
    now,
    retryAfterSeconds: Math.max(1, Math.min(5, Math.ceil(config.refreshSeconds))),
    draining: () => draining,
  });

  // The port opens at once; the first load runs beside it (503 `no-catalog` until it lands).
  const ready: Promise<void> =
    sync === null
      ? Promise.resolve()
      : sync.start().then(
          () => {},
          (error: unknown) => log.error("first catalog load crashed", { error: String(error).slice(0, 200) }),
        );

  const server = Bun.serve({
    hostname: config.listen.host,
    port: config.listen.port,
    reusePort: config.workers > 1,
    // Never the development error page: it would show source and paths.
    development: false,
    idleTimeout: 10,
    routes,
    fetch: fallback,
    error(error) {
      log.error("unhandled error in a request handler", { error: String(error).slice(0, 200) });
      return problem("internal", "the server could not answer this request");
    },
  });

  const port = server.port ?? config.listen.port;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  log.info("listening", { url: `http://${host}:${port}`, workers: config.workers });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
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
    })();
    return stopping;
  };

  return { url: `http://${host}:${port}`, port, holder, sync, ready, stop };
}

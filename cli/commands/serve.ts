/**
 * `adsrv serve`: flags and ADSRV_* environment → Config → runServe.
 * @module
 */
import { Command, InvalidArgumentError, Option } from "commander";
import {
  type Config,
  ConfigError,
  DEFAULTS,
  makeConfig,
  parseCount,
  parseLevel,
  parseListen,
  parseLogFormat,
  parsePositive,
  parseSource,
} from "../../src/config.ts";
import { runServe } from "../../src/lifecycle.ts";

/** Turns a ConfigError into commander's usage error (exit 2, one line). */
function arg<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      if (error instanceof ConfigError) throw new InvalidArgumentError(error.message);
      throw error;
    }
  };
}

interface ServeOptions {
  listen: Config["listen"];
  catalog?: string;
  refresh: number;
  workers: number;
  stateDir?: string;
  fetchConnectTimeout: number;
  fetchTimeout: number;
  maxCatalogBytes: number;
  shutdownGrace: number;
  logLevel: Config["logLevel"];
  logFormat: Config["logFormat"];
}

/** Options → Config. Exported for tests. */
export function serveConfig(opts: ServeOptions): Config {
  return makeConfig({
    listen: opts.listen,
    catalog: opts.catalog ?? null,
    refreshSeconds: opts.refresh,
    workers: opts.workers,
    stateDir: opts.stateDir ?? null,
    fetch: {
      connectTimeoutMs: opts.fetchConnectTimeout * 1000,
      totalTimeoutMs: opts.fetchTimeout * 1000,
      maxBytes: opts.maxCatalogBytes,
    },
    shutdownGraceSeconds: opts.shutdownGrace,
    logLevel: opts.logLevel,
    logFormat: opts.logFormat,
  });
}

export function serveCommand(): Command {
  const d = DEFAULTS;
  return new Command("serve")
    .description("run the ad decision HTTP server")
    .addOption(
      new Option("--listen <addr:port>", "address and port to serve on")
        .env("ADSRV_LISTEN")
        .argParser(arg(parseListen))
        .default(d.listen, `${d.listen.host}:${d.listen.port}`),
    )
    .addOption(
      new Option(
        "--catalog <source>",
        "campaign catalog: a file path or an http(s) URL (default: built-in sample)",
      )
        .env("ADSRV_CATALOG")
        .argParser(arg(parseSource)),
    )
    .addOption(
      new Option("--refresh <seconds>", "how often the catalog source is checked")
        .env("ADSRV_REFRESH")
        .argParser(arg((v) => parsePositive("--refresh", v)))
        .default(d.refreshSeconds),
    )
    .addOption(
      new Option("--workers <n>", "serving processes sharing the port (Linux SO_REUSEPORT)")
        .env("ADSRV_WORKERS")
        .argParser(arg((v) => parseCount("--workers", v)))
        .default(d.workers),
    )
    .addOption(
      new Option("--state-dir <dir>", "where the last good catalog is kept for restarts").env(
        "ADSRV_STATE_DIR",
      ),
    )
    .addOption(
      new Option("--fetch-connect-timeout <seconds>", "time allowed to connect and receive response headers")
        .env("ADSRV_FETCH_CONNECT_TIMEOUT")
        .argParser(arg((v) => parsePositive("--fetch-connect-timeout", v)))
        .default(d.fetch.connectTimeoutMs / 1000),
    )
    .addOption(
      new Option("--fetch-timeout <seconds>", "time allowed for a whole catalog fetch")
        .env("ADSRV_FETCH_TIMEOUT")
        .argParser(arg((v) => parsePositive("--fetch-timeout", v)))
        .default(d.fetch.totalTimeoutMs / 1000),
    )
    .addOption(
      new Option("--max-catalog-bytes <bytes>", "largest catalog accepted")
        .env("ADSRV_MAX_CATALOG_BYTES")
        .argParser(arg((v) => parseCount("--max-catalog-bytes", v)))
        .default(d.fetch.maxBytes),
    )
    .addOption(
      new Option("--shutdown-grace <seconds>", "time in-flight requests get to finish on SIGTERM/SIGINT")
        .env("ADSRV_SHUTDOWN_GRACE")
        .argParser(arg((v) => parsePositive("--shutdown-grace", v)))
        .default(d.shutdownGraceSeconds),
    )
    .addOption(
      new Option("--log-level <level>", "debug, info, warn or error")
        .env("ADSRV_LOG_LEVEL")
        .argParser(arg(parseLevel))
        .default(d.logLevel),
    )
    .addOption(
      new Option("--log-format <format>", "json or text")
        .env("ADSRV_LOG_FORMAT")
        .argParser(arg(parseLogFormat))
        .default(d.logFormat),
    )
    .addHelpText(
      "after",
      `
Examples:
  $ adsrv serve                                   # built-in sample catalog on 127.0.0.1:8080
  $ adsrv serve --catalog ./catalog.json --refresh 10
  $ adsrv serve --listen 0.0.0.0:8080 --catalog https://campaigns.example/ads --state-dir /var/lib/adsrv
  $ curl 'http://127.0.0.1:8080/ad_request?country=us&lang=eng'`,
    )
    .action(async (opts: ServeOptions, command: Command) => {
      let config: Config;
      try {
        config = serveConfig(opts);
      } catch (error) {
        if (error instanceof ConfigError) command.error(`error: ${error.message}`, { exitCode: 2 });
        throw error;
      }
      process.exitCode = await runServe(config);
    });
}

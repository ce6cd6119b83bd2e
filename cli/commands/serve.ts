/**
 * `adsrv serve`: flags and ADSRV_* environment → Config → runServe.
 * @module
 */
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import {
  type Config,
  ConfigError,
  DEFAULTS,
  makeConfig,
  makeJwtConfig,
  parseAdminListen,
  parseAlgorithms,
  parseCount,
  parseLevel,
  parseListen,
  parseLogFormat,
  parseNonNegative,
  parsePositive,
  parsePublicUrl,
  parseRedisUrl,
  parseSource,
  parseStoreMode,
  parseTrustedProxy,
} from "../../src/config.ts";
import { runServe } from "../../src/lifecycle.ts";

/** Turns a ConfigError into commander's usage error (exit 2, one line). */
function arg<T>(parse: (value: string, previous: T) => T): (value: string, previous: T) => T {
  return (value, previous) => {
    try {
      return parse(value, previous);
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
  apiKeys?: string;
  jwtJwksUrl?: string;
  jwtIssuer?: string;
  jwtAudience?: string;
  jwtAlgorithms: string[];
  allowAnonymous: boolean;
  trustedProxy: string[];
  rateLimit?: number;
  rateBurst?: number;
  maxInFlight: number;
  requestTimeout: number;
  tlsCert?: string;
  tlsKey?: string;
  idleTimeout: number;
  adminListen: Config["adminListen"];
  redis?: string;
  frequencyCap: number;
  frequencyWindow: number;
  onStoreError: Config["onStoreError"];
  storeTimeout: number;
  impressionKeyFile?: string;
  impressionTtl: number;
  publicUrl?: string;
}

/** A yes/no environment variable: 1, true or yes (any case) is yes; anything else, or unset, is no. */
function envFlag(name: string): boolean {
  const value = process.env[name];
  if (value === undefined || value === "") return false;
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw new ConfigError(
    `${name} must be 1/true/yes or 0/false/no, got ${JSON.stringify(value.slice(0, 16))}`,
  );
}

/** The impression key: from the file named by --impression-key-file, else ADSRV_IMPRESSION_KEY. */
function impressionKey(file: string | undefined): string | null {
  if (file !== undefined) {
    try {
      return readFileSync(file, "utf8").trim();
    } catch (error) {
      throw new ConfigError(
        `cannot read --impression-key-file: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  }
  const fromEnv = process.env.ADSRV_IMPRESSION_KEY;
  return fromEnv === undefined || fromEnv === "" ? null : fromEnv;
}

function collect(parse: (value: string) => string): (value: string, previous: string[]) => string[] {
  return (value, previous) => [...previous, ...value.split(",").map((v) => parse(v.trim()))];
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
    apiKeysFile: opts.apiKeys ?? null,
    jwt: makeJwtConfig(opts.jwtJwksUrl, opts.jwtIssuer, opts.jwtAudience, opts.jwtAlgorithms),
    allowAnonymous: opts.allowAnonymous || envFlag("ADSRV_ALLOW_ANONYMOUS"),
    trustedProxies: opts.trustedProxy,
    rateLimit: rateLimit(opts.rateLimit, opts.rateBurst),
    maxInFlight: opts.maxInFlight,
    requestTimeoutMs: opts.requestTimeout * 1000,
    tls: tls(opts.tlsCert, opts.tlsKey),
    idleTimeoutSeconds: opts.idleTimeout,
    // commander turns a parser's null into "": `off` must reach the config as null.
    adminListen: opts.adminListen || null,
    redis: opts.redis ?? null,
    frequencyCap: opts.frequencyCap,
    frequencyWindowSeconds: opts.frequencyWindow,
    onStoreError: opts.onStoreError,
    storeTimeoutMs: opts.storeTimeout,
    impressionKey: impressionKey(opts.impressionKeyFile),
    impressionTtlSeconds: opts.impressionTtl,
    publicUrl: opts.publicUrl ?? null,
  });
}

function rateLimit(rate: number | undefined, burst: number | undefined): Config["rateLimit"] {
  if (rate === undefined) {
    if (burst !== undefined) throw new ConfigError("--rate-burst needs --rate-limit");
    return null;
  }
  return { rate, burst: burst ?? Math.max(1, Math.ceil(rate)) };
}

function tls(cert: string | undefined, key: string | undefined): Config["tls"] {
  if (cert === undefined && key === undefined) return null;
  if (cert === undefined || key === undefined)
    throw new ConfigError("TLS needs both --tls-cert and --tls-key");
  return { cert, key };
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
    .addOption(
      new Option(
        "--api-keys <file>",
        "TOML file of API-key clients ([[client]] name, key_sha256, rate_limit)",
      ).env("ADSRV_API_KEYS"),
    )
    .addOption(new Option("--jwt-jwks-url <url>", "JWKS URL of the token issuer").env("ADSRV_JWT_JWKS_URL"))
    .addOption(new Option("--jwt-issuer <iss>", "required iss claim").env("ADSRV_JWT_ISSUER"))
    .addOption(
      new Option("--jwt-audience <aud>", "accepted aud (or Cognito client_id), comma-separated").env(
        "ADSRV_JWT_AUDIENCE",
      ),
    )
    .addOption(
      new Option("--jwt-algorithms <list>", "accepted signature algorithms, comma-separated")
        .env("ADSRV_JWT_ALGORITHMS")
        .argParser(arg(parseAlgorithms))
        .default(["RS256", "ES256"], "RS256,ES256"),
    )
    .addOption(
      // No .env(): commander treats any value of a boolean's variable as "on", even "0" or
      // "false"; ADSRV_ALLOW_ANONYMOUS is read by `envFlag` and only 1/true/yes turn it on.
      new Option(
        "--allow-anonymous",
        "serve without authentication on a non-loopback address (env ADSRV_ALLOW_ANONYMOUS=1)",
      ).default(false),
    )
    .addOption(
      new Option(
        "--trusted-proxy <cidr>",
        "proxies whose X-Forwarded-For is believed (repeat or comma-separate)",
      )
        .env("ADSRV_TRUSTED_PROXY")
        .argParser(arg(collect(parseTrustedProxy)))
        .default([], "none"),
    )
    .addOption(
      new Option("--rate-limit <per-second>", "default requests per second per client (no limit if unset)")
        .env("ADSRV_RATE_LIMIT")
        .argParser(arg((v) => parsePositive("--rate-limit", v))),
    )
    .addOption(
      new Option("--rate-burst <n>", "bucket size per client (default: one second's worth)")
        .env("ADSRV_RATE_BURST")
        .argParser(arg((v) => parseCount("--rate-burst", v))),
    )
    .addOption(
      new Option("--max-in-flight <n>", "requests in flight above which new ones get 503")
        .env("ADSRV_MAX_IN_FLIGHT")
        .argParser(arg((v) => parseCount("--max-in-flight", v)))
        .default(d.maxInFlight),
    )
    .addOption(
      new Option("--request-timeout <seconds>", "deadline for requests that wait on token verification")
        .env("ADSRV_REQUEST_TIMEOUT")
        .argParser(arg((v) => parsePositive("--request-timeout", v)))
        .default(d.requestTimeoutMs / 1000),
    )
    .addOption(
      new Option(
        "--idle-timeout <seconds>",
        "idle keep-alive connections close after this (1-255; above your LB's)",
      )
        .env("ADSRV_IDLE_TIMEOUT")
        .argParser(arg((v) => parseCount("--idle-timeout", v)))
        .default(d.idleTimeoutSeconds),
    )
    .addOption(
      new Option(
        "--admin-listen <addr:port>",
        "admin listener: /metrics, /dashboard, /debug/decide, /catalog ('off' to disable)",
      )
        .env("ADSRV_ADMIN_LISTEN")
        .argParser(arg(parseAdminListen))
        .default({ host: "127.0.0.1", port: 9090 }, "127.0.0.1:9090"),
    )
    .addOption(
      new Option(
        "--redis <url>",
        "Redis shared by the fleet: catalog, player history, caps, stats (default: in memory)",
      )
        .env("ADSRV_REDIS")
        .argParser(arg(parseRedisUrl)),
    )
    .addOption(
      new Option(
        "--frequency-cap <n>",
        "serves of one ad per player per window (0 = no cap; ads may override)",
      )
        .env("ADSRV_FREQUENCY_CAP")
        .argParser(arg((v) => parseNonNegative("--frequency-cap", v)))
        .default(d.frequencyCap),
    )
    .addOption(
      new Option("--frequency-window <seconds>", "rolling window of the frequency cap")
        .env("ADSRV_FREQUENCY_WINDOW")
        .argParser(arg((v) => parsePositive("--frequency-window", v)))
        .default(d.frequencyWindowSeconds),
    )
    .addOption(
      new Option(
        "--on-store-error <mode>",
        "player requests when Redis fails: open (decide without history) or closed (503)",
      )
        .env("ADSRV_ON_STORE_ERROR")
        .argParser(arg(parseStoreMode))
        .default(d.onStoreError),
    )
    .addOption(
      new Option("--store-timeout <ms>", "deadline of each Redis call on the request path")
        .env("ADSRV_STORE_TIMEOUT")
        .argParser(arg((v) => parseCount("--store-timeout", v)))
        .default(d.storeTimeoutMs),
    )
    .addOption(
      new Option(
        "--impression-key-file <file>",
        "HMAC key for impression tokens (or env ADSRV_IMPRESSION_KEY; ≥ 32 bytes)",
      ).env("ADSRV_IMPRESSION_KEY_FILE"),
    )
    .addOption(
      new Option("--impression-ttl <seconds>", "how long an impression URL stays valid")
        .env("ADSRV_IMPRESSION_TTL")
        .argParser(arg((v) => parsePositive("--impression-ttl", v)))
        .default(d.impressionTtlSeconds),
    )
    .addOption(
      new Option("--public-url <url>", "base URL players reach this server at, for impression links")
        .env("ADSRV_PUBLIC_URL")
        .argParser(arg(parsePublicUrl)),
    )
    .addOption(
      new Option("--tls-cert <file>", "PEM certificate chain (TLS 1.2+; reloaded on SIGHUP)").env(
        "ADSRV_TLS_CERT",
      ),
    )
    .addOption(new Option("--tls-key <file>", "PEM private key").env("ADSRV_TLS_KEY"))
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
      try {
        process.exitCode = await runServe(config);
      } catch (error) {
        // Bad files named by the configuration (keys file, TLS) are found before the port opens.
        if (error instanceof ConfigError) command.error(`error: ${error.message}`, { exitCode: 2 });
        throw error;
      }
    });
}

/**
 * Server configuration: the checked, frozen values `startServer` runs on.
 * The parsers here are shared by the command line (cli/commands/serve.ts) and by tests; each
 * throws `ConfigError` with a one-line reason.
 * @module
 */
import { ASYMMETRIC } from "./auth/jwt.ts";
import { DEFAULT_LIMITS, type FetchLimits } from "./catalog/upstream.ts";
import { isLoopback, parseCidr } from "./http/edge.ts";
import type { Level } from "./telemetry/log.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export interface Listen {
  readonly host: string;
  readonly port: number;
}

export interface Config {
  readonly listen: Listen;
  /** File path or http(s) URL; null serves the sample catalog built into the executable. */
  readonly catalog: string | null;
  readonly refreshSeconds: number;
  readonly workers: number;
  readonly stateDir: string | null;
  readonly fetch: FetchLimits;
  readonly shutdownGraceSeconds: number;
  readonly logLevel: Level;
  readonly logFormat: "json" | "text";
  /** TOML file of API-key clients (`--api-keys`). */
  readonly apiKeysFile: string | null;
  readonly jwt: JwtConfig | null;
  /** Serve without authentication on a non-loopback address. */
  readonly allowAnonymous: boolean;
  /** CIDR blocks whose `X-Forwarded-For` is believed. */
  readonly trustedProxies: readonly string[];
  /** Default per-client rate (requests/second) and burst; null = no limit. */
  readonly rateLimit: { readonly rate: number; readonly burst: number } | null;
  /** Requests in flight above which new ones get 503. */
  readonly maxInFlight: number;
  /** Deadline for requests that await (JWT verification), ms. */
  readonly requestTimeoutMs: number;
  readonly tls: { readonly cert: string; readonly key: string } | null;
  /** Seconds an idle keep-alive connection is kept (1–255); above the balancer's idle timeout. */
  readonly idleTimeoutSeconds: number;
  /** The admin listener (/metrics, /dashboard, /debug/decide, /catalog); null = off. */
  readonly adminListen: Listen | null;
  /** Redis URL (`redis://`, `rediss://`, `redis+unix://`); null = in-memory state, one process. */
  readonly redis: string | null;
  /** Default serves per player per ad in the window; 0 = no cap. Ads may override. */
  readonly frequencyCap: number;
  readonly frequencyWindowSeconds: number;
  /** Player-keyed requests when Redis fails: decide without history ("open") or 503 ("closed"). */
  readonly onStoreError: "open" | "closed";
  /** Deadline of each Redis call on the request path, ms. */
  readonly storeTimeoutMs: number;
  /** HMAC key of impression tokens (≥ 32 bytes, hex or base64); null = a random per-run key. */
  readonly impressionKey: string | null;
  readonly impressionTtlSeconds: number;
  /** Base URL players reach this server at, for impression links; null = the listen address. */
  readonly publicUrl: string | null;
}

/** Decodes an impression key given as hex (64+ digits) or base64; throws ConfigError. */
export function decodeImpressionKey(value: string): Uint8Array {
  const text = value.trim();
  const bytes =
    /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0
      ? Buffer.from(text, "hex")
      : Buffer.from(text, "base64");
  if (bytes.byteLength < 32)
    throw new ConfigError(
      "the impression key must be at least 32 bytes (64 hex digits or 44 base64 characters)",
    );
  return new Uint8Array(bytes);
}

export function parseRedisUrl(value: string): string {
  if (!/^(redis|rediss|redis\+unix|valkey|valkeys):\/\//i.test(value)) {
    throw new ConfigError("--redis must be a redis://, rediss:// or redis+unix:// URL");
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError("--redis is not a valid URL (check the host, port and password encoding)");
  }
  if (/^redis\+unix:/i.test(value) ? url.pathname === "" || url.pathname === "/" : url.hostname === "") {
    throw new ConfigError("--redis names no host (or, for redis+unix://, no socket path)");
  }
  return value;
}

export function parseStoreMode(value: string): "open" | "closed" {
  if (value === "open" || value === "closed") return value;
  throw new ConfigError(`--on-store-error must be open or closed, got ${JSON.stringify(value)}`);
}

/** An integer ≥ 0. */
export function parseNonNegative(name: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new ConfigError(`${name} must be a whole number of at least 0, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function parsePublicUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--public-url ${JSON.stringify(value)} is not a URL`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search !== "" || url.hash !== "") {
    throw new ConfigError("--public-url must be an http(s) URL without query or fragment");
  }
  return value;
}

export interface JwtConfig {
  readonly jwksUrl: string;
  readonly issuer: string;
  readonly audience: readonly string[];
  readonly algorithms: readonly string[];
}

export const DEFAULTS: Config = Object.freeze({
  listen: Object.freeze({ host: "127.0.0.1", port: 8080 }),
  catalog: null,
  refreshSeconds: 30,
  workers: 1,
  stateDir: null,
  fetch: DEFAULT_LIMITS,
  shutdownGraceSeconds: 10,
  logLevel: "info",
  logFormat: "json",
  apiKeysFile: null,
  jwt: null,
  allowAnonymous: false,
  trustedProxies: [],
  rateLimit: null,
  maxInFlight: 512,
  requestTimeoutMs: 500,
  tls: null,
  idleTimeoutSeconds: 10,
  // The library default is off; `adsrv serve` defaults to 127.0.0.1:9090.
  adminListen: null,
  redis: null,
  frequencyCap: 0,
  frequencyWindowSeconds: 86_400,
  onStoreError: "open",
  storeTimeoutMs: 50,
  impressionKey: null,
  impressionTtlSeconds: 3_600,
  publicUrl: null,
});

/** `ADDR:PORT`, `:PORT` (loopback), or `[v6]:PORT`. Port 0 picks a free port. */
export function parseListen(value: string): Listen {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(value);
  if (match === null) throw new ConfigError(`listen address ${JSON.stringify(value)} is not ADDR:PORT`);
  const port = Number(match[3]);
  if (port > 65535) throw new ConfigError(`listen port ${port} is over 65535`);
  const host = match[1] ?? (match[2] || "127.0.0.1");
  return { host, port };
}

/** `ADDR:PORT` as for --listen, or `off`. */
export function parseAdminListen(value: string): Listen | null {
  return value === "off" ? null : parseListen(value);
}

/** A finite number > 0. */
export function parsePositive(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new ConfigError(`${name} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** An integer ≥ 1. */
export function parseCount(name: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(`${name} must be an integer of at least 1, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A catalog source: an http(s) URL or a file path. */
export function parseSource(value: string): string {
  if (value === "") throw new ConfigError("catalog source is empty");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) && !/^https?:\/\//i.test(value)) {
    throw new ConfigError(`catalog source ${JSON.stringify(value)} must be a file path or an http(s) URL`);
  }
  if (/^https?:\/\//i.test(value)) {
    try {
      new URL(value);
    } catch {
      throw new ConfigError(`catalog URL ${JSON.stringify(value)} is not a valid URL`);
    }
  }
  return value;
}

export function parseLevel(value: string): Level {
  if (value === "debug" || value === "info" || value === "warn" || value === "error") return value;
  throw new ConfigError(`log level must be debug, info, warn or error, got ${JSON.stringify(value)}`);
}

export function parseLogFormat(value: string): "json" | "text" {
  if (value === "json" || value === "text") return value;
  throw new ConfigError(`log format must be json or text, got ${JSON.stringify(value)}`);
}

/** A CIDR block (`10.0.0.0/8`, `::1/128`) or a single address. */
export function parseTrustedProxy(value: string): string {
  try {
    parseCidr(value);
  } catch (error) {
    throw new ConfigError(`--trusted-proxy: ${(error as Error).message}`);
  }
  return value;
}

/** Comma-separated JWS algorithms; asymmetric only (never `none` or HS*). */
export function parseAlgorithms(value: string): string[] {
  const list = value.split(",").map((a) => a.trim());
  for (const alg of list) {
    if (!ASYMMETRIC.has(alg))
      throw new ConfigError(`JWT algorithm ${JSON.stringify(alg)} is not an accepted asymmetric algorithm`);
  }
  return list;
}

/** Builds a Config from partial values (already parsed) over the defaults, and checks it as a whole. */
export function makeConfig(partial: Partial<Config> = {}): Config {
  const config = { ...DEFAULTS, ...partial, fetch: { ...DEFAULTS.fetch, ...partial.fetch } };
  if (config.workers > 1 && config.listen.port === 0) {
    throw new ConfigError("--workers above 1 needs a fixed --listen port (workers share it)");
  }
  if (
    !Number.isInteger(config.idleTimeoutSeconds) ||
    config.idleTimeoutSeconds < 1 ||
    config.idleTimeoutSeconds > 255
  ) {
    throw new ConfigError("--idle-timeout must be a whole number of seconds from 1 to 255");
  }
  if (config.impressionKey !== null) decodeImpressionKey(config.impressionKey);
  const admin = config.adminListen;
  if (
    admin !== null &&
    admin.port !== 0 &&
    admin.port === config.listen.port &&
    admin.host === config.listen.host
  ) {
    throw new ConfigError(
      "--admin-listen must differ from --listen: the admin routes are never on the public port",
    );
  }
  const authenticated = config.apiKeysFile !== null || config.jwt !== null;
  if (!authenticated && !config.allowAnonymous && !isLoopback(config.listen.host)) {
    throw new ConfigError(
      `refusing to serve anonymously on ${config.listen.host}: configure --api-keys or --jwt-*, or pass --allow-anonymous`,
    );
  }
  return Object.freeze(config);
}

/** JWT settings from the three flags: all or none. */
export function makeJwtConfig(
  jwksUrl: string | undefined,
  issuer: string | undefined,
  audience: string | undefined,
  algorithms: readonly string[],
): JwtConfig | null {
  const given = [jwksUrl, issuer, audience].filter((v) => v !== undefined).length;
  if (given === 0) return null;
  if (jwksUrl === undefined || issuer === undefined || audience === undefined) {
    throw new ConfigError("JWT needs all of --jwt-jwks-url, --jwt-issuer and --jwt-audience");
  }
  if (!/^https?:\/\//i.test(jwksUrl)) throw new ConfigError("--jwt-jwks-url must be an http(s) URL");
  const audiences = audience
    .split(",")
    .map((a) => a.trim())
    .filter((a) => a !== "");
  if (audiences.length === 0) throw new ConfigError("--jwt-audience is empty");
  return { jwksUrl, issuer, audience: audiences, algorithms };
}

/**
 * API keys (issue 6): key format, the keys file, and the store that authenticates `X-Api-Key`.
 *
 * A key is `adsrv_` + 48 base32 characters (240 random bits from `crypto.getRandomValues`) +
 * 8 base32 characters of checksum (the first 40 bits of SHA-256 over the prefix and the random
 * part), e.g. `adsrv_7q2…k4ma`. Letters, digits and one underscore only, so a double click
 * selects it whole; the checksum rejects typos before any lookup.
 *
 * The keys file never holds keys, only their SHA-256 (hex), one `[[client]]` table each:
 *
 * ```toml
 * [[client]]
 * name = "game-ios"
 * key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
 * rate_limit = 50   # optional, requests per second
 * ```
 *
 * `KeyStore` re-reads the file when it changes (a stat poll, 1 s by default): a removed client
 * is refused at the next poll, and a broken or vanished file keeps the previous good set and
 * logs a warning. No key, and no value read from the file other than client names, ever
 * reaches a log line or an error message.
 * @module
 */
import crypto from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { ConfigError } from "../config.ts";
import { type Logger, silentLogger } from "../telemetry/log.ts";

// ---------------------------------------------------------------------------------------------
// Key format

export const KEY_PREFIX = "adsrv_";
/** Random bytes per key: 240 bits, 48 base32 characters. */
const RANDOM_BYTES = 30;
const BODY_CHARS = 48;
/** Checksum: 5 bytes of SHA-256, 8 base32 characters. */
const CHECK_BYTES = 5;
const CHECK_CHARS = 8;
const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
const KEY_SHAPE = new RegExp(`^${KEY_PREFIX}[a-z2-7]{${BODY_CHARS + CHECK_CHARS}}$`);

/** Client names: what logs and rate limits use to identify a key. */
export const CLIENT_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/** RFC 4648 base32, lowercase, no padding (inputs here are multiples of 5 bytes). */
function base32(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >>> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

function checksum(prefixAndBody: string): string {
  const digest = crypto.createHash("sha256").update(prefixAndBody).digest();
  return base32(digest.subarray(0, CHECK_BYTES));
}

/** SHA-256 of a key, lowercase hex: what the keys file stores. */
export function sha256Hex(key: string): string {
  return crypto.createHash("sha256").update(key).digest("hex");
}

/** A fresh key and its SHA-256 (hex). The key is shown once and stored nowhere. */
export function generateKey(): { key: string; sha256: string } {
  const random = crypto.getRandomValues(new Uint8Array(RANDOM_BYTES));
  const head = KEY_PREFIX + base32(random);
  const key = head + checksum(head);
  return { key, sha256: sha256Hex(key) };
}

/** Whether `s` has the shape of an adsrv key and a correct checksum. */
export function looksLikeKey(s: string): boolean {
  if (!KEY_SHAPE.test(s)) return false;
  const split = KEY_PREFIX.length + BODY_CHARS;
  return checksum(s.slice(0, split)) === s.slice(split);
}

// ---------------------------------------------------------------------------------------------
// The keys file

export interface Client {
  readonly name: string;
  /** Requests per second for this client, overriding the server default. */
  readonly rateLimit?: number;
}

export interface ClientEntry extends Client {
  /** SHA-256 of the key, lowercase hex. */
  readonly keySha256: string;
}

const CLIENT_FIELDS = new Set(["name", "key_sha256", "rate_limit"]);

/** Removes anything long enough to be a secret from a parser's message. */
function redact(message: string): string {
  return message.replace(/[A-Za-z0-9_+/=-]{24,}/g, "[redacted]").slice(0, 200);
}

/**
 * Parses and checks a keys file. Throws `ConfigError` naming the client (`client #N`, counted
 * from 1) and the field; values other than names are never quoted.
 */
export function parseKeysFile(text: string): ClientEntry[] {
  let doc: unknown;
  try {
    doc = Bun.TOML.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^TOML Parse error: /, "") : "";
    throw new ConfigError(`keys file is not valid TOML: ${redact(reason)}`);
  }
  if (typeof doc !== "object" || doc === null) throw new ConfigError("keys file is not a TOML document");
  const top = doc as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (key !== "client") {
      throw new ConfigError(
        `keys file: unexpected top-level key ${JSON.stringify(redact(key))} (only [[client]] tables are allowed)`,
      );
    }
  }
  const list = top.client;
  if (list === undefined) return [];
  if (!Array.isArray(list)) {
    throw new ConfigError("keys file: `client` must be an array of tables, written [[client]]");
  }
  const entries: ClientEntry[] = [];
  const names = new Map<string, number>();
  const hashes = new Map<string, number>();
  list.forEach((raw: unknown, i) => {
    const at = `keys file: client #${i + 1}`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`${at} is not a table`);
    }
    const table = raw as Record<string, unknown>;
    for (const field of Object.keys(table)) {
      if (!CLIENT_FIELDS.has(field)) {
        const hint = field === "key" ? " (store key_sha256, never the key itself)" : "";
        throw new ConfigError(
          `${at}: unknown field ${JSON.stringify(redact(field))}${hint}; allowed: name, key_sha256, rate_limit`,
        );
      }
    }
    const { name, key_sha256: hash, rate_limit: rate } = table;
    if (name === undefined) throw new ConfigError(`${at}: missing field "name"`);
    if (typeof name !== "string" || !CLIENT_NAME.test(name)) {
      throw new ConfigError(`${at}: "name" must be 1 to 64 characters from A-Z a-z 0-9 . _ -`);
    }
    const who = `${at} (${JSON.stringify(name)})`;
    if (hash === undefined) throw new ConfigError(`${who}: missing field "key_sha256"`);
    if (typeof hash !== "string" || !HEX_SHA256.test(hash)) {
      const hint =
        typeof hash === "string" && hash.startsWith(KEY_PREFIX)
          ? "; it holds a key, not its hash: replace it with the output of `adsrv keys hash` and rotate the key"
          : "";
      throw new ConfigError(`${who}: "key_sha256" must be 64 hexadecimal characters${hint}`);
    }
    if (rate !== undefined && (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0)) {
      throw new ConfigError(`${who}: "rate_limit" must be a number of requests per second above 0`);
    }
    const firstName = names.get(name);
    if (firstName !== undefined) {
      throw new ConfigError(`${who}: duplicate name, already used by client #${firstName}`);
    }
    const keySha256 = hash.toLowerCase();
    const firstHash = hashes.get(keySha256);
    if (firstHash !== undefined) {
      throw new ConfigError(`${who}: duplicate key_sha256, already used by client #${firstHash}`);
    }
    names.set(name, i + 1);
    hashes.set(keySha256, i + 1);
    entries.push(rate === undefined ? { name, keySha256 } : { name, keySha256, rateLimit: rate });
  });
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Authentication

export type AuthResult =
  | { readonly ok: true; readonly client: Client }
  | { readonly ok: false; readonly reason: "missing" | "unknown" };

const MISSING: AuthResult = Object.freeze({ ok: false, reason: "missing" });
const UNKNOWN: AuthResult = Object.freeze({ ok: false, reason: "unknown" });

interface Known {
  readonly hash: Buffer;
  readonly result: AuthResult;
}

/** An immutable set of clients, looked up by the SHA-256 of the presented key. */
export class KeySet {
  readonly #byHash: ReadonlyMap<string, Known>;

  constructor(entries: readonly ClientEntry[]) {
    const byHash = new Map<string, Known>();
    for (const e of entries) {
      const client: Client =
        e.rateLimit === undefined ? { name: e.name } : { name: e.name, rateLimit: e.rateLimit };
      byHash.set(e.keySha256, {
        hash: Buffer.from(e.keySha256, "hex"),
        result: Object.freeze({ ok: true, client: Object.freeze(client) }),
      });
    }
    this.#byHash = byHash;
  }

  get size(): number {
    return this.#byHash.size;
  }

  /**
   * Checks an `X-Api-Key` header value. A value without the key shape or checksum is refused
   * before hashing. The SHA-256 of the key selects a candidate, which is then compared with
   * `crypto.timingSafeEqual`; a lookup by hash leaks nothing usable about the key itself.
   */
  authenticate(headerValue: string | null): AuthResult {
    if (headerValue === null || headerValue === "") return MISSING;
    if (!looksLikeKey(headerValue)) return UNKNOWN;
    const digest = crypto.createHash("sha256").update(headerValue).digest();
    const known = this.#byHash.get(digest.toString("hex"));
    if (known === undefined || !crypto.timingSafeEqual(known.hash, digest)) return UNKNOWN;
    return known.result;
  }
}

// ---------------------------------------------------------------------------------------------
// The store: a KeySet kept in step with its file

export type KeyStoreEvent =
  | { readonly kind: "loaded"; readonly clients: number }
  | { readonly kind: "rejected"; readonly error: string }
  | { readonly kind: "unreadable"; readonly error: string };

export interface KeyStoreOptions {
  readonly logger?: Logger;
  /** How often the file's stat is checked, in ms (default 1000). */
  readonly pollMs?: number;
  /** Called after each load, rejected change or failed read (tests wait on it). */
  readonly onEvent?: (event: KeyStoreEvent) => void;
}

/** Largest keys file read (a client takes about 120 bytes). */
export const MAX_KEYS_FILE_BYTES = 16 * 1024 * 1024;

/** A file modified less than this long ago is read again even if its stat looks unchanged. */
const RACY_MS = 2000;

function signature(s: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

interface Loaded {
  readonly sig: string;
  readonly content: string;
  readonly set: KeySet;
}

async function load(path: string): Promise<Loaded> {
  const before = await stat(path);
  if (!before.isFile()) throw new ConfigError(`keys file is not a regular file: ${path}`);
  if (before.size > MAX_KEYS_FILE_BYTES) {
    throw new ConfigError(`keys file is over ${MAX_KEYS_FILE_BYTES} bytes: ${path}`);
  }
  const text = await readFile(path, "utf8");
  return { sig: signature(before), content: sha256Hex(text), set: new KeySet(parseKeysFile(text)) };
}

function reasonOf(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? `cannot read the keys file (${code})` : "cannot read the keys file";
}

export class KeyStore {
  readonly path: string;
  #set: KeySet;
  /** Stat signature of the last file state acted on (loaded or refused). */
  #seen: string;
  /** SHA-256 of the text the current set came from. */
  #content: string;
  /** Whether the file's latest state was refused (the set in use is older). */
  #failing = false;
  #checking = false;
  #timer: ReturnType<typeof setInterval> | null = null;
  readonly #logger: Logger;
  readonly #onEvent: (event: KeyStoreEvent) => void;

  private constructor(path: string, loaded: Loaded, options: KeyStoreOptions) {
    this.path = path;
    this.#set = loaded.set;
    this.#seen = loaded.sig;
    this.#content = loaded.content;
    this.#logger = options.logger ?? silentLogger;
    this.#onEvent = options.onEvent ?? (() => {});
  }

  /**
   * Loads the file (throws `ConfigError` if it is missing or invalid) and starts watching it.
   * Call `close()` to stop the poll; the timer never keeps the process alive.
   */
  static async open(path: string, options: KeyStoreOptions = {}): Promise<KeyStore> {
    const pollMs = options.pollMs ?? 1000;
    if (!(pollMs > 0)) throw new ConfigError("keys file poll interval must be above 0 ms");
    let loaded: Loaded;
    try {
      loaded = await load(path);
    } catch (error) {
      throw error instanceof ConfigError ? error : new ConfigError(`${reasonOf(error)}: ${path}`);
    }
    const store = new KeyStore(path, loaded, options);
    store.#logger.info("api keys loaded", { path, clients: loaded.set.size });
    store.#timer = setInterval(() => {
      store.check().catch((error: unknown) => {
        store.#logger.error("api keys check failed", { path, error: reasonOf(error) });
      });
    }, pollMs);
    store.#timer.unref();
    return store;
  }

  /** The current client set (swapped whole on each good reload). */
  get keys(): KeySet {
    return this.#set;
  }

  authenticate(headerValue: string | null): AuthResult {
    return this.#set.authenticate(headerValue);
  }

  /**
   * Re-reads the file if its stat changed, if it changed too recently for the stat to tell
   * (file times are only as fine as the kernel's clock tick), or always with `force`. Resolves
   * to the event emitted, or null when nothing changed or a check was already running.
   */
  async check(force = false): Promise<KeyStoreEvent | null> {
    if (this.#checking) return null;
    this.#checking = true;
    try {
      let sig: string;
      let racy: boolean;
      try {
        const s = await stat(this.path);
        sig = signature(s);
        racy = Date.now() - s.mtimeMs < RACY_MS;
      } catch (error) {
        return this.#fail(`unreadable:${reasonOf(error)}`, "unreadable", reasonOf(error));
      }
      if (!force && !racy && sig === this.#seen) return null;
      let loaded: Loaded;
      try {
        loaded = await load(this.path);
      } catch (error) {
        return this.#fail(sig, error instanceof ConfigError ? "rejected" : "unreadable", reasonOf(error));
      }
      this.#seen = loaded.sig;
      if (!force && !this.#failing && loaded.content === this.#content) return null;
      this.#failing = false;
      this.#content = loaded.content;
      this.#set = loaded.set;
      this.#logger.info("api keys reloaded", { path: this.path, clients: loaded.set.size });
      const event: KeyStoreEvent = { kind: "loaded", clients: loaded.set.size };
      this.#onEvent(event);
      return event;
    } finally {
      this.#checking = false;
    }
  }

  /** Keeps the current set; warns once per distinct bad state of the file. */
  #fail(sig: string, kind: "rejected" | "unreadable", error: string): KeyStoreEvent | null {
    if (this.#failing && sig === this.#seen) return null;
    this.#seen = sig;
    this.#failing = true;
    this.#logger.warn("api keys file change ignored, keeping the previous keys", {
      path: this.path,
      error,
      clients: this.#set.size,
    });
    const event: KeyStoreEvent = { kind, error };
    this.#onEvent(event);
    return event;
  }

  /** Stops watching the file. The current set keeps answering. */
  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

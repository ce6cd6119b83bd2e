/**
 * The fleet's shared catalog in Redis (docs/ENGINEERING.md §1).
 *
 * - `adsrv:{cat}:lock`: who fetches this interval. `SET NX PX`; the value is a token
 *   `<instanceId>:<uuid>` that fences the publish and the release.
 * - `adsrv:{cat}` (hash): `version`, `sha256` (of the document's UTF-8 bytes), `doc` (the
 *   canonical validated catalog JSON, zstd-compressed then base64: Bun's client returns replies
 *   as strings, which would mangle raw binary), `encoding` (`zstd+base64`), `fetched_at` (ms). No
 *   expiry: it is the fleet's last good copy.
 * - channel `adsrv:catalog`: the version, published when it changes.
 *
 * Every key carries the `{cat}` hash tag, so the scripts touch one cluster slot.
 * @module
 */
import { promisify } from "node:util";
import { zstdDecompress } from "node:zlib";
import { sha256Hex } from "../crypto/sha256.ts";
import { defineScript, type StoreConnection, StoreError, withDeadline } from "./redis.ts";

export const CATALOG_KEY = "adsrv:{cat}";
export const CATALOG_LOCK_KEY = "adsrv:{cat}:lock";
export const CATALOG_CHANNEL = "adsrv:catalog";
export const DOC_ENCODING = "zstd+base64";

export type PublishOutcome = "published" | "unchanged" | "lost_lock";

export interface PublishInput {
  /** The token `tryLock` returned. */
  readonly token: string;
  /** The catalog version (content hash). */
  readonly version: string;
  /** The canonical validated catalog JSON: text, or its UTF-8 bytes. */
  readonly doc: string | Uint8Array;
  /**
   * SHA-256 (hex) of `doc`'s UTF-8 bytes when already known (the catalog worker hashes the
   * documents it makes); else hashed here, on this thread (1M ads: about 85 ms, measured).
   */
  readonly sha256?: string | undefined;
  /** When it was fetched (ms since the epoch). */
  readonly fetchedAt: number;
}

export interface StoredCatalog {
  readonly version: string;
  /**
   * The document's UTF-8 bytes, decompressed but neither decoded nor hashed here: a 1M-ad
   * document is 151 MB, and decoding plus hashing it took about 170 ms of the serving thread
   * (measured). The sync loop hands a big document's bytes to the catalog worker, which hashes
   * them (a small one, under 1 MiB, is decoded and hashed on the serving thread).
   */
  readonly data: Uint8Array;
  /** SHA-256 (hex) of `data` as published: the loader refuses bytes with another digest. */
  readonly sha256: string;
  readonly fetchedAt: number;
}

export interface CatalogStoreOptions {
  /** Lock lifetime (default 60 000 ms). */
  readonly lockTtlMs?: number;
  /** Deadline of calls that move the document (default 5000 ms; others use the connection's). */
  readonly docTimeoutMs?: number;
  /** Largest decompressed document accepted by `readDoc` (default 512 MiB). */
  readonly maxDocBytes?: number;
}

export interface CatalogStore {
  /** Takes the fetch lock: its token, or null when another instance holds it. */
  tryLock(instanceId: string): Promise<string | null>;
  /** Extends a lock still held with this token; false if it was lost. */
  renew(token: string): Promise<boolean>;
  /** Stores and announces the catalog, if the lock is still ours and the version is new. */
  publish(input: PublishInput): Promise<PublishOutcome>;
  /** Deletes the lock if it still holds this token. */
  release(token: string): Promise<boolean>;
  readVersion(): Promise<string | null>;
  /**
   * The stored catalog, or null if none. Rejects with a `StoreError` of kind `reply` when the
   * stored document is incomplete or cannot be decoded (unknown encoding, bad compression, too
   * big). Its digest is checked by whoever loads it (`CatalogSync.applyShared`).
   */
  readDoc(): Promise<StoredCatalog | null>;
  /**
   * Calls `callback` with each version announced on the channel, and with the stored version
   * after each (re)subscription (messages sent while disconnected are lost). May repeat a
   * version: compare with the one you serve. Returns a remover.
   */
  onVersion(callback: (version: string) => void): () => void;
}

/** KEYS: lock, hash. ARGV: token, version, sha256, doc, fetched_at, encoding, channel. */
const PUBLISH_SCRIPT = defineScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost_lock' end
if redis.call('HGET', KEYS[2], 'version') == ARGV[2] then
  redis.call('HSET', KEYS[2], 'fetched_at', ARGV[5])
  return 'unchanged'
end
redis.call('HSET', KEYS[2], 'version', ARGV[2], 'sha256', ARGV[3], 'doc', ARGV[4], 'fetched_at', ARGV[5], 'encoding', ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[2])
return 'published'
`);

/** KEYS: lock. ARGV: token. */
const RELEASE_SCRIPT = defineScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/** KEYS: lock. ARGV: token, ttl ms. */
const RENEW_SCRIPT = defineScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

const decompress = promisify(zstdDecompress);

export function catalogStore(conn: StoreConnection, options: CatalogStoreOptions = {}): CatalogStore {
  const lockTtlMs = options.lockTtlMs ?? 60_000;
  const docTimeout = { timeoutMs: options.docTimeoutMs ?? 5_000 };
  const maxDocBytes = options.maxDocBytes ?? 512 * 1024 * 1024;

  const readVersion = async (): Promise<string | null> => {
    const v = await conn.call("HGET", [CATALOG_KEY, "version"]);
    return typeof v === "string" ? v : null;
  };

  return {
    async tryLock(instanceId) {
      const token = `${instanceId}:${crypto.randomUUID()}`;
      const reply = await conn.call("SET", [CATALOG_LOCK_KEY, token, "NX", "PX", String(lockTtlMs)]);
      return reply === "OK" ? token : null;
    },

    async renew(token) {
      return (await conn.eval(RENEW_SCRIPT, [CATALOG_LOCK_KEY], [token, String(lockTtlMs)])) === 1;
    },

    async publish({ token, version, doc, sha256, fetchedAt }) {
      const started = performance.now();
      const packed = Buffer.from(
        await Bun.zstdCompress(typeof doc === "string" ? Buffer.from(doc) : doc),
      ).toString("base64");
      const left = Math.max(1, docTimeout.timeoutMs - (performance.now() - started));
      const reply = await conn.eval(
        PUBLISH_SCRIPT,
        [CATALOG_LOCK_KEY, CATALOG_KEY],
        [token, version, sha256 ?? sha256Hex(doc), packed, String(fetchedAt), DOC_ENCODING, CATALOG_CHANNEL],
        { timeoutMs: left },
      );
      if (reply === "published" || reply === "unchanged" || reply === "lost_lock") return reply;
      throw new StoreError("reply", "unexpected reply from the publish script");
    },

    async release(token) {
      return (await conn.eval(RELEASE_SCRIPT, [CATALOG_LOCK_KEY], [token])) === 1;
    },

    readVersion,

    async readDoc() {
      const reply = await conn.call(
        "HMGET",
        [CATALOG_KEY, "version", "doc", "fetched_at", "encoding", "sha256"],
        docTimeout,
      );
      if (!Array.isArray(reply)) throw new StoreError("reply", "unexpected reply to HMGET");
      const [version, doc, fetchedAt, encoding, sha256] = reply as unknown[];
      if (version === null || version === undefined) return null;
      if (typeof version !== "string" || typeof doc !== "string" || typeof sha256 !== "string") {
        throw new StoreError("reply", "stored catalog incomplete");
      }
      if (encoding !== DOC_ENCODING) throw new StoreError("reply", "stored catalog has an unknown encoding");
      let data: Uint8Array;
      try {
        const raw = Buffer.from(doc, "base64");
        data = await withDeadline(
          decompress(raw, { maxOutputLength: maxDocBytes }),
          docTimeout.timeoutMs,
          "decompress",
        );
      } catch (error) {
        throw new StoreError("reply", "stored catalog cannot be decoded", { cause: error });
      }
      const at = Number(fetchedAt);
      return { version, data, sha256, fetchedAt: Number.isFinite(at) ? at : 0 };
    },

    onVersion(callback) {
      let alive = true;
      const deliver = (version: string): void => {
        if (alive && version !== "") callback(version);
      };
      const sub = conn.subscribe(CATALOG_CHANNEL, deliver, () => {
        readVersion().then(
          (v) => {
            if (v !== null) deliver(v);
          },
          () => {
            // The periodic version check catches up.
          },
        );
      });
      return () => {
        alive = false;
        sub.unsubscribe();
      };
    },
  };
}

/** The shared catalog in a private redis-server: lock, fenced publish, document, announcements. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import type { RedisClient } from "bun";
import { sha256Hex } from "../../../src/crypto/sha256.ts";
import type { StoredCatalog } from "../../../src/store/catalog.ts";
import {
  CATALOG_CHANNEL,
  CATALOG_KEY,
  CATALOG_LOCK_KEY,
  type CatalogStore,
  catalogStore,
  DOC_ENCODING,
} from "../../../src/store/catalog.ts";
import { openRedis, type StoreConnection, StoreError } from "../../../src/store/redis.ts";
import { silentLogger } from "../../../src/telemetry/log.ts";
import { type PrivateRedis, startRedis } from "../../fakes/redis.ts";
import { until } from "./helpers.ts";

let redis: PrivateRedis;
let admin: RedisClient;
let connA: StoreConnection;
let connB: StoreConnection;

beforeAll(async () => {
  redis = await startRedis();
  admin = await redis.admin();
  connA = openRedis(redis.url, { log: silentLogger, reconnectBaseMs: 50, reconnectMaxMs: 200 });
  connB = openRedis(redis.url, { log: silentLogger, reconnectBaseMs: 50, reconnectMaxMs: 200 });
  await connA.waitConnected(2_000);
  await connB.waitConnected(2_000);
});

beforeEach(async () => {
  await admin.send("FLUSHALL", []);
});

afterAll(async () => {
  connA?.close();
  connB?.close();
  await redis?.stop();
});

/** A stored document with its bytes decoded, to compare with the text published. */
function readBack(doc: StoredCatalog | null) {
  if (doc === null) return null;
  const { data, ...rest } = doc;
  return { ...rest, text: new TextDecoder().decode(data) };
}

function catalogText(n: number): string {
  const ads = Array.from({ length: n }, (_, i) => ({
    id: `ad-${i}`,
    video_url: `https://cdn.example.com/ad-${i}.mp4`,
    country: "us",
    lang: "eng",
    start_hour: 0,
    end_hour: 0,
  }));
  return JSON.stringify({ ads, note: "café ✓" });
}

describe("catalog lock", () => {
  test("only one instance holds the lock; its value is the token", async () => {
    const a = catalogStore(connA);
    const b = catalogStore(connB);
    const token = await a.tryLock("inst-a");
    expect(token).toStartWith("inst-a:");
    expect(await b.tryLock("inst-b")).toBeNull();
    expect(await a.tryLock("inst-a")).toBeNull();
    expect(await admin.send("GET", [CATALOG_LOCK_KEY])).toBe(token);
    const pttl = Number(await admin.send("PTTL", [CATALOG_LOCK_KEY]));
    expect(pttl).toBeGreaterThan(59_000);
    expect(pttl).toBeLessThanOrEqual(60_000);
  });

  test("the lock expires, and another instance takes it", async () => {
    const a = catalogStore(connA, { lockTtlMs: 80 });
    const b = catalogStore(connB, { lockTtlMs: 80 });
    expect(await a.tryLock("inst-a")).not.toBeNull();
    expect(await b.tryLock("inst-b")).toBeNull();
    await Bun.sleep(120);
    expect(await b.tryLock("inst-b")).toStartWith("inst-b:");
  });

  test("release deletes only the holder's lock; renew extends only the holder's lock", async () => {
    const a = catalogStore(connA, { lockTtlMs: 5_000 });
    const b = catalogStore(connB, { lockTtlMs: 5_000 });
    const token = (await a.tryLock("inst-a")) as string;
    expect(await b.release("inst-b:forged")).toBe(false);
    expect(await b.renew("inst-b:forged")).toBe(false);
    expect(await admin.send("GET", [CATALOG_LOCK_KEY])).toBe(token);
    await admin.send("PEXPIRE", [CATALOG_LOCK_KEY, "1000"]);
    expect(await a.renew(token)).toBe(true);
    expect(Number(await admin.send("PTTL", [CATALOG_LOCK_KEY]))).toBeGreaterThan(4_000);
    expect(await a.release(token)).toBe(true);
    expect(await admin.send("EXISTS", [CATALOG_LOCK_KEY])).toBe(0);
    expect(await a.release(token)).toBe(false);
  });
});

describe("catalog publish and read", () => {
  test("publish stores a compressed document and announces the version; the same version is 'unchanged'", async () => {
    const a = catalogStore(connA);
    const b = catalogStore(connB);
    const heard: string[] = [];
    const raw = await redis.admin();
    await raw.subscribe(CATALOG_CHANNEL, (m) => heard.push(m));

    expect(await b.readDoc()).toBeNull();
    expect(await b.readVersion()).toBeNull();
    const text = catalogText(500);
    const token = (await a.tryLock("inst-a")) as string;
    expect(await a.publish({ token, version: "v1", doc: text, fetchedAt: 1_700_000_000_123 })).toBe(
      "published",
    );
    await until(() => heard.length === 1, 2_000, "announcement");
    expect(heard).toEqual(["v1"]);

    expect(await b.readVersion()).toBe("v1");
    expect(readBack(await b.readDoc())).toEqual({
      version: "v1",
      text,
      sha256: sha256Hex(text),
      fetchedAt: 1_700_000_000_123,
    });
    expect(await admin.send("HGET", [CATALOG_KEY, "encoding"])).toBe(DOC_ENCODING);
    const stored = Number(await admin.send("HSTRLEN", [CATALOG_KEY, "doc"]));
    expect(stored).toBeLessThan(text.length / 5);
    expect(await admin.send("TTL", [CATALOG_KEY])).toBe(-1); // the fleet's last good copy stays

    expect(await a.publish({ token, version: "v1", doc: text, fetchedAt: 1_700_000_030_000 })).toBe(
      "unchanged",
    );
    expect((await b.readDoc())?.fetchedAt).toBe(1_700_000_030_000);
    const text2 = catalogText(3);
    expect(await a.publish({ token, version: "v2", doc: text2, fetchedAt: 5 })).toBe("published");
    await until(() => heard.length === 2, 2_000, "second announcement");
    await Bun.sleep(20);
    expect(heard).toEqual(["v1", "v2"]);
    expect(readBack(await b.readDoc())).toEqual({
      version: "v2",
      text: text2,
      sha256: sha256Hex(text2),
      fetchedAt: 5,
    });
    raw.close();
  });

  test("a document given as UTF-8 bytes (the catalog worker's) reads back as the same text", async () => {
    const a = catalogStore(connA);
    const text = catalogText(40).replace("cdn", "cdn-é"); // a non-ASCII character
    const token = (await a.tryLock("inst-a")) as string;
    const published = await a.publish({
      token,
      version: "v-bytes",
      doc: new TextEncoder().encode(text),
      fetchedAt: 9,
    });
    expect(published).toBe("published");
    expect(readBack(await catalogStore(connB).readDoc())).toEqual({
      version: "v-bytes",
      text,
      sha256: sha256Hex(text),
      fetchedAt: 9,
    });
  });

  test("a digest given with the document (the worker's) is stored as given, not computed again", async () => {
    const a = catalogStore(connA);
    const token = (await a.tryLock("inst-a")) as string;
    const given = "ab".repeat(32);
    expect(
      await a.publish({ token, version: "v-given", doc: catalogText(3), sha256: given, fetchedAt: 1 }),
    ).toBe("published");
    expect((await catalogStore(connB).readDoc())?.sha256).toBe(given);
  });

  test("a big document reads back as bytes owning their whole buffer: they can move to the worker, not be copied", async () => {
    const a = catalogStore(connA);
    const text = catalogText(12_000);
    expect(text.length).toBeGreaterThan(1 << 20);
    const token = (await a.tryLock("inst-a")) as string;
    expect(await a.publish({ token, version: "v-big", doc: text, fetchedAt: 1 })).toBe("published");
    const doc = await catalogStore(connB).readDoc();
    if (doc === null) throw new Error("stored");
    expect(doc.data.byteOffset).toBe(0);
    expect(doc.data.byteLength).toBe(doc.data.buffer.byteLength);
    expect(doc.data.buffer).toBeInstanceOf(ArrayBuffer);
  });

  test("fenced: a stale lock holder's publish is refused and changes nothing", async () => {
    const a = catalogStore(connA, { lockTtlMs: 60 });
    const b = catalogStore(connB, { lockTtlMs: 60_000 });
    const stale = (await a.tryLock("inst-a")) as string;
    await Bun.sleep(100); // a stalls past its lock; b takes over
    const fresh = (await b.tryLock("inst-b")) as string;
    expect(fresh).not.toBeNull();
    expect(await b.publish({ token: fresh, version: "new", doc: catalogText(2), fetchedAt: 2 })).toBe(
      "published",
    );
    expect(await a.publish({ token: stale, version: "old", doc: catalogText(1), fetchedAt: 1 })).toBe(
      "lost_lock",
    );
    expect(await a.release(stale)).toBe(false);
    expect((await b.readDoc())?.version).toBe("new");
    expect(await admin.send("GET", [CATALOG_LOCK_KEY])).toBe(fresh);
    // No lock at all is no lock either.
    await admin.send("DEL", [CATALOG_LOCK_KEY]);
    expect(await b.publish({ token: fresh, version: "newer", doc: "{}", fetchedAt: 3 })).toBe("lost_lock");
    expect(await b.readVersion()).toBe("new");
  });

  test("a corrupt or foreign document is refused by readDoc; its digest is left to the loader", async () => {
    const a = catalogStore(connA);
    const token = (await a.tryLock("inst-a")) as string;
    await a.publish({ token, version: "v1", doc: catalogText(5), fetchedAt: 1 });
    // The digest is not checked here (the sync loop checks it where the bytes are hashed anyway).
    await admin.send("HSET", [CATALOG_KEY, "sha256", "0".repeat(64)]);
    expect((await a.readDoc())?.sha256).toBe("0".repeat(64));
    await admin.send("HSET", [CATALOG_KEY, "doc", "bm90IHpzdGQ="]);
    await expect(a.readDoc()).rejects.toBeInstanceOf(StoreError);
    await expect(a.readDoc()).rejects.toThrow(/cannot be decoded/);
    await admin.send("HSET", [CATALOG_KEY, "encoding", "identity"]);
    await expect(a.readDoc()).rejects.toThrow(/encoding/);
    await admin.send("HDEL", [CATALOG_KEY, "doc"]);
    await expect(a.readDoc()).rejects.toThrow(/incomplete/);
  });

  test("a decompression bomb is cut at maxDocBytes", async () => {
    const a = catalogStore(connA, { maxDocBytes: 1_000 });
    const token = (await a.tryLock("inst-a")) as string;
    await a.publish({ token, version: "big", doc: " ".repeat(100_000), fetchedAt: 1 });
    await expect(a.readDoc()).rejects.toThrow(/cannot be decoded/);
  });

  test("every catalog key carries the {cat} hash tag", async () => {
    const a = catalogStore(connA);
    const token = (await a.tryLock("inst-a")) as string;
    await a.publish({ token, version: "v1", doc: "{}", fetchedAt: 1 });
    const keys = (await admin.send("KEYS", ["*"])) as string[];
    expect(keys.sort()).toEqual([CATALOG_KEY, CATALOG_LOCK_KEY].sort());
    for (const key of keys) expect(key).toContain("{cat}");
  });
});

describe("onVersion", () => {
  test("hears each publish once, and the stored version again after its subscription is killed", async () => {
    const a = catalogStore(connA);
    const conn = openRedis(redis.url, { log: silentLogger, reconnectBaseMs: 50, reconnectMaxMs: 200 });
    const listener: CatalogStore = catalogStore(conn);
    const heard: string[] = [];
    const stop = listener.onVersion((v) => heard.push(v));
    try {
      await until(
        async () =>
          JSON.stringify(await admin.send("PUBSUB", ["NUMSUB", CATALOG_CHANNEL])) !==
          `["${CATALOG_CHANNEL}",0]`,
        2_000,
        "subscribed",
      );
      expect(heard).toEqual([]); // nothing stored yet
      const token = (await a.tryLock("inst-a")) as string;
      await a.publish({ token, version: "v1", doc: "{}", fetchedAt: 1 });
      await until(() => heard.length === 1, 2_000, "v1");

      // A version published while the subscriber is away is caught on re-subscription.
      await admin.send("CLIENT", ["KILL", "TYPE", "pubsub"]);
      await a.publish({ token, version: "v2", doc: '{"x":1}', fetchedAt: 2 });
      await until(() => heard.includes("v2"), 3_000, "v2 after resubscribe");
      await a.publish({ token, version: "v3", doc: '{"x":2}', fetchedAt: 3 });
      await until(() => heard.includes("v3"), 2_000, "v3");
      await Bun.sleep(30);
      expect(heard.filter((v) => v === "v3")).toEqual(["v3"]);
      expect(heard[0]).toBe("v1");
    } finally {
      stop();
      conn.close();
    }
  });
});

/**
 * API keys: key format and checksum, the keys file's validation, authentication (valid,
 * unknown, missing, constant-time compare), and the store's reloads (revocation by file change,
 * broken or vanished file keeps the previous set), with every log line captured and searched
 * for keys and their hashes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, spyOn, test } from "bun:test";
import crypto from "node:crypto";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  generateKey,
  KEY_PREFIX,
  KeySet,
  KeyStore,
  type KeyStoreEvent,
  looksLikeKey,
  parseKeysFile,
  sha256Hex,
} from "../../../src/auth/apikey.ts";
import { ConfigError } from "../../../src/config.ts";
import { createLogger } from "../../../src/telemetry/log.ts";
import { waiter } from "../../rig.ts";

const KEY_SHAPE = /^adsrv_[a-z2-7]{56}$/;
const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** An independent SHA-256 (Bun's hasher, not the module's). */
function sha256(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

function entry(name: string, hash: string, rateLimit?: number): string {
  return `[[client]]\nname = "${name}"\nkey_sha256 = "${hash}"\n${rateLimit === undefined ? "" : `rate_limit = ${rateLimit}\n`}`;
}

function parseError(text: string): string {
  try {
    parseKeysFile(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("key format", () => {
  test("a key is the prefix, 240 random bits in base32 and a checksum", () => {
    const { key, sha256: hash } = generateKey();
    expect(key).toMatch(KEY_SHAPE);
    expect(key.startsWith(KEY_PREFIX)).toBe(true);
    expect(hash).toBe(sha256(key));
    expect(sha256Hex(key)).toBe(hash);
    expect(looksLikeKey(key)).toBe(true);
  });

  test("keys are distinct and their random bits balanced", () => {
    const keys = new Set<string>();
    let ones = 0;
    let bits = 0;
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const { key } = generateKey();
      keys.add(key);
      // 48 characters × 5 bits = 240 random bits; the last 8 characters are the checksum.
      for (const c of key.slice(6, 54)) {
        const v = ALPHABET.indexOf(c);
        counts.set(c, (counts.get(c) ?? 0) + 1);
        for (let b = 0; b < 5; b++) ones += (v >> b) & 1;
        bits += 5;
      }
    }
    expect(keys.size).toBe(2000);
    expect(bits).toBe(2000 * 240);
    // 480,000 fair bits: mean 240,000, standard deviation ~346. Allow 6 sd.
    expect(Math.abs(ones - bits / 2)).toBeLessThan(2100);
    // Every base32 symbol appears about 3,000 times (sd ~54).
    expect(counts.size).toBe(32);
    for (const n of counts.values()) expect(Math.abs(n - 3000)).toBeLessThan(350);
  });

  test("the checksum catches every single-character typo and adjacent swap", () => {
    const { key } = generateKey();
    for (let i = KEY_PREFIX.length; i < key.length; i++) {
      for (const c of ALPHABET) {
        if (c === key[i]) continue;
        expect(looksLikeKey(key.slice(0, i) + c + key.slice(i + 1))).toBe(false);
      }
      const next = key[i + 1];
      if (next !== undefined && next !== key[i]) {
        expect(looksLikeKey(key.slice(0, i) + next + key[i] + key.slice(i + 2))).toBe(false);
      }
    }
  });

  test.each([
    ["empty", ""],
    ["no prefix", "x".repeat(56)],
    ["other prefix", `adsrx_${"a".repeat(56)}`],
    ["too short", `adsrv_${"a".repeat(55)}`],
    ["too long", `adsrv_${"a".repeat(57)}`],
    ["outside base32", `adsrv_${"1".repeat(56)}`],
  ])("looksLikeKey refuses %s", (_label, value) => expect(looksLikeKey(value)).toBe(false));

  test("looksLikeKey refuses an upper-cased key and surrounding spaces", () => {
    const { key } = generateKey();
    expect(looksLikeKey(key.toUpperCase())).toBe(false);
    expect(looksLikeKey(` ${key}`)).toBe(false);
    expect(looksLikeKey(`${key}\n`)).toBe(false);
  });

  test("random bits come from crypto.getRandomValues", () => {
    const spy = spyOn(crypto, "getRandomValues");
    try {
      generateKey();
      expect(spy).toHaveBeenCalledTimes(1);
      const arg = spy.mock.calls[0]?.[0] as Uint8Array;
      expect(arg.byteLength * 8).toBeGreaterThanOrEqual(128);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("parseKeysFile", () => {
  const h1 = sha256("one");
  const h2 = sha256("two");

  test("clients with and without a rate limit; hashes lower-cased", () => {
    const text = `# clients\n${entry("game-ios", h1.toUpperCase(), 50)}\n${entry("partner.acme_2", h2, 0.5)}\n${entry("c", sha256("three"))}`;
    expect(parseKeysFile(text)).toEqual([
      { name: "game-ios", keySha256: h1, rateLimit: 50 },
      { name: "partner.acme_2", keySha256: h2, rateLimit: 0.5 },
      { name: "c", keySha256: sha256("three") },
    ]);
  });

  test("an empty file has no clients", () => {
    expect(parseKeysFile("")).toEqual([]);
    expect(parseKeysFile("# nobody yet\n")).toEqual([]);
  });

  test.each([
    ["not TOML", "[[client]\nname = ", /not valid TOML/],
    ["a top-level key", `version = 2\n${entry("a", h1)}`, /unexpected top-level key "version"/],
    ["[client] instead of [[client]]", `[client]\nname = "a"\nkey_sha256 = "${h1}"\n`, /\[\[client\]\]/],
    ["client = 5", "client = 5\n", /array of tables/],
    ["a client that is not a table", "client = [1]\n", /client #1 is not a table/],
    ["a missing name", `[[client]]\nkey_sha256 = "${h1}"\n`, /client #1: missing field "name"/],
    ["a name with a space", entry("a b", h1), /client #1: "name" must be 1 to 64/],
    ["an empty name", entry("", h1), /client #1: "name"/],
    ["a 65-character name", entry("n".repeat(65), h1), /client #1: "name"/],
    ["a numeric name", `[[client]]\nname = 7\nkey_sha256 = "${h1}"\n`, /client #1: "name"/],
    [
      "a missing hash",
      `${entry("a", h1)}[[client]]\nname = "b"\n`,
      /client #2 \("b"\): missing field "key_sha256"/,
    ],
    ["a short hash", entry("a", h1.slice(1)), /client #1 \("a"\): "key_sha256" must be 64 hexadecimal/],
    ["a non-hex hash", entry("a", `${h1.slice(1)}g`), /"key_sha256" must be 64 hexadecimal/],
    ["an unknown field", `${entry("a", h1)}ratelimit = 5\n`, /client #1: unknown field "ratelimit"/],
    ["rate_limit 0", entry("a", h1, 0), /client #1 \("a"\): "rate_limit" must be a number/],
    ["rate_limit -1", entry("a", h1, -1), /"rate_limit"/],
    ["rate_limit inf", entry("a", h1).concat("rate_limit = inf\n"), /"rate_limit"/],
    ["rate_limit as a string", entry("a", h1).concat('rate_limit = "5"\n'), /"rate_limit"/],
    [
      "a duplicate name",
      `${entry("a", h1)}${entry("b", h2)}${entry("a", sha256("x"))}`,
      /client #3 \("a"\): duplicate name, already used by client #1/,
    ],
    [
      "a duplicate hash",
      `${entry("a", h1)}${entry("b", h1.toUpperCase())}`,
      /client #2 \("b"\): duplicate key_sha256, already used by client #1/,
    ],
  ])("refuses %s", (_label, text, message) => {
    expect(parseError(text)).toMatch(message);
  });

  test("a key pasted where its hash belongs is refused without being quoted", () => {
    const { key } = generateKey();
    const message = parseError(entry("a", key));
    expect(message).toMatch(/holds a key, not its hash/);
    expect(message).not.toContain(key);
    expect(message).not.toContain(key.slice(6, 30));
  });

  test("a `key` field is refused without quoting its value", () => {
    const { key } = generateKey();
    const message = parseError(`[[client]]\nname = "a"\nkey = "${key}"\n`);
    expect(message).toMatch(/unknown field "key" \(store key_sha256, never the key itself\)/);
    expect(message).not.toContain(key);
  });

  test("TOML errors never quote secrets, even when a key is used as a TOML key", () => {
    const { key } = generateKey();
    const message = parseError(`${key} = 1\n${key} = 2\n`);
    expect(message).toMatch(/not valid TOML/);
    expect(message).not.toContain(key.slice(6));
  });
});

describe("KeySet.authenticate", () => {
  const alice = generateKey();
  const bob = generateKey();
  const set = new KeySet([
    { name: "alice", keySha256: alice.sha256, rateLimit: 5 },
    { name: "bob", keySha256: bob.sha256 },
  ]);

  test("a known key gives its client", () => {
    expect(set.size).toBe(2);
    expect(set.authenticate(alice.key)).toEqual({ ok: true, client: { name: "alice", rateLimit: 5 } });
    expect(set.authenticate(bob.key)).toEqual({ ok: true, client: { name: "bob" } });
  });

  test("no header or an empty one is missing", () => {
    expect(set.authenticate(null)).toEqual({ ok: false, reason: "missing" });
    expect(set.authenticate("")).toEqual({ ok: false, reason: "missing" });
  });

  test("well-formed unknown keys, typos and near misses are unknown", () => {
    const stranger = generateKey().key;
    const typo = alice.key.slice(0, 10) + (alice.key[10] === "a" ? "b" : "a") + alice.key.slice(11);
    for (const value of [
      stranger,
      typo,
      alice.key.toUpperCase(),
      `${alice.key} `,
      `${alice.key}, ${bob.key}`,
      alice.sha256, // the hash is not the key
      `Bearer ${alice.key}`,
      "x",
    ]) {
      expect(set.authenticate(value)).toEqual({ ok: false, reason: "unknown" });
    }
  });

  test("the stored and presented hashes are compared with crypto.timingSafeEqual", () => {
    const spy = spyOn(crypto, "timingSafeEqual");
    try {
      expect(set.authenticate(alice.key).ok).toBe(true);
      expect(spy).toHaveBeenCalledTimes(1);
      const [a, b] = spy.mock.calls[0] as unknown as [Uint8Array, Uint8Array];
      expect(Buffer.from(a).toString("hex")).toBe(alice.sha256);
      expect(Buffer.from(b).toString("hex")).toBe(alice.sha256);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("KeyStore", () => {
  let dir: string;
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(line) });
  /** Every key and hash used in this block: none may appear in any log line. */
  const secrets: string[] = [];
  const stores: KeyStore[] = [];

  function key(): { key: string; sha256: string } {
    const k = generateKey();
    secrets.push(k.key, k.sha256, k.key.slice(KEY_PREFIX.length, KEY_PREFIX.length + 16));
    return k;
  }

  async function open(path: string, pollMs = 20) {
    const events = waiter<KeyStoreEvent>();
    const store = await KeyStore.open(path, { logger, pollMs, onEvent: events.push });
    stores.push(store);
    return { store, events };
  }

  /** Waits for an event, failing (not hanging) after `ms`. */
  async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Replaces the file the way editors and config tools do: write a temporary file, rename it. */
  async function replace(path: string, text: string): Promise<void> {
    const temp = `${path}.tmp`;
    await writeFile(temp, text);
    await rename(temp, path);
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "adsrv-apikey-"));
  });

  afterEach(() => {
    for (const s of stores.splice(0)) s.close();
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("opening a missing or invalid file is a ConfigError", async () => {
    await expect(KeyStore.open(join(dir, "absent.toml"), { logger })).rejects.toThrow(ConfigError);
    const bad = join(dir, "bad.toml");
    const k = key();
    await writeFile(bad, entry("a", k.key)); // a key where its hash belongs
    const error = await KeyStore.open(bad, { logger }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).not.toContain(k.key);
    await expect(KeyStore.open(bad, { logger, pollMs: 0 })).rejects.toThrow(/poll interval/);
  });

  test("a client removed from the file is refused at the next poll (default 1 s)", async () => {
    const path = join(dir, "revoke.toml");
    const alice = key();
    const bob = key();
    await writeFile(path, entry("alice", alice.sha256) + entry("bob", bob.sha256, 3));
    const { store, events } = await open(path, 1000);
    expect(store.authenticate(alice.key)).toEqual({ ok: true, client: { name: "alice" } });
    expect(store.authenticate(bob.key)).toEqual({ ok: true, client: { name: "bob", rateLimit: 3 } });

    const reloaded = events.next((e) => e.kind === "loaded");
    const started = performance.now();
    await replace(path, entry("bob", bob.sha256, 3));
    expect(await within(reloaded, 5000, "reload")).toEqual({ kind: "loaded", clients: 1 });
    // One poll interval plus scheduling slack.
    expect(performance.now() - started).toBeLessThan(2500);
    expect(store.authenticate(alice.key)).toEqual({ ok: false, reason: "unknown" });
    expect(store.authenticate(bob.key).ok).toBe(true);
  });

  test("a file rewritten in place, same size, right after loading, is still noticed", async () => {
    const path = join(dir, "inplace.toml");
    const a = key();
    const b = key();
    await writeFile(path, entry("same", a.sha256));
    const { store, events } = await open(path);
    const reloaded = events.next((e) => e.kind === "loaded");
    await writeFile(path, entry("same", b.sha256)); // same length, likely the same mtime tick
    await within(reloaded, 5000, "reload");
    expect(store.authenticate(a.key).ok).toBe(false);
    expect(store.authenticate(b.key)).toEqual({ ok: true, client: { name: "same" } });
  });

  test("a broken file keeps the previous keys and warns once; a fixed file is loaded", async () => {
    const path = join(dir, "broken.toml");
    const alice = key();
    const carol = key();
    await writeFile(path, entry("alice", alice.sha256));
    const { store, events } = await open(path);

    const before = lines.length;
    const rejected = events.next();
    // Broken: the operator pasted carol's key instead of its hash, next to a duplicate name.
    await replace(path, entry("alice", alice.sha256) + entry("carol", carol.key));
    const event = await within(rejected, 5000, "rejection");
    expect(event.kind).toBe("rejected");
    expect(store.authenticate(alice.key).ok).toBe(true);
    expect(store.authenticate(carol.key).ok).toBe(false);
    // Several polls later, still one warning for this state of the file.
    await store.check();
    await store.check();
    const warnings = lines.slice(before).filter((l) => JSON.parse(l).level === "warn");
    expect(warnings.length).toBe(1);
    expect(JSON.parse(warnings[0] ?? "{}")).toMatchObject({
      msg: "api keys file change ignored, keeping the previous keys",
      path,
      clients: 1,
    });
    expect(warnings[0]).toMatch(/client #2 \(\\"carol\\"\)/);

    const loaded = events.next((e) => e.kind === "loaded");
    await replace(path, entry("carol", carol.sha256));
    expect(await within(loaded, 5000, "reload")).toEqual({ kind: "loaded", clients: 1 });
    expect(store.authenticate(alice.key).ok).toBe(false);
    expect(store.authenticate(carol.key).ok).toBe(true);
  });

  test("a vanished file keeps the previous keys until it comes back", async () => {
    const path = join(dir, "vanish.toml");
    const alice = key();
    await writeFile(path, entry("alice", alice.sha256));
    const { store, events } = await open(path);

    const gone = events.next();
    await rm(path);
    expect(await within(gone, 5000, "unreadable event")).toEqual({
      kind: "unreadable",
      error: "cannot read the keys file (ENOENT)",
    });
    expect(store.authenticate(alice.key).ok).toBe(true);

    // The same content back: nothing to revoke, but the store reports it is in step again.
    const back = events.next();
    await writeFile(path, entry("alice", alice.sha256));
    expect(await within(back, 5000, "reload")).toEqual({ kind: "loaded", clients: 1 });
    expect(store.authenticate(alice.key).ok).toBe(true);
  });

  test("check() without changes does nothing; check(true) reloads", async () => {
    const path = join(dir, "quiet.toml");
    const alice = key();
    await writeFile(path, entry("alice", alice.sha256));
    const { store } = await open(path, 60_000);
    expect(await store.check()).toBeNull();
    expect(await store.check(true)).toEqual({ kind: "loaded", clients: 1 });
    expect(store.keys.size).toBe(1);
  });

  test("authentication through the store never logs; loads log the path and a count only", async () => {
    const path = join(dir, "logs.toml");
    const alice = key();
    await writeFile(path, entry("alice", alice.sha256));
    const before = lines.length;
    const { store } = await open(path);
    for (let i = 0; i < 10; i++) {
      store.authenticate(alice.key);
      store.authenticate(key().key);
      store.authenticate(null);
    }
    const added = lines.slice(before).map((l) => JSON.parse(l));
    expect(added).toEqual([
      expect.objectContaining({ level: "info", msg: "api keys loaded", path, clients: 1 }),
    ]);
  });

  // Runs last in this block: covers every line logged by the tests above.
  test("no key, key fragment or key hash appears in any log line", () => {
    expect(lines.length).toBeGreaterThan(5);
    expect(secrets.length).toBeGreaterThan(20);
    for (const line of lines) for (const s of secrets) expect(line).not.toContain(s);
  });
});

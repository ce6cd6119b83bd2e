/**
 * The supervised connection against a private redis-server (unix socket), and the Bun
 * RedisClient behaviours it relies on.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisClient } from "bun";
import { openRedis, type StoreConnection, StoreError } from "../../../src/store/redis.ts";
import { silentLogger } from "../../../src/telemetry/log.ts";
import { type PrivateRedis, startRedis } from "../../fakes/redis.ts";
import { memoryLogger, timed, until } from "./helpers.ts";

let redis: PrivateRedis;
let admin: RedisClient;
const open: StoreConnection[] = [];

function connect(options: Partial<Parameters<typeof openRedis>[1]> = {}): StoreConnection {
  const conn = openRedis(redis.url, {
    log: silentLogger,
    reconnectBaseMs: 50,
    reconnectMaxMs: 200,
    ...options,
  });
  open.push(conn);
  return conn;
}

function kindOf(error: unknown): string {
  return error instanceof StoreError ? error.kind : `not a StoreError: ${String(error)}`;
}

beforeAll(async () => {
  redis = await startRedis();
  admin = await redis.admin();
});

afterAll(async () => {
  for (const conn of open) conn.close();
  await redis?.stop();
});

describe("the test rig", () => {
  test("refuses port 6379 and can run on a free TCP port", async () => {
    await expect(startRedis({ transport: "tcp", port: 6379 })).rejects.toThrow(/6379/);
    const tcp = await startRedis({ transport: "tcp" });
    try {
      expect(tcp.port).not.toBe(6379);
      expect(tcp.url).toBe(`redis://127.0.0.1:${tcp.port}`);
      const client = await tcp.admin();
      expect(await client.send("PING", [])).toBe("PONG");
    } finally {
      await tcp.stop();
    }
  });
});

describe("Bun RedisClient behaviour relied on (Bun 1.4.5)", () => {
  test("no command timeout: a GET waits behind DEBUG SLEEP", async () => {
    const client = new RedisClient(redis.url, { autoReconnect: false });
    await client.connect();
    const sleeping = admin.send("DEBUG", ["SLEEP", "0.6"]);
    await Bun.sleep(20);
    const r = await timed(() => client.get("nothing"));
    await sleeping;
    client.close();
    expect(r.ok).toBe(true);
    expect(r.ms).toBeGreaterThan(250); // far past any deadline we would set
  });

  test("enableOfflineQueue: false rejects at once while disconnected; the default queue waits", async () => {
    const missing = `redis+unix://${redis.socket}.missing`;
    const strict = new RedisClient(missing, { enableOfflineQueue: false, autoReconnect: false });
    const r = await timed(() => strict.send("PING", []));
    expect(r.ok).toBe(false);
    expect(r.ms).toBeLessThan(50);
    strict.close();

    const queued = new RedisClient(missing, { connectionTimeout: 100 });
    let settled = false;
    const pending = queued.send("PING", []).then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    await Bun.sleep(300);
    expect(settled).toBe(false);
    queued.close();
    await pending;
  });

  test("with autoReconnect: false, onclose fires when the server drops the connection", async () => {
    const client = new RedisClient(redis.url, { autoReconnect: false });
    await client.connect();
    let closed = false;
    client.onclose = () => {
      closed = true;
    };
    const name = `probe-${crypto.randomUUID()}`;
    await client.send("CLIENT", ["SETNAME", name]);
    const list = String(await admin.send("CLIENT", ["LIST"]));
    const id = list
      .split("\n")
      .find((line) => line.includes(`name=${name}`))
      ?.match(/^id=(\d+)/)?.[1];
    expect(id).toBeDefined();
    await admin.send("CLIENT", ["KILL", "ID", id as string]);
    await until(() => closed, 2_000, "onclose");
    expect(client.connected).toBe(false);
    client.close();
  });

  test("connectionTimeout bounds connect() to a stopped server", async () => {
    redis.pause();
    try {
      const client = new RedisClient(redis.url, { autoReconnect: false, connectionTimeout: 200 });
      const r = await timed(() => client.connect());
      client.close();
      expect(r.ok).toBe(false);
      expect(r.ms).toBeGreaterThan(150);
      expect(r.ms).toBeLessThan(600);
    } finally {
      redis.resume();
    }
  });

  test("caveat: re-subscribing on a reused client doubles messages (hence a fresh client per connection)", async () => {
    const client = new RedisClient(redis.url, { autoReconnect: false, enableOfflineQueue: false });
    await client.connect();
    const got: string[] = [];
    await client.subscribe("bun-caveat", (m) => got.push(m));
    await admin.send("CLIENT", ["KILL", "TYPE", "pubsub"]);
    await until(() => !client.connected, 2_000, "disconnect");
    await client.connect();
    await client.subscribe("bun-caveat", (m) => got.push(`again:${m}`));
    await admin.send("PUBLISH", ["bun-caveat", "x"]);
    await until(() => got.length >= 1, 2_000, "message");
    await Bun.sleep(50);
    client.close();
    expect(got.sort()).toEqual(["again:x", "x"]);
  });
});

describe("openRedis", () => {
  test("calls and scripts work; an error reply is kind 'reply' and does not trip the breaker", async () => {
    const conn = connect({ breakerThreshold: 2 });
    expect(await conn.waitConnected(2_000)).toBe(true);
    expect(await conn.call("SET", ["adsrv:test:k", "v"])).toBe("OK");
    expect(await conn.call("GET", ["adsrv:test:k"])).toBe("v");
    expect(await conn.eval("return ARGV[1] .. KEYS[1]", ["k"], ["a"])).toBe("ak");
    for (let i = 0; i < 5; i++) {
      const r = await timed(() => conn.call("NOSUCHCOMMAND"));
      expect(kindOf(r.error)).toBe("reply");
    }
    expect(conn.state()).toBe("closed");
    expect(conn.stats().errors).toEqual({ timeout: 0, unavailable: 0, breaker_open: 0, reply: 5 });
  });

  test("calls of one turn go out together; one the client refuses fails alone, the others answer", async () => {
    const conn = connect();
    expect(await conn.waitConnected(2_000)).toBe(true);
    // Bun's client throws synchronously on a non-string argument.
    const bad = conn.call("SET", ["adsrv:test:bad", undefined as unknown as string]);
    const good = Array.from({ length: 20 }, (_, i) => conn.call("ECHO", [`m${i}`]));
    await expect(bad).rejects.toMatchObject({ kind: "reply" });
    expect(await Promise.all(good)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
    expect(conn.stats().errors.timeout).toBe(0);
  });

  test("a turn with more calls than one batch holds: every call answers, in order, each once", async () => {
    const conn = connect();
    expect(await conn.waitConnected(2_000)).toBe(true);
    await conn.call("DEL", ["adsrv:test:order"]);
    // 50 calls in one turn: sent as batches of 16 as they are made, the rest at the turn's end.
    const replies = await Promise.all(
      Array.from({ length: 50 }, () => conn.call("INCR", ["adsrv:test:order"])),
    );
    expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(await conn.call("GET", ["adsrv:test:order"])).toBe("50");
    expect(conn.stats().errors).toEqual({ timeout: 0, unavailable: 0, breaker_open: 0, reply: 0 });
  });

  test("EVALSHA falls back to EVAL after the script cache is flushed, without counting an error", async () => {
    const conn = connect();
    await conn.waitConnected(2_000);
    const script = "return 41 + tonumber(ARGV[1])";
    expect(await conn.eval(script, [], ["1"])).toBe(42);
    await admin.send("SCRIPT", ["FLUSH"]);
    expect(await conn.eval(script, [], ["2"])).toBe(43);
    expect(conn.stats().errors.reply).toBe(0);
  });

  test("server errors that mean 'not now' (OOM) count as unavailable", async () => {
    const conn = connect();
    await conn.waitConnected(2_000);
    await admin.send("CONFIG", ["SET", "maxmemory", "1"]);
    try {
      const r = await timed(() => conn.call("SET", ["adsrv:test:oom", "x"]));
      expect(kindOf(r.error)).toBe("unavailable");
    } finally {
      await admin.send("CONFIG", ["SET", "maxmemory", "0"]);
    }
  });

  test("a call behind DEBUG SLEEP fails at its deadline (≈50 ms)", async () => {
    const conn = connect();
    await conn.waitConnected(2_000);
    const sleeping = admin.send("DEBUG", ["SLEEP", "0.4"]);
    await Bun.sleep(20);
    const r = await timed(() => conn.call("GET", ["adsrv:test:k"]));
    await sleeping;
    expect(kindOf(r.error)).toBe("timeout");
    expect(r.ms).toBeGreaterThanOrEqual(45);
    expect(r.ms).toBeLessThan(150);
    expect(await conn.call("PING")).toBe("PONG");
  });

  test("a call to a SIGSTOPped server fails at its deadline; calls work again after SIGCONT", async () => {
    const conn = connect({ commandTimeoutMs: 50 });
    await conn.waitConnected(2_000);
    redis.pause();
    let r: Awaited<ReturnType<typeof timed>>;
    try {
      r = await timed(() => conn.eval("return 1", [], []));
    } finally {
      redis.resume();
    }
    expect(kindOf(r.error)).toBe("timeout");
    expect(r.ms).toBeGreaterThanOrEqual(45);
    expect(r.ms).toBeLessThan(150);
    expect(await conn.call("PING", [], { timeoutMs: 1_000 })).toBe("PONG");
  });

  test("the breaker opens after N failures, refuses at once, half-opens after the cool-down, recovers", async () => {
    let clock = 1_000;
    const { log, lines } = memoryLogger();
    const conn = connect({ now: () => clock, breakerThreshold: 3, breakerCooldownMs: 2_000, log });
    await conn.waitConnected(2_000);
    redis.pause();
    try {
      for (let i = 0; i < 3; i++) {
        expect(conn.state()).toBe("closed");
        expect(kindOf((await timed(() => conn.call("PING"))).error)).toBe("timeout");
      }
      expect(conn.state()).toBe("open");
      const refused = await timed(() => conn.call("PING"));
      expect(kindOf(refused.error)).toBe("breaker_open");
      expect(refused.ms).toBeLessThan(30);

      clock += 1_999;
      expect(conn.state()).toBe("open");
      clock += 1;
      expect(conn.state()).toBe("half_open");
      // The trial fails while the server is still stopped: open again for a full cool-down.
      expect(kindOf((await timed(() => conn.call("PING"))).error)).toBe("timeout");
      expect(conn.state()).toBe("open");
      clock += 2_000;
    } finally {
      redis.resume();
    }
    // A call refused for its arguments does not take the half-open breaker's one trial.
    const badArgs = await timed(() => conn.call("SET", ["adsrv:test:k", 1 as unknown as string]));
    expect(kindOf(badArgs.error)).toBe("reply");
    expect(conn.state()).toBe("half_open");
    // Half-open: one trial goes through, a concurrent call is refused.
    const [trial, other] = await Promise.allSettled([
      conn.call("PING", [], { timeoutMs: 1_000 }),
      conn.call("PING", [], { timeoutMs: 1_000 }),
    ]);
    expect(trial).toEqual({ status: "fulfilled", value: "PONG" });
    expect(other.status === "rejected" && kindOf(other.reason)).toBe("breaker_open");
    expect(conn.state()).toBe("closed");
    expect(await conn.call("PING")).toBe("PONG");
    const stats = conn.stats();
    expect(stats.errors).toEqual({ timeout: 4, unavailable: 0, breaker_open: 2, reply: 1 });
    expect(stats.breakerOpened).toBe(1);
    expect(lines.filter((l) => l.includes("circuit breaker open"))).toHaveLength(1); // not per failed trial
    expect(lines.some((l) => l.includes("circuit breaker closed"))).toBe(true);
  });

  test("reconnects after the server restarts; calls fail fast as 'unavailable' meanwhile", async () => {
    const { log, lines } = memoryLogger();
    const conn = connect({ log, breakerThreshold: 1_000 });
    let connects = 0;
    conn.onConnect(() => connects++);
    await conn.waitConnected(2_000);
    expect(connects).toBe(1);
    await redis.down();
    try {
      await until(() => !conn.connected(), 2_000, "disconnect noticed");
      const r = await timed(() => conn.call("PING"));
      expect(kindOf(r.error)).toBe("unavailable");
      expect(r.ms).toBeLessThan(30);
    } finally {
      await redis.up();
      admin = await redis.admin();
    }
    expect(await conn.waitConnected(3_000)).toBe(true);
    expect(await conn.call("PING")).toBe("PONG");
    expect(connects).toBe(2);
    expect(conn.stats().reconnects).toBe(1);
    expect(lines.some((l) => l.includes("redis reconnected"))).toBe(true);
    expect(lines.join("\n")).not.toContain(redis.socket as string);
  });

  test("failed health pings drop a hung connection; a new one is made after SIGCONT", async () => {
    const conn = connect({ pingIntervalMs: 30, pingFailuresBeforeReconnect: 2, commandTimeoutMs: 20 });
    await conn.waitConnected(2_000);
    redis.pause();
    try {
      await until(() => !conn.connected(), 2_000, "connection dropped");
      expect(conn.stats().pingFailures).toBeGreaterThanOrEqual(2);
    } finally {
      redis.resume();
    }
    expect(await conn.waitConnected(3_000)).toBe(true);
    expect(await conn.call("PING")).toBe("PONG");
    expect(conn.stats().reconnects).toBeGreaterThanOrEqual(1);
  });

  test("subscriptions come back after CLIENT KILL TYPE pubsub, and messages are not doubled", async () => {
    const conn = connect();
    const got: string[] = [];
    let subscribed = 0;
    const sub = conn.subscribe(
      "adsrv:test:ch",
      (m) => got.push(m),
      () => subscribed++,
    );
    await until(() => subscribed === 1, 2_000, "subscribed");
    await admin.send("PUBLISH", ["adsrv:test:ch", "one"]);
    await until(() => got.length === 1, 2_000, "first message");

    await admin.send("CLIENT", ["KILL", "TYPE", "pubsub"]);
    await until(() => subscribed === 2, 3_000, "re-subscribed");
    expect(await admin.send("PUBSUB", ["NUMSUB", "adsrv:test:ch"])).toEqual(["adsrv:test:ch", 1]);
    await admin.send("PUBLISH", ["adsrv:test:ch", "two"]);
    await until(() => got.length >= 2, 2_000, "second message");
    await Bun.sleep(50);
    expect(got).toEqual(["one", "two"]);

    sub.unsubscribe();
    await until(
      async () =>
        JSON.stringify(await admin.send("PUBSUB", ["NUMSUB", "adsrv:test:ch"])) === '["adsrv:test:ch",0]',
      2_000,
      "unsubscribed",
    );
    await admin.send("PUBLISH", ["adsrv:test:ch", "three"]);
    await Bun.sleep(30);
    expect(got).toEqual(["one", "two"]);
  });

  test("two handlers on one channel: one SUBSCRIBE, each message once per handler", async () => {
    const conn = connect();
    const a: string[] = [];
    const b: string[] = [];
    let subscribedA = 0;
    let subscribedB = 0;
    const subA = conn.subscribe(
      "adsrv:test:two",
      (m) => a.push(m),
      () => subscribedA++,
    );
    conn.subscribe(
      "adsrv:test:two",
      (m) => b.push(m),
      () => subscribedB++,
    );
    await until(() => subscribedA === 1 && subscribedB === 1, 2_000, "both subscribed");
    expect(await admin.send("PUBSUB", ["NUMSUB", "adsrv:test:two"])).toEqual(["adsrv:test:two", 1]);
    await admin.send("PUBLISH", ["adsrv:test:two", "m1"]);
    await until(() => a.length === 1 && b.length === 1, 2_000, "m1");
    // A late handler, once the connection is up, is subscribed (and told so) too.
    const c: string[] = [];
    let subscribedC = 0;
    conn.subscribe(
      "adsrv:test:two",
      (m) => c.push(m),
      () => subscribedC++,
    );
    await until(() => subscribedC === 1, 2_000, "late handler");
    subA.unsubscribe(); // b and c still listen: the channel stays
    await admin.send("PUBLISH", ["adsrv:test:two", "m2"]);
    await until(() => b.length === 2 && c.length === 1, 2_000, "m2");
    await Bun.sleep(30);
    expect([a, b, c]).toEqual([["m1"], ["m1", "m2"], ["m2"]]);
    expect([subscribedA, subscribedB, subscribedC]).toEqual([1, 1, 1]);
  });

  test("subscriptions survive a server restart", async () => {
    const conn = connect();
    const got: string[] = [];
    let subscribed = 0;
    conn.subscribe(
      "adsrv:test:restart",
      (m) => got.push(m),
      () => subscribed++,
    );
    await until(() => subscribed === 1, 2_000, "subscribed");
    try {
      await redis.restart();
    } finally {
      admin = await redis.admin();
    }
    await until(() => subscribed === 2, 3_000, "re-subscribed after restart");
    await admin.send("PUBLISH", ["adsrv:test:restart", "after"]);
    await until(() => got.length === 1, 2_000, "message after restart");
    await Bun.sleep(30);
    expect(got).toEqual(["after"]);
  });

  test("close(): later calls fail as unavailable and waitConnected says false", async () => {
    const conn = connect();
    await conn.waitConnected(2_000);
    conn.close();
    expect(kindOf((await timed(() => conn.call("PING"))).error)).toBe("unavailable");
    expect(await conn.waitConnected(10)).toBe(false);
    expect(conn.connected()).toBe(false);
  });

  test("no server at all: calls fail at once, nothing hangs", async () => {
    const conn = openRedis(`redis+unix://${redis.socket}.absent`, { log: silentLogger, reconnectBaseMs: 50 });
    open.push(conn);
    expect(await conn.waitConnected(100)).toBe(false);
    const r = await timed(() => conn.call("PING"));
    expect(kindOf(r.error)).toBe("unavailable");
    expect(r.ms).toBeLessThan(30);
  });
});

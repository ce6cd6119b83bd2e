import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { JWK } from "jose";
import { errors, exportJWK, generateKeyPair } from "jose";
import { createJwksStore, type JwksStore, JwksUnavailableError } from "../../../src/auth/jwks.ts";

type Mode = "ok" | "500" | "redirect" | "huge" | "chunked" | "hang" | "malformed" | "empty";

/** A JWKS endpoint on loopback that counts GETs and can change keys or misbehave. */
function startJwksServer(initial: JWK[]) {
  let keys = initial;
  let mode: Mode = "ok";
  let gets = 0;
  let redirectTargetHits = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/elsewhere") {
        redirectTargetHits++;
        return Response.json({ keys });
      }
      gets++;
      switch (mode) {
        case "ok":
          return Response.json({ keys });
        case "500":
          return new Response("boom", { status: 500 });
        case "redirect":
          return new Response(null, { status: 302, headers: { Location: "/elsewhere" } });
        case "huge":
          return new Response(`{"keys":[],"pad":"${"x".repeat(2 * 1024 * 1024)}"}`);
        case "chunked": {
          // No Content-Length: the cap must hold while streaming.
          let sent = 0;
          const body = new ReadableStream({
            pull(controller) {
              if (sent >= 4 * 1024 * 1024) return controller.close();
              sent += 64 * 1024;
              controller.enqueue(new Uint8Array(64 * 1024).fill(32));
            },
          });
          return new Response(body);
        }
        case "hang":
          await Bun.sleep(2_000);
          return Response.json({ keys });
        case "malformed":
          return new Response("{not json");
        case "empty":
          return Response.json({ keys: [] });
      }
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/.well-known/jwks.json`,
    get gets() {
      return gets;
    },
    get redirectTargetHits() {
      return redirectTargetHits;
    },
    setKeys(next: JWK[]) {
      keys = next;
    },
    setMode(next: Mode) {
      mode = next;
    },
    stop: () => server.stop(true),
  };
}

/** A loopback URL where nothing listens. */
async function closedUrl(): Promise<string> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const url = `http://127.0.0.1:${server.port}/jwks.json`;
  await server.stop(true);
  return url;
}

async function publicJwk(kid: string, alg: "RS256" | "ES256" = "RS256"): Promise<JWK> {
  const { publicKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
}

/** A hand-driven clock for the refetch limit. */
function fakeClock(start = 1_800_000_000_000) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

let k1: JWK;
let k2: JWK;
let k3: JWK;
beforeAll(async () => {
  [k1, k2, k3] = await Promise.all([publicJwk("k1"), publicJwk("k2", "ES256"), publicJwk("k3")]);
});

const stores: JwksStore[] = [];
const servers: Array<{ stop: () => Promise<void> }> = [];
function track<T extends JwksStore>(store: T): T {
  stores.push(store);
  return store;
}
function serve(keys: JWK[]) {
  const server = startJwksServer(keys);
  servers.push(server);
  return server;
}
afterEach(() => {
  for (const store of stores.splice(0)) store.stop();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

describe("JWKS store", () => {
  test("initial load: ready, one GET, keys resolved by kid and alg", async () => {
    const clock = fakeClock();
    const server = serve([k1, k2]);
    const store = track(createJwksStore({ url: server.url, now: clock.now }));
    expect(store.ready).toBe(false);
    expect(await store.loaded).toBe(true);
    expect(store.ready).toBe(true);
    expect(server.gets).toBe(1);
    expect([...store.kids()].sort()).toEqual(["k1", "k2"]);
    const key = await store.getKey({ alg: "RS256", kid: "k1" });
    expect(key.type).toBe("public");
    expect((await store.getKey({ alg: "ES256", kid: "k2" })).algorithm.name).toBe("ECDSA");
    // A known kid with the wrong alg, or no kid at all, does not match and costs no fetch, even
    // when the refetch interval would allow one.
    clock.advance(60_000);
    await expect(store.getKey({ alg: "PS256" })).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    await expect(store.getKey({ alg: "ES256", kid: "k1" })).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    expect(store.stats()).toMatchObject({ fetches: 1, successes: 1, failures: 0, keys: 2 });
    expect(server.gets).toBe(1);
  });

  test("a flood of unknown kids costs one GET per 10 s interval (injected clock)", async () => {
    const clock = fakeClock();
    const server = serve([k1]);
    const store = track(createJwksStore({ url: server.url, now: clock.now, backgroundRefresh: false }));
    await store.loaded;
    expect(server.gets).toBe(1);

    // Within 10 s of the initial load: no refetch at all.
    clock.advance(5_000);
    const early = await Promise.allSettled(
      Array.from({ length: 100 }, () => store.getKey({ alg: "RS256", kid: crypto.randomUUID() })),
    );
    expect(early.every((r) => r.status === "rejected")).toBe(true);
    expect(server.gets).toBe(1);

    // Past the interval: 100 random kids within one (fake) second share one GET.
    clock.advance(5_001);
    const flood = Array.from({ length: 100 }, (_, i) => {
      if (i === 50) clock.advance(900);
      return store.getKey({ alg: "RS256", kid: crypto.randomUUID() });
    });
    const results = await Promise.allSettled(flood);
    expect(
      results.every((r) => r.status === "rejected" && r.reason instanceof errors.JWKSNoMatchingKey),
    ).toBe(true);
    expect(server.gets).toBe(2);

    // Still inside the interval after the flood's fetch: refused without a GET.
    clock.advance(9_000);
    await expect(store.getKey({ alg: "RS256", kid: "nope" })).rejects.toBeInstanceOf(
      errors.JWKSNoMatchingKey,
    );
    expect(server.gets).toBe(2);

    // Once 10 s have passed on the clock, exactly one more is allowed.
    clock.advance(1_000);
    await Promise.allSettled(
      Array.from({ length: 20 }, () => store.getKey({ alg: "RS256", kid: crypto.randomUUID() })),
    );
    expect(server.gets).toBe(3);
    expect(store.stats().unknownKidFetches).toBe(2);
    expect(store.stats().rateLimited).toBeGreaterThanOrEqual(100);
    // The known key still resolves throughout.
    expect((await store.getKey({ alg: "RS256", kid: "k1" })).type).toBe("public");
  });

  test("key rotation: a new kid is picked up once the interval has passed; removed keys stop resolving", async () => {
    const clock = fakeClock();
    const server = serve([k1]);
    const store = track(createJwksStore({ url: server.url, now: clock.now, backgroundRefresh: false }));
    await store.loaded;
    server.setKeys([k3]);

    clock.advance(3_000);
    await expect(store.getKey({ alg: "RS256", kid: "k3" })).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    expect(server.gets).toBe(1);

    clock.advance(7_000);
    expect((await store.getKey({ alg: "RS256", kid: "k3" })).type).toBe("public");
    expect(server.gets).toBe(2);
    expect(store.kids()).toEqual(["k3"]);
    await expect(store.getKey({ alg: "RS256", kid: "k1" })).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  test("background refresh picks up rotated keys on its own; stop() ends it", async () => {
    const server = serve([k1]);
    const store = track(createJwksStore({ url: server.url, refreshIntervalMs: 40 }));
    await store.loaded;
    server.setKeys([k1, k3]);
    const deadline = Date.now() + 3_000;
    while (!store.kids().includes("k3") && Date.now() < deadline) await Bun.sleep(10);
    expect([...store.kids()].sort()).toEqual(["k1", "k3"]);
    expect(server.gets).toBeGreaterThanOrEqual(2);

    store.stop();
    await Bun.sleep(20);
    const after = server.gets;
    await Bun.sleep(150);
    expect(server.gets).toBe(after);
    expect(await store.refresh()).toBe(false);
    expect(server.gets).toBe(after);
    // Cached keys keep working after stop().
    expect((await store.getKey({ alg: "RS256", kid: "k3" })).type).toBe("public");
  });

  test("stop() aborts a fetch in flight at once", async () => {
    const server = serve([k1]);
    server.setMode("hang");
    const store = track(createJwksStore({ url: server.url, retryBaseMs: 10 }));
    const started = performance.now();
    store.stop();
    expect(await store.loaded).toBe(false);
    expect(performance.now() - started).toBeLessThan(500);
    expect(store.stats().lastFailure).toBe("stopped");
    await Bun.sleep(60);
    expect(store.stats().fetches).toBe(1);
  });

  test("concurrent refreshes share one fetch (single flight)", async () => {
    const server = serve([k1]);
    const store = track(createJwksStore({ url: server.url, backgroundRefresh: false }));
    await store.loaded;
    const results = await Promise.all([store.refresh(), store.refresh(), store.refresh()]);
    expect(results).toEqual([true, true, true]);
    expect(server.gets).toBe(2);
  });

  describe("a failed fetch keeps the last good set", () => {
    test.each([
      ["500", "http_status"],
      ["redirect", "redirect"],
      ["huge", "too_large"],
      ["chunked", "too_large"],
      ["malformed", "malformed"],
      ["empty", "no_keys"],
    ] as const)("endpoint answers %s → %s", async (mode, failure) => {
      const server = serve([k1]);
      const store = track(createJwksStore({ url: server.url, backgroundRefresh: false }));
      await store.loaded;
      server.setKeys([k3]);
      server.setMode(mode);
      expect(await store.refresh()).toBe(false);
      expect(store.stats()).toMatchObject({ fetches: 2, failures: 1, lastFailure: failure, keys: 1 });
      expect(store.ready).toBe(true);
      expect(store.kids()).toEqual(["k1"]);
      expect((await store.getKey({ alg: "RS256", kid: "k1" })).type).toBe("public");
      expect(server.redirectTargetHits).toBe(0);
    });

    test("a hanging endpoint times out on time", async () => {
      const server = serve([k1]);
      const store = track(createJwksStore({ url: server.url, timeoutMs: 200, backgroundRefresh: false }));
      await store.loaded;
      server.setMode("hang");
      const started = performance.now();
      expect(await store.refresh()).toBe(false);
      expect(performance.now() - started).toBeLessThan(1_500);
      expect(store.stats().lastFailure).toBe("timeout");
      expect(store.kids()).toEqual(["k1"]);
    });

    test("the endpoint going away: cached keys still resolve", async () => {
      const server = startJwksServer([k1]);
      const store = track(createJwksStore({ url: server.url, backgroundRefresh: false }));
      await store.loaded;
      await server.stop();
      expect(await store.refresh()).toBe(false);
      expect(store.stats().lastFailure).toBe("connect");
      expect((await store.getKey({ alg: "RS256", kid: "k1" })).type).toBe("public");
    });
  });

  test("a redirect is never followed, even at the initial load", async () => {
    const server = serve([k1]);
    server.setMode("redirect");
    const store = track(createJwksStore({ url: server.url, backgroundRefresh: false }));
    expect(await store.loaded).toBe(false);
    expect(store.ready).toBe(false);
    expect(server.redirectTargetHits).toBe(0);
  });

  test("size cap is configurable and counts streamed bytes", async () => {
    const server = serve([k1, k2, k3]);
    const store = track(createJwksStore({ url: server.url, maxBytes: 300, backgroundRefresh: false }));
    expect(await store.loaded).toBe(false);
    expect(store.stats().lastFailure).toBe("too_large");
  });

  test("down from the start: not ready, getKey throws JwksUnavailableError, retries rate-limited", async () => {
    const clock = fakeClock();
    const store = track(
      createJwksStore({ url: await closedUrl(), now: clock.now, backgroundRefresh: false }),
    );
    expect(await store.loaded).toBe(false);
    expect(store.ready).toBe(false);
    await expect(store.getKey({ alg: "RS256", kid: "k1" })).rejects.toBeInstanceOf(JwksUnavailableError);
    expect(store.stats().fetches).toBe(1);
    clock.advance(10_000);
    await Promise.allSettled(Array.from({ length: 10 }, () => store.getKey({ alg: "RS256", kid: "k1" })));
    expect(store.stats()).toMatchObject({ fetches: 2, failures: 2, keys: 0 });
  });

  test("recovers once the endpoint comes up (next allowed fetch loads the keys)", async () => {
    const clock = fakeClock();
    const server = serve([k1]);
    server.setMode("500");
    const store = track(createJwksStore({ url: server.url, now: clock.now, backgroundRefresh: false }));
    expect(await store.loaded).toBe(false);
    server.setMode("ok");
    await expect(store.getKey({ alg: "RS256", kid: "k1" })).rejects.toBeInstanceOf(JwksUnavailableError);
    clock.advance(10_000);
    expect((await store.getKey({ alg: "RS256", kid: "k1" })).type).toBe("public");
    expect(store.ready).toBe(true);
  });

  test("background retries after failures, then loads", async () => {
    const server = serve([k1]);
    server.setMode("500");
    const store = track(createJwksStore({ url: server.url, retryBaseMs: 20, refreshIntervalMs: 60_000 }));
    expect(await store.loaded).toBe(false);
    await Bun.sleep(60);
    server.setMode("ok");
    const deadline = Date.now() + 3_000;
    while (!store.ready && Date.now() < deadline) await Bun.sleep(10);
    expect(store.ready).toBe(true);
    expect(store.stats().failures).toBeGreaterThanOrEqual(2);
  });

  test("only public signature keys are kept: oct, private, enc and unknown kty are dropped", async () => {
    const { privateKey } = await generateKeyPair("RS256", { extractable: true });
    const priv = { ...(await exportJWK(privateKey)), kid: "private" };
    const server = serve([
      k1,
      { kty: "oct", k: "c2VjcmV0", kid: "hmac", alg: "HS256" },
      priv,
      { ...k3, kid: "enc", use: "enc" },
      { kty: "XYZ", kid: "weird" },
    ]);
    const store = track(createJwksStore({ url: server.url, backgroundRefresh: false }));
    expect(await store.loaded).toBe(true);
    expect(store.kids()).toEqual(["k1"]);
    await expect(store.getKey({ alg: "HS256", kid: "hmac" })).rejects.toThrow();
  });

  test("a token without kid resolves only when exactly one key fits its alg", async () => {
    const server = serve([k1, k3]);
    const store = track(createJwksStore({ url: server.url, backgroundRefresh: false }));
    await store.loaded;
    await expect(store.getKey({ alg: "RS256" })).rejects.toBeInstanceOf(errors.JWKSMultipleMatchingKeys);
    expect((await store.getKey({ alg: "ES256" }).catch((e) => e)) instanceof errors.JWKSNoMatchingKey).toBe(
      true,
    );
    expect(server.gets).toBe(1);
  });
});

/**
 * Security at the edge, over real sockets: authentication (API keys, JWT via a fake Cognito),
 * rate limits, shedding, request deadlines, size limits, secure-by-default binding.
 * Abuse over sockets (slowloris, idle connections, TLS) is in abuse.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair, SignJWT } from "jose";
import { generateKey, sha256Hex } from "../../src/auth/apikey.ts";
import { type Config, makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { createLogger } from "../../src/telemetry/log.ts";
import { type FakeCognito, startFakeCognito } from "../fakes/cognito.ts";
import { runCli } from "../rig.ts";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const AD = "/ad_request?country=us&lang=eng";

interface Harness {
  server: RunningServer;
  lines: string[];
  clock: { now: number };
  get(path: string, headers?: Record<string, string>, init?: RequestInit): Promise<Response>;
}

async function start(overrides: Partial<Config>, deps: { keysPollMs?: number } = {}): Promise<Harness> {
  const lines: string[] = [];
  const clock = { now: Date.now() };
  const config = makeConfig({ listen: { host: "127.0.0.1", port: 0 }, ...overrides });
  const server = await startServer(config, {
    now: () => clock.now,
    log: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    ...deps,
  });
  cleanups.push(() => server.stop());
  return {
    server,
    lines,
    clock,
    get: (path, headers = {}, init = {}) => fetch(`${server.url}${path}`, { ...init, headers }),
  };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "adsrv-sec-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function cognito(): Promise<FakeCognito> {
  const fake = await startFakeCognito();
  cleanups.push(() => fake.stop());
  return fake;
}

function jwtConfig(fake: FakeCognito): Config["jwt"] {
  return {
    jwksUrl: fake.jwksUrl,
    issuer: fake.issuer,
    audience: [fake.clientId],
    algorithms: ["RS256", "ES256"],
  };
}

/** A well-formed RS256 token signed by a key no JWKS knows. */
async function strangerToken(): Promise<string> {
  const { privateKey } = await generateKeyPair("RS256");
  return new SignJWT({ sub: "s" })
    .setProtectedHeader({ alg: "RS256", kid: "unknown-kid" })
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(privateKey);
}

async function problemOf(res: Response): Promise<{ type: string; status: number; detail: string }> {
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  return (await res.json()) as { type: string; status: number; detail: string };
}

/** Sends raw bytes on a fresh connection and returns everything the server answers. */
async function rawRequest(port: number, text: string): Promise<string> {
  const { promise, resolve } = Promise.withResolvers<string>();
  let got = "";
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      open(socket) {
        socket.write(text);
      },
      data(_socket, chunk) {
        got += chunk.toString();
      },
      close() {
        resolve(got);
      },
    },
  });
  return promise;
}

/** Polls `check` every 100 ms until it is true or `ms` pass (for effects outside the test's control). */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await check()) return true;
    await Bun.sleep(100);
  }
  return check();
}

describe("secure by default", () => {
  test("a non-loopback address without authentication is refused before binding", async () => {
    const result = await runCli(["serve", "--listen", "0.0.0.0:0"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("refusing to serve anonymously on 0.0.0.0");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("--allow-anonymous serves there, with a warning", async () => {
    const h = await start({ listen: { host: "0.0.0.0", port: 0 }, allowAnonymous: true });
    expect(h.lines.some((l) => l.includes('"level":"warn"') && l.includes("without authentication"))).toBe(
      true,
    );
    expect((await fetch(`http://127.0.0.1:${h.server.port}${AD}`)).status).toBe(200);
  });

  test("with authentication configured, a non-loopback bind needs no flag", () => {
    expect(makeConfig({ listen: { host: "0.0.0.0", port: 0 }, apiKeysFile: "/x" }).apiKeysFile).toBe("/x");
  });
});

describe("API keys", () => {
  async function keyed(clients: { name: string; key: string; rate?: number }[]) {
    const dir = await tempDir();
    const file = join(dir, "keys.toml");
    const write = (list: typeof clients) =>
      writeFile(
        file,
        list
          .map(
            (c) =>
              `[[client]]\nname = "${c.name}"\nkey_sha256 = "${sha256Hex(c.key)}"\n${c.rate ? `rate_limit = ${c.rate}\n` : ""}`,
          )
          .join("\n"),
      );
    await write(clients);
    const h = await start({ apiKeysFile: file, rateLimit: { rate: 1000, burst: 1000 } }, { keysPollMs: 100 });
    return { h, write };
  }

  test("valid key 200; missing and unknown keys 401 with a challenge; the key never reaches the logs", async () => {
    const game = generateKey();
    const stranger = generateKey();
    const { h } = await keyed([{ name: "game-a", key: game.key }]);

    const ok = await h.get(AD, { "X-Api-Key": game.key });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-request-id")).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);

    const missing = await h.get(AD);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toContain('ApiKey realm="adsrv"');
    expect((await problemOf(missing)).type).toBe("urn:adsrv:problem:unauthorized");

    const unknown = await h.get(AD, { "X-Api-Key": stranger.key });
    expect(unknown.status).toBe(401);
    const body = await unknown.text();
    expect(body).not.toContain(stranger.key);

    // A key in the URL is refused before anything else, in any spelling of the name.
    for (const name of ["api_key", "API_KEY", "api%5Fkey"]) {
      const inQuery = await h.get(`${AD}&${name}=${game.key}`);
      expect(inQuery.status).toBe(400);
      expect(((await inQuery.json()) as { type: string }).type).toBe("urn:adsrv:problem:invalid-request");
    }
    expect((await h.get(`${AD}&player_id=api_key%3Dx`, { "X-Api-Key": game.key })).status).toBe(200);

    const logs = h.lines.join("\n");
    for (const secret of [game.key, stranger.key, game.sha256, stranger.sha256, game.key.slice(6, 30)]) {
      expect(logs).not.toContain(secret);
    }
    expect(logs).toContain('"reason":"api_key_unknown"');
  });

  test("a client removed from the file is refused within seconds, without a restart", async () => {
    const a = generateKey();
    const b = generateKey();
    const { h, write } = await keyed([
      { name: "a", key: a.key },
      { name: "b", key: b.key },
    ]);
    expect((await h.get(AD, { "X-Api-Key": b.key })).status).toBe(200);
    await write([{ name: "a", key: a.key }]);
    const revoked = await eventually(
      async () => (await h.get(AD, { "X-Api-Key": b.key })).status === 401,
      5_000,
    );
    expect(revoked).toBe(true);
    expect((await h.get(AD, { "X-Api-Key": a.key })).status).toBe(200);
  });

  test("a key's own rate_limit overrides the default", async () => {
    const slow = generateKey();
    const { h } = await keyed([{ name: "slow", key: slow.key, rate: 1 }]);
    expect((await h.get(AD, { "X-Api-Key": slow.key })).status).toBe(200);
    const refused = await h.get(AD, { "X-Api-Key": slow.key });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("ratelimit-policy")).toBe('"default";q=1;w=1');
  });

  test("an address that keeps failing authentication gets 429 after 20 failures", async () => {
    const { h } = await keyed([{ name: "a", key: generateKey().key }]);
    const statuses: number[] = [];
    for (let i = 0; i < 22; i++) statuses.push((await h.get(AD, { "X-Api-Key": generateKey().key })).status);
    expect(statuses.slice(0, 20).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(20)).toEqual([429, 429]);
  });
});

describe("JWT (Cognito-compatible)", () => {
  test("ID and access tokens are accepted; missing, expired, alg none and foreign issuers are 401", async () => {
    const fake = await cognito();
    const h = await start({ jwt: jwtConfig(fake) });
    const { idToken, accessToken } = await fake.tokensFor("alice");
    expect((await h.get(AD, { Authorization: `Bearer ${idToken}` })).status).toBe(200);
    expect((await h.get(AD, { Authorization: `Bearer ${accessToken}` })).status).toBe(200);
    expect((await h.get(AD, { Authorization: idToken })).status).toBe(200); // bare token, as gateways send

    const none = await h.get(AD);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="adsrv"');

    const now = Math.floor(Date.now() / 1000);
    const expired = await fake.sign({
      sub: "s",
      iss: fake.issuer,
      aud: fake.clientId,
      token_use: "id",
      iat: now - 7200,
      exp: now - 3600,
    });
    const res = await h.get(AD, { Authorization: `Bearer ${expired}` });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(await res.text()).not.toContain(expired.split(".")[1] as string);

    const [header, payload] = idToken.split(".") as [string, string];
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    expect(header).toBeString();
    expect((await h.get(AD, { Authorization: `Bearer ${unsigned}` })).status).toBe(401);

    const foreign = await fake.sign({
      sub: "s",
      iss: "https://evil.example",
      aud: fake.clientId,
      token_use: "id",
    });
    expect((await h.get(AD, { Authorization: `Bearer ${foreign}` })).status).toBe(401);
    expect(h.lines.join("\n")).not.toContain("eyJ");
  });

  test("a token minted by `adsrv token` works through `adsrv query`", async () => {
    const fake = await cognito();
    const h = await start({ jwt: jwtConfig(fake) });
    const aws = {
      AWS_ACCESS_KEY_ID: "AKIDADSRVTEST",
      AWS_SECRET_ACCESS_KEY: "adsrv-test-secret",
      AWS_REGION: "eu-west-1",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_CONFIG_FILE: "/nonexistent/adsrv/config",
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/adsrv/credentials",
    };
    const minted = await runCli(
      [
        "token",
        "--user-pool-id",
        fake.userPoolId,
        "--client-id",
        fake.clientId,
        "--username",
        "alice",
        "--password-stdin",
        "--endpoint",
        fake.endpoint,
      ],
      { env: aws, stdin: "correct horse battery staple\n" },
    );
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    const query = await runCli(["query", "us", "eng", "--server", h.server.url, "--json"], {
      env: { ADSRV_TOKEN: token },
    });
    expect(query.code).toBe(0);
    expect((JSON.parse(query.stdout) as { status: number }).status).toBe(200);
    const refused = await runCli(["query", "us", "eng", "--server", h.server.url]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain("401");
  });

  test("no signing key ever fetched: 503 with Retry-After, not 401", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const h = await start({
      jwt: {
        jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
        issuer: "https://issuer.example",
        audience: ["x"],
        algorithms: ["RS256"],
      },
      requestTimeoutMs: 2_000,
    });
    const res = await h.get(AD, { Authorization: `Bearer ${await strangerToken()}` });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
  });

  test("verification that outlasts the deadline answers 503 at the deadline, and excess load is shed at once", async () => {
    const { promise: jwksAsked, resolve: onJwksAsked } = Promise.withResolvers<void>();
    const hanging = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch: () => {
        onJwksAsked();
        return new Promise<Response>(() => {});
      },
    });
    cleanups.push(() => hanging.stop(true));
    const h = await start({
      jwt: {
        jwksUrl: `http://127.0.0.1:${hanging.port}/jwks.json`,
        issuer: "https://i.example",
        audience: ["x"],
        algorithms: ["RS256"],
      },
      requestTimeoutMs: 300,
      maxInFlight: 1,
    });
    const token = await strangerToken();
    const t0 = performance.now();
    const slow = h.get(AD, { Authorization: `Bearer ${token}` });
    // Once that one waits on the JWKS, the next is over the in-flight limit.
    await jwksAsked;
    while (h.server.inFlight() < 1) await Bun.sleep(5);
    const shed = await h.get(AD);
    expect(shed.status).toBe(503);
    expect(shed.headers.get("retry-after")).toBe("1");
    expect((await problemOf(shed)).type).toBe("urn:adsrv:problem:overloaded");
    const late = await slow;
    const elapsed = performance.now() - t0;
    expect(late.status).toBe(503);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2_000);
  });
});

describe("rate limits", () => {
  test("exact burst, then 429 with Retry-After and RateLimit fields; a refill after 1/rate seconds", async () => {
    const h = await start({ rateLimit: { rate: 5, burst: 5 } });
    const statuses: number[] = [];
    let last: Response | null = null;
    for (let i = 0; i < 6; i++) {
      last = await h.get(AD);
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect(last?.headers.get("retry-after")).toBe("1");
    expect(last?.headers.get("ratelimit-policy")).toBe('"default";q=5;w=1');
    expect(last?.headers.get("ratelimit")).toMatch(/^"default";r=0;t=\d+$/);
    h.clock.now += 199;
    expect((await h.get(AD)).status).toBe(429);
    h.clock.now += 1;
    const again = await h.get(AD);
    expect(again.status).toBe(200);
    expect(again.headers.get("ratelimit")).toMatch(/^"default";r=0;t=1$/);
  });

  test("clients behind a trusted proxy are limited by X-Forwarded-For; untrusted peers cannot spoof it", async () => {
    const trusting = await start({ rateLimit: { rate: 1, burst: 1 }, trustedProxies: ["127.0.0.0/8"] });
    expect((await trusting.get(AD, { "X-Forwarded-For": "203.0.113.1" })).status).toBe(200);
    expect((await trusting.get(AD, { "X-Forwarded-For": "203.0.113.2" })).status).toBe(200);
    expect((await trusting.get(AD, { "X-Forwarded-For": "203.0.113.1" })).status).toBe(429);

    const strict = await start({ rateLimit: { rate: 1, burst: 1 } });
    expect((await strict.get(AD, { "X-Forwarded-For": "203.0.113.1" })).status).toBe(200);
    expect((await strict.get(AD, { "X-Forwarded-For": "203.0.113.2" })).status).toBe(429);
  });
});

describe("the edge", () => {
  test("concurrent fills each carry their own request id (the fill headers are shared per catalog)", async () => {
    const h = await start({ apiKeysFile: null });
    const ids = Array.from({ length: 200 }, (_, i) => `game-${i}`);
    const answers = await Promise.all(ids.map((id) => h.get(AD, { "X-Request-Id": id })));
    expect(answers.map((r) => r.status)).toEqual(ids.map(() => 200));
    expect(answers.map((r) => r.headers.get("x-request-id"))).toEqual(ids);
    for (const r of answers) {
      expect(r.headers.get("cache-control")).toBe("no-store");
      expect(r.headers.get("adsrv-catalog-version")).toBe(h.server.holder.current?.version ?? "");
    }
    const generated = await Promise.all([h.get(AD), h.get(AD), h.get(AD)]);
    expect(new Set(generated.map((r) => r.headers.get("x-request-id"))).size).toBe(3);
  });

  test("request ids: a well-formed caller id is echoed, anything else replaced; both appear in the logs", async () => {
    const h = await start({ apiKeysFile: null });
    const echoed = await h.get(AD, { "X-Request-Id": "game-42.req:7" });
    expect(echoed.headers.get("x-request-id")).toBe("game-42.req:7");
    const replaced = await h.get(AD, { "X-Request-Id": "bad id\twith spaces" });
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);
    for (const path of ["/healthz", "/readyz", "/nope", "/ad_request?country=zz&lang=eng"]) {
      expect((await h.get(path)).headers.get("x-request-id")).toBeString();
    }
    // The id ties a request to its log lines (one per request at debug level).
    const logs = h.lines.join("\n");
    expect(logs).toContain('"request_id":"game-42.req:7"');
    expect(logs).toContain(`"request_id":"${replaced.headers.get("x-request-id")}"`);
  });

  test("a long query is 414; a body on GET is 400; every answer carries the security headers", async () => {
    const h = await start({});
    const long = await h.get(`${AD}&pad=${"a".repeat(5_000)}`);
    expect(long.status).toBe(414);
    // fetch() will not send a GET with a body: write the request by hand.
    const raw = await rawRequest(
      h.server.port,
      `GET ${AD} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`,
    );
    expect(raw).toStartWith("HTTP/1.1 400");
    expect(raw).toContain("urn:adsrv:problem:invalid-request");
    for (const res of [long, await h.get(AD), await h.get("/ad_request?country=us")]) {
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-request-id")).toBeString();
    }
    // Error answers also forbid framing (the JSON decision leaves these out: see docs/security.md).
    for (const res of [long, await h.get("/ad_request?country=us"), await h.get("/nope")]) {
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("content-security-policy")).toBe("frame-ancestors 'none'");
    }
  });
});

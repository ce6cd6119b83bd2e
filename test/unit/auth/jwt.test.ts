import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { CryptoKey, JWK, JWTPayload } from "jose";
import { base64url, exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import {
  createJwtVerifier,
  type JwtFailure,
  type JwtFailureReason,
  type JwtResult,
  type JwtVerifier,
  type JwtVerifierOptions,
  wwwAuthenticate,
} from "../../../src/auth/jwt.ts";

const ISS = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST";
const CLIENT = "client-a";
/** A fixed clock: claims are computed from it, so leeway edges are exact. */
const T0 = 1_800_000_000_000;
const NOW_S = T0 / 1000;

interface Pair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly jwk: JWK;
}

async function pair(alg: "RS256" | "ES256", kid: string): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** A JWKS endpoint on loopback that counts GETs; keys can be swapped. */
function startJwksServer(initial: JWK[]) {
  let keys = initial;
  let gets = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    fetch() {
      gets++;
      return Response.json({ keys });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/.well-known/jwks.json`,
    get gets() {
      return gets;
    },
    setKeys(next: JWK[]) {
      keys = next;
    },
    stop: () => server.stop(true),
  };
}

let rsa: Pair;
let ec: Pair;
let attacker: Pair;
let attackerEc: Pair;
let jwks: ReturnType<typeof startJwksServer>;
let verifier: JwtVerifier;
const extraServers: Array<{ stop: () => Promise<void> }> = [];
const extraVerifiers: JwtVerifier[] = [];

function makeVerifier(overrides: Partial<JwtVerifierOptions> = {}): JwtVerifier {
  const v = createJwtVerifier({
    jwksUrl: jwks.url,
    issuer: ISS,
    audience: CLIENT,
    now: () => T0,
    jwks: { backgroundRefresh: false },
    ...overrides,
  });
  extraVerifiers.push(v);
  return v;
}

beforeAll(async () => {
  [rsa, ec, attacker, attackerEc] = await Promise.all([
    pair("RS256", "rsa1"),
    pair("ES256", "ec1"),
    pair("RS256", "attacker"),
    pair("ES256", "attacker-ec"),
  ]);
  jwks = startJwksServer([rsa.jwk, ec.jwk]);
  verifier = createJwtVerifier({ jwksUrl: jwks.url, issuer: ISS, audience: CLIENT, now: () => T0 });
  await verifier.store.loaded;
});

afterEach(() => {
  for (const v of extraVerifiers.splice(0)) v.stop();
});

afterAll(async () => {
  verifier.stop();
  await Promise.all([jwks.stop(), ...extraServers.map((s) => s.stop())]);
});

/** Claims of a valid Cognito ID token at T0. */
function idClaims(extra: Record<string, unknown> = {}): JWTPayload {
  return {
    iss: ISS,
    sub: "user-1",
    aud: CLIENT,
    token_use: "id",
    iat: NOW_S - 60,
    exp: NOW_S + 3600,
    ...extra,
  } as JWTPayload;
}

/** Claims of a valid Cognito access token at T0 (no aud). */
function accessClaims(extra: Record<string, unknown> = {}): JWTPayload {
  return {
    iss: ISS,
    sub: "user-1",
    client_id: CLIENT,
    token_use: "access",
    scope: "aws.cognito.signin.user.admin",
    iat: NOW_S - 60,
    exp: NOW_S + 3600,
    ...extra,
  } as JWTPayload;
}

/** Removes the named claims. */
function without(claims: JWTPayload, ...names: string[]): JWTPayload {
  const copy = { ...claims };
  for (const name of names) delete copy[name];
  return copy;
}

async function sign(
  claims: JWTPayload,
  key: CryptoKey | Uint8Array = rsa.privateKey,
  header: Record<string, unknown> = { alg: "RS256", kid: "rsa1" },
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key);
}

const b64json = (value: unknown) => base64url.encode(JSON.stringify(value));

/** Asserts a 401 with the reason, and that nothing of the token leaks into the answer. */
function expectRejected(
  result: JwtResult,
  reason: JwtFailureReason,
  token: string,
  error: JwtFailure["error"] = "invalid_token",
): JwtFailure {
  expect(result).toMatchObject({ ok: false, status: 401, reason, error });
  const failure = result as JwtFailure;
  const header = wwwAuthenticate(failure);
  for (const part of token.split(".").filter((p) => p.length >= 8)) {
    expect(failure.detail).not.toContain(part);
    expect(header).not.toContain(part);
  }
  return failure;
}

describe("accepted tokens", () => {
  test("Cognito ID token (RS256, aud = client id)", async () => {
    const result = await verifier.verify(`Bearer ${await sign(idClaims())}`);
    expect(result).toMatchObject({ ok: true, subject: "user-1", tokenUse: "id" });
    if (result.ok) expect(result.claims.aud).toBe(CLIENT);
  });

  test("Cognito access token (ES256, no aud, client_id checked)", async () => {
    const token = await sign(accessClaims(), ec.privateKey, { alg: "ES256", kid: "ec1" });
    expect(await verifier.verify(`Bearer ${token}`)).toMatchObject({
      ok: true,
      subject: "user-1",
      tokenUse: "access",
    });
  });

  test("a token without token_use is checked against aud (string or array)", async () => {
    const plain = without(idClaims(), "token_use");
    expect(await verifier.verify(`Bearer ${await sign(plain)}`)).toMatchObject({ ok: true, tokenUse: null });
    const many = { ...plain, aud: ["someone-else", CLIENT] };
    expect(await verifier.verify(`Bearer ${await sign(many)}`)).toMatchObject({ ok: true });
    const wrong = await sign({ ...plain, aud: "someone-else" });
    expectRejected(await verifier.verify(`Bearer ${wrong}`), "audience", wrong);
    const none = await sign(without(plain, "aud"));
    expectRejected(await verifier.verify(`Bearer ${none}`), "audience", none);
  });

  test("several configured audiences: any of them, as aud or client_id", async () => {
    const v = makeVerifier({ audience: ["client-a", "client-b"] });
    expect(await v.verify(`Bearer ${await sign(idClaims({ aud: "client-b" }))}`)).toMatchObject({ ok: true });
    expect(await v.verify(`Bearer ${await sign(accessClaims({ client_id: "client-b" }))}`)).toMatchObject({
      ok: true,
    });
    const other = await sign(accessClaims({ client_id: "client-c" }));
    expectRejected(await v.verify(`Bearer ${other}`), "audience", other);
  });
});

describe("the Authorization header", () => {
  test.each([
    ["Bearer %s"],
    ["bearer %s"],
    ["BEARER    %s"],
    ["  Bearer %s  "],
    ["%s"], // bare token, as API gateway clients send
  ])("%p is accepted", async (shape) => {
    const token = await sign(idClaims());
    expect(await verifier.verify(shape.replace("%s", token))).toMatchObject({ ok: true });
  });

  test.each([null, undefined, "", "   "])(
    "missing (%p) → 401 invalid_request without error code",
    async (value) => {
      const result = await verifier.verify(value);
      expect(result).toMatchObject({ ok: false, status: 401, error: "invalid_request", reason: "missing" });
      expect(wwwAuthenticate(result as JwtFailure)).toBe('Bearer realm="adsrv"');
    },
  );

  test("other schemes and shapes are invalid_request", async () => {
    const token = await sign(idClaims());
    for (const value of ["Basic dXNlcjpwYXNzd29yZA==", "Bearer", `Bearer ${token} extra`, `Token ${token}`]) {
      const result = await verifier.verify(value);
      expectRejected(result, "malformed", token, "invalid_request");
      expect(wwwAuthenticate(result as JwtFailure)).toContain('error="invalid_request"');
    }
  });

  test("malformed tokens are invalid_token", async () => {
    for (const token of ["abc.def", "a.b.c", `${b64json({ alg: "RS256" })}.e30.!!`, "x".repeat(9000)]) {
      expectRejected(await verifier.verify(`Bearer ${token}`), "malformed", token);
    }
  });
});

describe("attacks", () => {
  test('alg "none" (unsigned) → 401 algorithm, whatever the kid', async () => {
    for (const header of [{ alg: "none" }, { alg: "none", kid: "rsa1" }, { alg: "None", kid: "rsa1" }]) {
      const token = `${b64json(header)}.${b64json(idClaims())}.`;
      expectRejected(await verifier.verify(`Bearer ${token}`), "algorithm", token);
    }
  });

  test("HS256 signed with the RSA public key (PEM, DER and JWK bytes) → 401 algorithm", async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
    const secrets = [
      new TextEncoder().encode(pem),
      new Uint8Array(der),
      new TextEncoder().encode(JSON.stringify(rsa.jwk)),
    ];
    for (const secret of secrets) {
      for (const alg of ["HS256", "HS384", "HS512"]) {
        const token = await sign(idClaims(), secret, { alg, kid: "rsa1" });
        expectRejected(await verifier.verify(`Bearer ${token}`), "algorithm", token);
      }
    }
  });

  test("HMAC or none can never be configured", () => {
    for (const algorithms of [["HS256"], ["none"], ["RS256", "HS256"], []]) {
      expect(() =>
        createJwtVerifier({ jwksUrl: jwks.url, issuer: ISS, audience: CLIENT, algorithms }),
      ).toThrow(/algorithm/i);
    }
  });

  test("the algorithm list comes from configuration: RS256-only refuses a valid ES256 token", async () => {
    const v = makeVerifier({ algorithms: ["RS256"] });
    const token = await sign(idClaims(), ec.privateKey, { alg: "ES256", kid: "ec1" });
    expectRejected(await v.verify(`Bearer ${token}`), "algorithm", token);
    expect(await v.verify(`Bearer ${await sign(idClaims())}`)).toMatchObject({ ok: true });
  });

  test("jku and x5u headers are ignored: the attacker's server is never contacted", async () => {
    let hits = 0;
    const evil = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      development: false,
      fetch() {
        hits++;
        return Response.json({ keys: [attacker.jwk] });
      },
    });
    extraServers.push({ stop: () => evil.stop(true) });
    const evilUrl = `http://127.0.0.1:${evil.port}/jwks.json`;
    for (const header of [
      { alg: "RS256", kid: "attacker", jku: evilUrl },
      { alg: "RS256", kid: "attacker", x5u: evilUrl },
      { alg: "RS256", kid: "rsa1", jku: evilUrl },
    ]) {
      const token = await sign(idClaims(), attacker.privateKey, header);
      const result = await verifier.verify(`Bearer ${token}`);
      expect(result.ok).toBe(false);
      expect((result as JwtFailure).status).toBe(401);
      expect(["unknown_key", "signature"]).toContain((result as JwtFailure).reason);
    }
    expect(hits).toBe(0);
  });

  test("an embedded jwk header is never used as the key", async () => {
    const embedded = await exportJWK(attacker.publicKey);
    for (const header of [
      { alg: "RS256", jwk: embedded },
      { alg: "RS256", kid: "rsa1", jwk: embedded },
    ]) {
      const token = await sign(idClaims(), attacker.privateKey, header);
      expectRejected(await verifier.verify(`Bearer ${token}`), "signature", token);
    }
    // And an x5c chain is no better.
    const token = await sign(idClaims(), attacker.privateKey, { alg: "RS256", kid: "rsa1", x5c: ["MIIB"] });
    expectRejected(await verifier.verify(`Bearer ${token}`), "signature", token);
  });

  test("a real kid with someone else's signature, or a tampered payload → 401 signature", async () => {
    const forged = await sign(idClaims(), attacker.privateKey, { alg: "RS256", kid: "rsa1" });
    expectRejected(await verifier.verify(`Bearer ${forged}`), "signature", forged);
    const forgedEc = await sign(accessClaims(), attackerEc.privateKey, { alg: "ES256", kid: "ec1" });
    expectRejected(await verifier.verify(`Bearer ${forgedEc}`), "signature", forgedEc);

    const good = await sign(idClaims());
    const [h, , s] = good.split(".");
    const tampered = `${h}.${b64json(idClaims({ sub: "admin" }))}.${s}`;
    expectRejected(await verifier.verify(`Bearer ${tampered}`), "signature", tampered);
  });

  test("a kid naming a key of another type (ES256 header, RSA kid) → 401 unknown_key without a fetch", async () => {
    const before = jwks.gets;
    const token = await sign(idClaims(), ec.privateKey, { alg: "ES256", kid: "rsa1" });
    expectRejected(await verifier.verify(`Bearer ${token}`), "unknown_key", token);
    expect(jwks.gets).toBe(before);
  });

  test("an unknown critical header → 401", async () => {
    const token = await new SignJWT(idClaims())
      .setProtectedHeader({ alg: "RS256", kid: "rsa1", crit: ["x-evil"], "x-evil": 1 })
      .sign(rsa.privateKey, { crit: { "x-evil": true } });
    expectRejected(await verifier.verify(`Bearer ${token}`), "malformed", token);
  });
});

describe("claims", () => {
  test("wrong or missing iss → 401 issuer", async () => {
    for (const iss of ["https://evil.example", `${ISS}/`, ISS.toUpperCase()]) {
      const token = await sign(idClaims({ iss }));
      expectRejected(await verifier.verify(`Bearer ${token}`), "issuer", token);
    }
    const token = await sign(without(idClaims(), "iss"));
    expectRejected(await verifier.verify(`Bearer ${token}`), "issuer", token);
  });

  test("ID token: aud must match (client_id does not count)", async () => {
    const wrong = await sign(idClaims({ aud: "client-z", client_id: CLIENT }));
    expectRejected(await verifier.verify(`Bearer ${wrong}`), "audience", wrong);
    const missing = await sign(without(idClaims(), "aud"));
    expectRejected(await verifier.verify(`Bearer ${missing}`), "audience", missing);
  });

  test("access token: client_id must match (aud does not count)", async () => {
    const wrong = await sign(accessClaims({ client_id: "client-z" }));
    expectRejected(await verifier.verify(`Bearer ${wrong}`), "audience", wrong);
    const missing = await sign(without(accessClaims(), "client_id"));
    expectRejected(await verifier.verify(`Bearer ${missing}`), "audience", missing);
    const audOnly = await sign(without(accessClaims({ aud: CLIENT }), "client_id"));
    expectRejected(await verifier.verify(`Bearer ${audOnly}`), "audience", audOnly);
    const numeric = await sign(accessClaims({ client_id: 42 }));
    expectRejected(await verifier.verify(`Bearer ${numeric}`), "audience", numeric);
  });

  test("token_use other than id/access, or not allowed by configuration → 401 token_use", async () => {
    for (const use of ["refresh", "ID", "", 1]) {
      const token = await sign(idClaims({ token_use: use }));
      expectRejected(await verifier.verify(`Bearer ${token}`), "token_use", token);
    }
    const accessOnly = makeVerifier({ tokenUses: ["access"] });
    const token = await sign(idClaims());
    expectRejected(await accessOnly.verify(`Bearer ${token}`), "token_use", token);
    expect(await accessOnly.verify(`Bearer ${await sign(accessClaims())}`)).toMatchObject({ ok: true });
  });

  test("exp within the 30 s leeway is accepted; beyond it is 401 expired", async () => {
    expect(await verifier.verify(`Bearer ${await sign(idClaims({ exp: NOW_S - 20 }))}`)).toMatchObject({
      ok: true,
    });
    const expired = await sign(idClaims({ exp: NOW_S - 40 }));
    const failure = expectRejected(await verifier.verify(`Bearer ${expired}`), "expired", expired);
    expect(wwwAuthenticate(failure)).toBe(
      'Bearer realm="adsrv", error="invalid_token", error_description="token has expired"',
    );
  });

  test("nbf within the leeway is accepted; further in the future is 401 not_yet_valid", async () => {
    expect(await verifier.verify(`Bearer ${await sign(idClaims({ nbf: NOW_S + 20 }))}`)).toMatchObject({
      ok: true,
    });
    const early = await sign(idClaims({ nbf: NOW_S + 40 }));
    expectRejected(await verifier.verify(`Bearer ${early}`), "not_yet_valid", early);
  });

  test("the leeway is configurable", async () => {
    const strict = makeVerifier({ clockToleranceSec: 0 });
    const token = await sign(idClaims({ exp: NOW_S - 1 }));
    expectRejected(await strict.verify(`Bearer ${token}`), "expired", token);
    expect(await verifier.verify(`Bearer ${token}`)).toMatchObject({ ok: true });
  });

  test("exp and iat are required; iat beyond the leeway in the future is refused", async () => {
    const noExp = await sign(without(idClaims(), "exp"));
    expect(expectRejected(await verifier.verify(`Bearer ${noExp}`), "claims", noExp).detail).toContain("exp");
    const noIat = await sign(without(idClaims(), "iat"));
    expect(expectRejected(await verifier.verify(`Bearer ${noIat}`), "claims", noIat).detail).toContain("iat");
    const badExp = await sign(idClaims({ exp: "tomorrow" }));
    expectRejected(await verifier.verify(`Bearer ${badExp}`), "claims", badExp);
    expect(await verifier.verify(`Bearer ${await sign(idClaims({ iat: NOW_S + 20 }))}`)).toMatchObject({
      ok: true,
    });
    const future = await sign(idClaims({ iat: NOW_S + 40 }));
    expectRejected(await verifier.verify(`Bearer ${future}`), "claims", future);
  });

  test("sub must be a non-empty string", async () => {
    for (const claims of [without(idClaims(), "sub"), idClaims({ sub: "" }), idClaims({ sub: 7 })]) {
      const token = await sign(claims);
      expectRejected(await verifier.verify(`Bearer ${token}`), "claims", token);
    }
  });
});

describe("keys", () => {
  test("a flood of 100 tokens with random unknown kids costs at most one JWKS GET; one more after 10 s", async () => {
    let clock = T0;
    const server = startJwksServer([rsa.jwk]);
    extraServers.push(server);
    const v = makeVerifier({ jwksUrl: server.url, now: () => clock });
    await v.store.loaded;
    expect(server.gets).toBe(1);
    clock += 10_000;

    const tokens = await Promise.all(
      Array.from({ length: 100 }, () =>
        sign(idClaims(), attackerEc.privateKey, { alg: "ES256", kid: crypto.randomUUID() }),
      ),
    );
    const results = await Promise.all(
      tokens.map((token, i) => {
        clock += i % 10 === 0 ? 100 : 0; // the flood spans under a second of (fake) time
        return v.verify(`Bearer ${token}`);
      }),
    );
    for (const [i, result] of results.entries()) expectRejected(result, "unknown_key", tokens[i] ?? "");
    expect(server.gets).toBe(2);

    // Another wave within the interval: no GET.
    clock += 5_000;
    await Promise.all(tokens.slice(0, 20).map((t) => v.verify(`Bearer ${t}`)));
    expect(server.gets).toBe(2);

    // Past the interval: exactly one more.
    clock += 10_000;
    await Promise.all(tokens.slice(0, 20).map((t) => v.verify(`Bearer ${t}`)));
    expect(server.gets).toBe(3);
    // Valid tokens kept verifying through all of it.
    expect(await v.verify(`Bearer ${await sign(idClaims())}`)).toMatchObject({ ok: true });
  });

  test("key rotation: a token with the new kid verifies once the refetch interval has passed", async () => {
    let clock = T0;
    const server = startJwksServer([rsa.jwk]);
    extraServers.push(server);
    const v = makeVerifier({ jwksUrl: server.url, now: () => clock });
    await v.store.loaded;
    const next = await pair("RS256", "rsa2");
    server.setKeys([rsa.jwk, next.jwk]);
    const token = await sign(idClaims(), next.privateKey, { alg: "RS256", kid: "rsa2" });

    clock += 2_000;
    expectRejected(await v.verify(`Bearer ${token}`), "unknown_key", token);
    expect(server.gets).toBe(1);
    clock += 8_000;
    expect(await v.verify(`Bearer ${token}`)).toMatchObject({ ok: true, subject: "user-1" });
    expect(server.gets).toBe(2);

    // The old key retired: its tokens fail once the set no longer lists it.
    server.setKeys([next.jwk]);
    await v.store.refresh();
    const old = await sign(idClaims());
    expectRejected(await v.verify(`Bearer ${old}`), "unknown_key", old);
  });

  test("JWKS down after a good load: cached keys still verify", async () => {
    const server = startJwksServer([rsa.jwk, ec.jwk]);
    const v = makeVerifier({ jwksUrl: server.url });
    await v.store.loaded;
    await server.stop();
    expect(await v.store.refresh()).toBe(false);
    expect(await v.verify(`Bearer ${await sign(idClaims())}`)).toMatchObject({ ok: true });
    const es = await sign(accessClaims(), ec.privateKey, { alg: "ES256", kid: "ec1" });
    expect(await v.verify(es)).toMatchObject({ ok: true, tokenUse: "access" });
    expect(v.store.stats().failures).toBe(1);
  });

  test("JWKS down from the start → 503 keys_unavailable (no WWW-Authenticate error), rate-limited retries", async () => {
    let clock = T0;
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `http://127.0.0.1:${probe.port}/jwks.json`;
    await probe.stop(true);
    const v = makeVerifier({ jwksUrl: url, now: () => clock });
    expect(await v.store.loaded).toBe(false);
    const token = await sign(idClaims());
    const result = await v.verify(`Bearer ${token}`);
    expect(result).toMatchObject({ ok: false, status: 503, reason: "keys_unavailable", retryAfterSec: 10 });
    expect(wwwAuthenticate(result as JwtFailure)).toBe('Bearer realm="adsrv"');
    expect((result as JwtFailure).detail).not.toContain(token.split(".")[2] ?? "");
    await Promise.all(Array.from({ length: 10 }, () => v.verify(`Bearer ${token}`)));
    expect(v.store.stats().fetches).toBe(1);
    clock += 10_000;
    await Promise.all(Array.from({ length: 10 }, () => v.verify(`Bearer ${token}`)));
    expect(v.store.stats().fetches).toBe(2);
    // A request without credentials is still a 401, not a 503.
    expect(await v.verify(null)).toMatchObject({ status: 401, reason: "missing" });
  });
});

describe("configuration and helpers", () => {
  test("bad configuration is refused", () => {
    const base = { jwksUrl: "http://127.0.0.1:1/jwks.json", issuer: ISS, audience: CLIENT };
    expect(() => createJwtVerifier({ ...base, issuer: " " })).toThrow(/issuer/);
    expect(() => createJwtVerifier({ ...base, audience: [] })).toThrow(/audience/);
    expect(() => createJwtVerifier({ ...base, audience: "" })).toThrow(/audience/);
    expect(() => createJwtVerifier({ ...base, clockToleranceSec: -1 })).toThrow(/tolerance/);
  });

  test("wwwAuthenticate keeps error_description within RFC 6750's character set", () => {
    const header = wwwAuthenticate({
      ok: false,
      status: 401,
      error: "invalid_token",
      reason: "claims",
      detail: 'a "quoted" \\ detail\nwith ünicode',
    });
    expect(header).toBe(
      'Bearer realm="adsrv", error="invalid_token", error_description="a quoted  detailwith nicode"',
    );
  });

  test("a shared store is not stopped by the verifier", async () => {
    const owner = makeVerifier();
    await owner.store.loaded;
    const borrower = createJwtVerifier({
      jwksUrl: jwks.url,
      issuer: ISS,
      audience: CLIENT,
      store: owner.store,
    });
    borrower.stop();
    const before = jwks.gets;
    expect(await owner.store.refresh()).toBe(true);
    expect(jwks.gets).toBe(before + 1);
  });
});

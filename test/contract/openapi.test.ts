/**
 * The contract, live (issue 7: "kept true by tests, not by hope"). Two servers on port 0 with
 * the built-in sample catalog: one open, one with API keys and a small rate limit. For every
 * operation in openapi.json, fast-check builds requests from the operation's OWN parameter
 * schemas (valid values from the schemas and from the sample catalog, plus missing, repeated,
 * pattern-breaking, overlong, badly encoded and random values, unknown parameters, odd
 * methods, credentials right and wrong) and every answer's status, headers and body are
 * checked against the document with ajv (test/contract/document.ts). A second group probes
 * paths: anything the public port answers must be in the document, and everything in the
 * document must answer.
 *
 * Replay a failure with ADSRV_FUZZ_SEED=<seed>; run longer with ADSRV_FUZZ_RUNS=<n>.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { generateKey, sha256Hex } from "../../src/auth/apikey.ts";
import sample from "../../src/catalog/sample-catalog.json";
import { type Config, makeConfig } from "../../src/config.ts";
import { ALLOWED } from "../../src/http/routes.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { fuzz } from "../fuzz.ts";
import {
  checkAgainst,
  checkResponse,
  doc,
  isObj,
  NOT_FOUND,
  type Obj,
  type Operation,
  operations,
  type Param,
  type Received,
  receive,
  type Sent,
} from "./document.ts";
import { rawRequest } from "./raw.ts";

/** 12:00 UTC on a fixed day: many sample ads run, some are outside their hours. */
const NOON = Date.UTC(2026, 5, 1, 12, 0, 0);
/** Decisions this long before NOON carry impression tokens that have expired by NOON. */
const LONG_AGO = NOON - 40 * 86_400_000;
const TOKEN_RE = /\/impression\?t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22})/;

interface Live {
  readonly server: RunningServer;
  readonly clock: { now: number };
  /** Milliseconds the clock moves per request (refills rate-limit buckets). */
  readonly step: number;
  /** "open", "keyed" (API keys, rate limit) or "degraded" (no catalog, JWKS unreachable). */
  readonly name: string;
}

let open: Live;
let keyed: Live;
let degraded: Live;
let dir = "";
const validKey = generateKey();
const strangerKey = generateKey().key;
/** Impression tokens: live and expired ones from real decisions, plus the document's example. */
const tokens: string[] = [];

async function start(name: string, overrides: Partial<Config>, step: number): Promise<Live> {
  const clock = { now: NOON };
  const config = makeConfig({ listen: { host: "127.0.0.1", port: 0 }, ...overrides });
  const server = await startServer(config, {
    now: () => clock.now,
    log: silentLogger,
    initialBackoffMs: 600_000,
  });
  await server.ready;
  return { server, clock, step, name };
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port ?? 9;
  await s.stop(true);
  return port;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "adsrv-contract-"));
  const keysFile = join(dir, "keys.toml");
  await writeFile(keysFile, `[[client]]\nname = "contract"\nkey_sha256 = "${sha256Hex(validKey.key)}"\n`);
  open = await start("open", {}, 0);
  keyed = await start("keyed", { apiKeysFile: keysFile, rateLimit: { rate: 2, burst: 10 } }, 200);
  // No catalog ever loads and no JWT signing key can be fetched: the 503 answers.
  const nowhere = `http://127.0.0.1:${await closedPort()}`;
  degraded = await start(
    "degraded",
    {
      catalog: `${nowhere}/ads`,
      jwt: {
        jwksUrl: `${nowhere}/jwks`,
        issuer: "https://issuer.example",
        audience: ["adsrv"],
        algorithms: ["RS256"],
      },
    },
    0,
  );
  // Tokens from real decisions (JSON and VAST), some made 40 days ago: expired by now.
  const harvest = async (path: string) => {
    const text = await (await fetch(`${open.server.url}${path}`)).text();
    const m = TOKEN_RE.exec(text);
    if (m?.[1] !== undefined) tokens.push(m[1]);
  };
  for (const when of [NOON, LONG_AGO]) {
    open.clock.now = when;
    for (const q of ["country=ca&lang=eng", "country=us&lang=spa", "country=jp&lang=eng&player_id=p-1"]) {
      await harvest(`/ad_request?${q}`);
      await harvest(`/vast?${q}`);
    }
  }
  open.clock.now = NOON;
  const example = JSON.stringify(doc.paths);
  const docToken = TOKEN_RE.exec(example)?.[1];
  if (docToken !== undefined) tokens.push(docToken);
});

afterAll(async () => {
  await open?.server.stop();
  await keyed?.server.stop();
  await degraded?.server.stop();
  if (dir !== "") await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Values

const ads = sample.ads as { country: string; lang: string }[];
const unique = (xs: string[]) => [...new Set(xs)];
/** Values known to be assigned codes (the sample catalog's), in several spellings. */
const POOLS: Readonly<Record<string, () => readonly string[]>> = {
  country: () => unique([...ads.map((a) => a.country), "US", "Ca", "fi"]),
  lang: () => unique([...ads.map((a) => a.lang), "en", "fra", "fr-CA", "en-US", "FRE", "zh-Hant-TW"]),
  player_id: () => ["p-1", "player-42", "P", "~!@#$%^&*()_+{}|:<>?", "x".repeat(128)],
  t: () => tokens,
};

/** Query strings that break encoding rules, sent as is. */
const RAW_JUNK = [
  "%",
  "%zz",
  "%E0%A4%A",
  "%C3%28",
  "%00",
  "%0D%0A",
  "+us",
  "%20us",
  "us%00",
  "%ED%A0%80",
  "%FF",
];
/** Parameters no operation documents (ignored by the server), and a key in the URL (400). */
const NOISE = [
  "foo=bar",
  "x",
  "=",
  "&",
  "utm_source=game",
  "Country=us",
  "LANG=eng",
  "t=",
  "api_key=adsrv_zz",
];

/** A value that fits the pattern but not `maxLength`, when one of these shapes does. */
function overlong(param: Param): string | null {
  const max = param.schema.maxLength;
  if (typeof max !== "number") return null;
  const pattern = typeof param.schema.pattern === "string" ? new RegExp(param.schema.pattern) : /./;
  const n = max + 1;
  const shapes = [
    "a".repeat(n),
    `en${"-abcdefgh".repeat(Math.ceil(n / 9))}`,
    `${"a".repeat(n)}.${"A".repeat(22)}`,
  ];
  return shapes.find((s) => s.length > max && pattern.test(s)) ?? "a".repeat(n);
}

type Choice =
  | { readonly kind: "omit" }
  | { readonly kind: "set"; readonly values: string[]; readonly raw: boolean };

function fromSchema(param: Param): fc.Arbitrary<string> {
  const pattern = param.schema.pattern;
  const base =
    typeof pattern === "string" ? fc.stringMatching(new RegExp(pattern)) : fc.string({ minLength: 1 });
  return base.filter((s) => param.validate(s));
}

/** Valid values: the pair's own (a catalog country and language), a pool's, or the schema's. */
function valid(param: Param, pair: Readonly<Record<string, string>>): fc.Arbitrary<string> {
  const own = pair[param.name];
  const pool = (POOLS[param.name]?.() ?? []).filter((v) => param.validate(v));
  return fc.oneof(
    ...(own !== undefined && param.validate(own) ? [{ arbitrary: fc.constant(own), weight: 6 }] : []),
    ...(pool.length > 0 ? [{ arbitrary: fc.constantFrom(...pool), weight: 2 }] : []),
    { arbitrary: fromSchema(param), weight: 1 },
  );
}

function queryChoice(param: Param, pair: Readonly<Record<string, string>>): fc.Arbitrary<Choice> {
  const set = (values: string[], raw = false): Choice => ({ kind: "set", values, raw });
  const long = overlong(param);
  return fc.oneof(
    { arbitrary: fc.constant<Choice>({ kind: "omit" }), weight: param.required ? 1 : 4 },
    { arbitrary: valid(param, pair).map((v) => set([v])), weight: 12 },
    { arbitrary: fc.tuple(valid(param, pair), valid(param, pair)).map(([a, b]) => set([a, b])), weight: 1 },
    {
      arbitrary: fc
        .string({ maxLength: 24, unit: "binary-ascii" })
        .filter((s) => !param.validate(s))
        .map((s) => set([s])),
      weight: 1,
    },
    { arbitrary: fc.string({ maxLength: 12, unit: "grapheme" }).map((s) => set([s])), weight: 1 },
    { arbitrary: fc.constantFrom(...RAW_JUNK).map((s) => set([s], true)), weight: 1 },
    { arbitrary: fc.constant(set([""])), weight: 1 },
    { arbitrary: fc.constant(set([long ?? "a".repeat(300)])), weight: 1 },
    { arbitrary: fc.constant(set(["a".repeat(5000)])), weight: 1 },
  );
}

type RequestIdChoice = { readonly value: string; readonly valid: boolean } | null;

function requestIdChoice(param: Param | undefined): fc.Arbitrary<RequestIdChoice> {
  if (param === undefined) return fc.constant(null);
  const printable = fc
    .string({
      minLength: 1,
      maxLength: 140,
      unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
    })
    .map((s) => ({ value: s, valid: param.validate(s) }));
  return fc.oneof(
    { arbitrary: fc.constant(null), weight: 3 },
    { arbitrary: fromSchema(param).map((value) => ({ value, valid: true })), weight: 3 },
    { arbitrary: printable, weight: 2 },
    { arbitrary: fc.constant({ value: "a".repeat(129), valid: false }), weight: 1 },
  );
}

type Credential = "none" | "key" | "stranger" | "garbage" | "bearer";
const METHOD = fc.oneof(
  { arbitrary: fc.constant("GET"), weight: 16 },
  { arbitrary: fc.constant("HEAD"), weight: 2 },
  { arbitrary: fc.constantFrom("POST", "PUT", "DELETE", "PATCH", "OPTIONS"), weight: 2 },
);

interface Generated {
  readonly method: string;
  readonly query: readonly { readonly name: string; readonly choice: Choice }[];
  readonly noise: readonly string[];
  readonly requestId: RequestIdChoice;
  readonly credential: Credential;
}

/** Requests for `op`, built around an ad of the sample catalog so that some of them fill. */
function requests(op: Operation): fc.Arbitrary<Generated> {
  const query = op.params.filter((p) => p.in === "query");
  return fc.constantFrom(...ads).chain((pair) =>
    fc.record({
      method: METHOD,
      query: fc.tuple(...query.map((p) => queryChoice(p, pair).map((choice) => ({ name: p.name, choice })))),
      noise: fc.array(fc.constantFrom(...NOISE), { maxLength: 2 }),
      requestId: requestIdChoice(op.params.find((p) => p.in === "header" && p.name === "X-Request-Id")),
      credential: fc.constantFrom<Credential>("none", "key", "key", "key", "stranger", "garbage", "bearer"),
    }),
  );
}

function target(op: Operation, g: Generated): string {
  const parts: string[] = [];
  for (const { name, choice } of g.query) {
    if (choice.kind === "omit") continue;
    for (const v of choice.values) parts.push(`${name}=${choice.raw ? v : encodeURIComponent(v)}`);
  }
  parts.push(...g.noise);
  return parts.length === 0 ? op.path : `${op.path}?${parts.join("&")}`;
}

function headersFor(g: Generated): Record<string, string> {
  const headers: Record<string, string> = {};
  if (g.requestId !== null) headers["X-Request-Id"] = g.requestId.value;
  if (g.credential === "key") headers["X-Api-Key"] = validKey.key;
  if (g.credential === "stranger") headers["X-Api-Key"] = strangerKey;
  if (g.credential === "garbage") headers["X-Api-Key"] = "not-a-key";
  if (g.credential === "bearer") headers.Authorization = "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
  return headers;
}

async function send(
  live: Live,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Received> {
  live.clock.now += live.step;
  return receive(await fetch(`${live.server.url}${path}`, { method, headers, redirect: "manual" }));
}

/** Statuses seen per server and operation: the generator must reach the interesting ones. */
const seen = new Map<string, Set<number>>();

async function exercise(live: Live, op: Operation, runs: number): Promise<void> {
  const key = `${live.name} ${op.operationId}`;
  const statuses = seen.get(key) ?? new Set<number>();
  seen.set(key, statuses);
  await fc.assert(
    fc.asyncProperty(requests(op), async (g) => {
      const path = target(op, g);
      const got = await send(live, g.method, path, headersFor(g));
      statuses.add(got.status);
      const sent: Sent =
        g.requestId === null ? { method: g.method } : { method: g.method, requestId: g.requestId };
      const problems = [...methodProblems(op, g.method, got), ...checkResponse(op, got, sent)];
      if (problems.length > 0)
        throw new Error(`${g.method} ${path} ${JSON.stringify(headersFor(g))}\n  ${problems.join("\n  ")}`);
    }),
    // A fixed seed unless one is given: CI sees the same requests every run, so the coverage
    // check below cannot flake; `ADSRV_FUZZ_SEED` / `ADSRV_FUZZ_RUNS` explore further.
    { seed: 20_261_129, ...fuzz(runs) },
  );
}

describe("live answers fit openapi.json", () => {
  test("the value pools fit the document's own parameter schemas", () => {
    expect(tokens.length).toBeGreaterThanOrEqual(4);
    for (const op of operations) {
      for (const p of op.params) {
        // Spellings and tokens the server accepts must be ones the document allows.
        for (const v of POOLS[p.name]?.() ?? [])
          expect({ param: p.name, v, ok: p.validate(v) }).toEqual({ param: p.name, v, ok: true });
      }
    }
  });

  for (const op of operations) {
    test(`${op.method.toUpperCase()} ${op.path} (${op.operationId}), open server`, async () => {
      await exercise(open, op, 150);
    });
  }

  for (const op of operations.filter((o) => o.secured)) {
    test(`${op.method.toUpperCase()} ${op.path} (${op.operationId}), API keys and a rate limit`, async () => {
      await exercise(keyed, op, 120);
    });
  }

  for (const op of operations) {
    test(`${op.method.toUpperCase()} ${op.path} (${op.operationId}), no catalog and no JWT keys`, async () => {
      await exercise(degraded, op, 40);
    });
  }

  test("the generated requests reached the interesting answers", () => {
    const of = (key: string) => [...(seen.get(key) ?? [])].sort();
    expect(of("open requestAd")).toEqual(expect.arrayContaining([200, 400, 404, 405, 414]));
    expect(of("open requestVast")).toEqual(expect.arrayContaining([200, 400, 405, 414]));
    expect(of("open recordImpression")).toEqual(expect.arrayContaining([204, 400, 405, 410]));
    expect(of("open getStats")).toEqual(expect.arrayContaining([200, 405]));
    expect(of("keyed requestAd")).toEqual(expect.arrayContaining([200, 401, 429]));
    expect(of("keyed getStats")).toEqual(expect.arrayContaining([200, 401]));
    expect(of("degraded requestAd")).toEqual(expect.arrayContaining([401, 503]));
    expect(of("degraded ready")).toContain(503);
    expect(of("degraded ready")).not.toContain(200);
  });
});

// ---------------------------------------------------------------------------------------------
// Paths

/** Paths a server might plausibly answer by accident: admin routes, variants, other spellings. */
const PLAUSIBLE = [
  "/",
  "/admin",
  "/metrics",
  "/debug",
  "/debug/decide",
  "/debug/decide?country=us&lang=eng",
  "/catalog",
  "/dashboard",
  "/dashboard/",
  "/ad_request/",
  "/AD_REQUEST",
  "/Ad_Request",
  "/ad_request.json",
  "/ad-request",
  "/adrequest",
  "/v1/ad_request",
  "/api/ad_request",
  "/vast.xml",
  "/vast/",
  "/VAST",
  "/impression/",
  "/impressions",
  "/stats/",
  "/stats.json",
  "/healthz/",
  "/health",
  "/readyz/",
  "/ready",
  "/status",
  "/openapi",
  "/openapi.yaml",
  "/openapi.json/",
  "/swagger.json",
  "/docs",
  "/.env",
  "/favicon.ico",
  "/robots.txt",
  "//ad_request",
  "/ad_request%2F",
  "/ad_request;x=1",
  "/server-status",
  "/./ad_request",
  "/x/../ad_request",
  "/ad_request/.",
  "/%61d_request",
  "/vast/..",
  "/stats/./",
];

/** The documented operation for a path and method (HEAD is GET without a body, per the document). */
function documented(path: string, method: string): Operation | undefined {
  const m = method === "HEAD" ? "get" : method.toLowerCase();
  return operations.find((op) => op.path === path && op.method === m);
}

/** The path a target names once dot segments are removed (RFC 3986 §5.2.4), query dropped. */
function canonicalPath(target: string): string {
  return new URL(target, "http://h").pathname;
}

/** What GET and HEAD may never answer on a route the document gives GET: 405 is for other methods. */
function methodProblems(op: Operation | undefined, method: string, got: Received): string[] {
  if (op === undefined) return [];
  if ((method === "GET" || method === "HEAD") && got.status === 405)
    return [`${method} answered 405 (${got.headers.get("allow")}) on a route documented for GET`];
  if (method !== "GET" && method !== "HEAD" && got.status !== 405)
    return [`${method} answered ${got.status}, not 405`];
  return [];
}

describe("the public port answers only documented routes", () => {
  test("every path in ALLOWED and every plausible path: a non-404 answer is documented", async () => {
    const paths = unique([...Object.keys(ALLOWED), ...PLAUSIBLE]);
    const undocumented: string[] = [];
    for (const target of paths) {
      for (const method of ["GET", "HEAD", "POST"]) {
        open.clock.now += open.step;
        const got = await rawRequest(open.server.url, method, target);
        const path = canonicalPath(target);
        // A spelling of a documented path may be answered as that path, or be unknown (404).
        const op = documented(path, "GET");
        const where = `${method} ${target}`;
        if (
          got.status === 404 &&
          (op === undefined || op.responses["404"] === undefined || path !== target)
        ) {
          // Unknown paths get the not-found problem, itself documented (components.responses.NotFound).
          const problems = checkAgainst(NOT_FOUND, got, { method });
          if (got.status === 404 && op !== undefined && path === target)
            problems.push("a documented path answered 404 not-found");
          if (problems.length > 0) undocumented.push(`${where}: 404 ${problems.join("; ")}`);
          continue;
        }
        if (op === undefined) {
          undocumented.push(`${where} answered ${got.status}; openapi.json has no ${path}`);
          continue;
        }
        const problems = [...methodProblems(op, method, got), ...checkResponse(op, got, { method })];
        if (problems.length > 0) undocumented.push(`${where}: ${problems.join("; ")}`);
      }
    }
    expect(undocumented).toEqual([]);
  });

  test("every documented path answers GET with something other than 404 not-found", async () => {
    const missing: string[] = [];
    for (const op of operations.filter((o) => o.method === "get")) {
      const got = await send(open, "GET", op.path);
      const body = got.body.startsWith("{") ? (JSON.parse(got.body) as Obj) : null;
      if (got.status === 404 && isObj(body) && body.type === "urn:adsrv:problem:not-found")
        missing.push(`${op.path}: 404 not-found`);
      else if (got.status === 404 && op.responses["404"] === undefined) missing.push(`${op.path}: 404`);
    }
    expect(missing).toEqual([]);
    // Every route the server registers is in the document, and every documented path is registered.
    expect(Object.keys(ALLOWED).sort()).toEqual(Object.keys(doc.paths as Obj).sort());
  });

  test("GET /openapi.json serves this document", async () => {
    const got = await send(open, "GET", "/openapi.json");
    expect(got.status).toBe(200);
    expect(JSON.parse(got.body)).toEqual(doc);
  });
});

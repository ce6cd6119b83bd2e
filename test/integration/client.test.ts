/**
 * src/client.ts against a live server (startServer in-process, port 0, built-in sample catalog,
 * clock fixed at 12:00 UTC): decisions, problems, impressions counted then replayed, VAST,
 * retries on 503 honouring Retry-After (a tiny fronting server answers 503 first), never on
 * 4xx, and the credentials each route is sent (a recording server).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "../../src/auth/apikey.ts";
import {
  type AdsrvClientOptions,
  createAdsrvClient,
  parseRetryAfter,
  retryDelayMs,
} from "../../src/client.ts";
import { type Config, makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** 12:00 UTC: `ca`/`eng` (0–24) fills, `nz`/`mao` (19–7) is outside its hours. */
const NOON = Date.UTC(2026, 5, 1, 12, 0, 0);
const FILLS = { country: "ca", lang: "eng" } as const;
const FILL_ID = "af3f03b2";

async function live(overrides: Partial<Config> = {}): Promise<RunningServer> {
  const server = await startServer(makeConfig({ listen: { host: "127.0.0.1", port: 0 }, ...overrides }), {
    now: () => NOON,
    log: silentLogger,
  });
  cleanups.push(() => server.stop());
  await server.ready;
  return server;
}

interface Seen {
  readonly url: string;
  /** A copy: Bun empties a request's headers once its response is sent. */
  readonly headers: Headers;
}

/** A server that records each request and answers with `answer(request, n)` (n from 1). */
function recorder(answer: (req: Request, n: number) => Response | Promise<Response>) {
  const seen: Seen[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    fetch(req) {
      seen.push({ url: req.url, headers: new Headers(req.headers) });
      return answer(req, seen.length);
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}`, seen };
}

/** A port nothing listens on (bound, then closed). */
function closedPort(): number {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port ?? 9;
  void s.stop(true);
  return port;
}

/** Options with a recorded sleep and no jitter. */
function recorded(server: string, extra: Partial<AdsrvClientOptions> = {}) {
  const waits: number[] = [];
  const client = createAdsrvClient({
    server,
    timeoutMs: 3000,
    sleep: async (ms) => {
      waits.push(ms);
    },
    random: () => 0,
    ...extra,
  });
  return { client, waits };
}

const overloaded = (retryAfter: string | null) =>
  new Response(
    JSON.stringify({
      type: "urn:adsrv:problem:overloaded",
      title: "Server overloaded",
      status: 503,
      detail: "busy",
    }),
    {
      status: 503,
      headers: {
        "Content-Type": "application/problem+json",
        ...(retryAfter === null ? {} : { "Retry-After": retryAfter }),
      },
    },
  );

describe("client against a live server", () => {
  test("ad: the decision with its impression URL, catalog version and request id", async () => {
    const server = await live();
    const adsrv = createAdsrvClient({ server: server.url });
    const answer = await adsrv.ad(FILLS, { requestId: "game-req-1" });
    expect(answer).toMatchObject({ kind: "ad", status: 200, attempts: 1, requestId: "game-req-1" });
    if (answer.kind !== "ad") throw new Error("no ad");
    expect(answer.ad.id).toBe(FILL_ID);
    expect(answer.ad.video_url).toStartWith("https://");
    expect(answer.ad.impression_url).toMatch(/\/impression\?t=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(answer.catalogVersion).toMatch(/^[0-9a-f]{16}$/);
    // A path prefix on the server URL is kept (here it makes the route unknown: 404 not-found).
    const prefixed = await createAdsrvClient({ server: `${server.url}/adsrv/` }).ad(FILLS);
    expect(prefixed).toMatchObject({
      kind: "problem",
      status: 404,
      problem: { type: "urn:adsrv:problem:not-found" },
    });
  });

  test("no fill and invalid parameters are problems, returned at once (never retried)", async () => {
    const server = await live();
    const { client, waits } = recorded(server.url);
    expect(await client.ad({ country: "fi", lang: "fin" })).toMatchObject({
      kind: "problem",
      status: 404,
      attempts: 1,
      problem: { type: "urn:adsrv:problem:no-fill", reason: "no_ad_for_country_lang" },
    });
    expect(await client.ad({ country: "nz", lang: "mao" })).toMatchObject({
      kind: "problem",
      status: 404,
      problem: { reason: "outside_hours" },
    });
    expect(await client.ad({ country: "zz", lang: "eng" })).toMatchObject({
      kind: "problem",
      status: 400,
      attempts: 1,
      problem: { type: "urn:adsrv:problem:invalid-param", param: "country" },
    });
    expect(await client.ad({ country: "us", lang: "eng", playerId: "has space" })).toMatchObject({
      kind: "problem",
      status: 400,
      problem: { param: "player_id" },
    });
    expect(waits).toEqual([]);
  });

  test("impression: counted once, then a replay; /stats shows the served ad and its impression", async () => {
    const server = await live();
    const adsrv = createAdsrvClient({ server: server.url });
    const answer = await adsrv.ad(FILLS);
    if (answer.kind !== "ad" || answer.ad.impression_url === undefined) throw new Error("no impression URL");
    const first = await adsrv.impression(answer.ad.impression_url);
    expect(first).toMatchObject({ kind: "impression", status: 204, outcome: "counted", attempts: 1 });
    const again = await adsrv.impression(answer.ad.impression_url);
    expect(again).toMatchObject({ kind: "impression", status: 204, outcome: "replay" });

    const stats = await adsrv.stats();
    if (stats.kind !== "stats") throw new Error(`stats: ${JSON.stringify(stats)}`);
    expect(stats.stats.by_ad[FILL_ID]).toMatchObject({ served: 1, impressions: 1, show_rate: 1 });
    expect(stats.stats.totals).toMatchObject({ served: 1, impressions: 1 });

    // A forged token is a 400 problem naming `t`; a non-URL never leaves the client.
    const url = answer.ad.impression_url;
    const forged = `${url.slice(0, -2)}${url.endsWith("AA") ? "BB" : "AA"}`;
    expect(await adsrv.impression(forged)).toMatchObject({
      kind: "problem",
      status: 400,
      problem: { param: "t" },
    });
    expect(await adsrv.impression("not a url")).toMatchObject({ kind: "error", error: "invalid_url" });
  });

  test("vast: the XML text for an ad, and the Error-only document (200) on no fill", async () => {
    const server = await live();
    const adsrv = createAdsrvClient({ server: server.url });
    const ad = await adsrv.vast({ ...FILLS, playerId: "p-1" });
    if (ad.kind !== "vast") throw new Error(`vast: ${JSON.stringify(ad)}`);
    expect(ad).toMatchObject({ status: 200, filled: true, noFillReason: null });
    expect(ad.xml).toStartWith(
      '<?xml version="1.0" encoding="UTF-8"?>\n<VAST xmlns="http://www.iab.com/VAST" version="4.2">',
    );
    expect(ad.xml).toContain(`<Ad id="${FILL_ID}">`);
    expect(ad.xml).toMatch(/<Impression><!\[CDATA\[http[^\]]+\/impression\?t=[^\]]+\]\]><\/Impression>/);
    const none = await adsrv.vast({ country: "nz", lang: "mao" });
    expect(none).toMatchObject({ kind: "vast", status: 200, filled: false, noFillReason: "outside_hours" });
    expect(await adsrv.vast({ country: "us", lang: "xx-1" })).toMatchObject({
      kind: "problem",
      status: 400,
      problem: { param: "lang" },
    });
  });

  test("API keys: sent by the client, refused without (401 is not retried)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "adsrv-client-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const game = generateKey();
    const file = join(dir, "keys.toml");
    await writeFile(file, `[[client]]\nname = "game"\nkey_sha256 = "${game.sha256}"\n`);
    const server = await live({ apiKeysFile: file });
    expect(await createAdsrvClient({ server: server.url, apiKey: game.key }).ad(FILLS)).toMatchObject({
      kind: "ad",
    });
    const anonymous = recorded(server.url);
    expect(await anonymous.client.ad(FILLS)).toMatchObject({
      kind: "problem",
      status: 401,
      attempts: 1,
      problem: { type: "urn:adsrv:problem:unauthorized" },
    });
    expect(await anonymous.client.stats()).toMatchObject({ kind: "problem", status: 401 });
    expect(anonymous.waits).toEqual([]);
  });
});

describe("retries", () => {
  test("503 twice with Retry-After, then the live answer: waits honour Retry-After", async () => {
    const server = await live();
    const front = recorder((req, n) => {
      if (n <= 2) return overloaded(n === 1 ? "1" : "2");
      const url = new URL(req.url);
      return fetch(`${server.url}${url.pathname}${url.search}`, { headers: req.headers });
    });
    const { client, waits } = recorded(front.url);
    const answer = await client.ad(FILLS);
    expect(answer).toMatchObject({ kind: "ad", attempts: 3, ad: { id: FILL_ID } });
    expect(waits).toEqual([1000, 2000]);
    expect(front.seen).toHaveLength(3);
  });

  test("jitter is added, never taken away, and a wait never passes the cap", async () => {
    const server = await live();
    const front = recorder((req, n) => {
      if (n === 1) return overloaded("1");
      const url = new URL(req.url);
      return fetch(`${server.url}${url.pathname}${url.search}`, { headers: req.headers });
    });
    const { client, waits } = recorded(front.url, { random: () => 0.999 });
    expect(await client.ad(FILLS)).toMatchObject({ kind: "ad", attempts: 2 });
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThan(1000);
    expect(waits[0]).toBeLessThanOrEqual(1200);
    expect(retryDelayMs(9_000, 1, 10_000, () => 0.999)).toBe(10_000);
    expect(retryDelayMs(null, 3, 10_000, () => 0)).toBe(800);
  });

  test("at most `retries` retries: a server that stays at 503 gives its problem after 3 tries", async () => {
    const front = recorder(() => overloaded("1"));
    const { client, waits } = recorded(front.url);
    expect(await client.stats()).toMatchObject({
      kind: "problem",
      status: 503,
      attempts: 3,
      retryAfter: "1",
      problem: { type: "urn:adsrv:problem:overloaded" },
    });
    expect(waits).toEqual([1000, 1000]);
    expect(front.seen).toHaveLength(3);
    const once = recorded(front.url, { retries: 0 });
    expect(await once.client.ad(FILLS)).toMatchObject({ kind: "problem", status: 503, attempts: 1 });
    expect(once.waits).toEqual([]);
  });

  test("a Retry-After over the cap is not waited for; without one, a short backoff", async () => {
    const long = recorder(() => overloaded("120"));
    const a = recorded(long.url);
    expect(await a.client.ad(FILLS)).toMatchObject({
      kind: "problem",
      status: 503,
      attempts: 1,
      retryAfter: "120",
    });
    expect(a.waits).toEqual([]);
    const bare = recorder(() => overloaded(null));
    const b = recorded(bare.url);
    expect(await b.client.vast(FILLS)).toMatchObject({ kind: "problem", status: 503, attempts: 3 });
    expect(b.waits).toEqual([200, 400]);
  });

  test("4xx answers are never retried: 429 with Retry-After, 400, 404", async () => {
    for (const status of [429, 400, 404, 410]) {
      const front = recorder(
        () =>
          new Response(JSON.stringify({ type: "urn:adsrv:problem:x", title: "x", status, detail: "x" }), {
            status,
            headers: { "Content-Type": "application/problem+json", "Retry-After": "1" },
          }),
      );
      const { client, waits } = recorded(front.url);
      expect(await client.impression(`${front.url}/impression?t=a.b`)).toMatchObject({
        kind: "problem",
        status,
        attempts: 1,
      });
      expect(waits).toEqual([]);
      expect(front.seen).toHaveLength(1);
    }
  });

  test("a refused connection is retried with backoff; a timeout is not", async () => {
    const { client, waits } = recorded(`http://127.0.0.1:${closedPort()}`);
    expect(await client.ad(FILLS)).toMatchObject({ kind: "error", error: "connect", attempts: 3 });
    expect(waits).toEqual([200, 400]);

    const hang = recorder(() => new Promise<Response>(() => {}));
    const slow = recorded(hang.url, { timeoutMs: 150 });
    expect(await slow.client.ad(FILLS)).toMatchObject({ kind: "error", error: "timeout", attempts: 1 });
    expect(slow.waits).toEqual([]);
  });

  test("an abort during the wait ends the call as a timeout", async () => {
    const front = recorder(() => overloaded("1"));
    const controller = new AbortController();
    const client = createAdsrvClient({
      server: front.url,
      sleep: () => {
        controller.abort();
        return new Promise(() => {});
      },
    });
    expect(await client.ad(FILLS, { signal: controller.signal })).toMatchObject({
      kind: "error",
      error: "timeout",
      attempts: 1,
    });
  });

  test("Retry-After: seconds or an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter(" 0 ")).toBe(0);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:05 GMT", Date.UTC(2015, 9, 21, 7, 28, 0))).toBe(5000);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:05 GMT", Date.UTC(2016, 0, 1))).toBe(0);
    expect(parseRetryAfter("soon")).toBeNull();
    expect(parseRetryAfter(null)).toBeNull();
  });
});

describe("credentials", () => {
  const ok = (req: Request) => {
    const path = new URL(req.url).pathname;
    if (path === "/impression")
      return new Response(null, { status: 204, headers: { "Adsrv-Impression": "counted" } });
    if (path === "/vast")
      return new Response('<?xml version="1.0"?><VAST version="4.2"><Error>x</Error></VAST>', {
        headers: { "Content-Type": "application/xml" },
      });
    return Response.json({ id: "a", video_url: "https://cdn.example.com/a.mp4" });
  };

  test("an API key goes in X-Api-Key to decisions and stats, never to /impression", async () => {
    const rec = recorder(ok);
    const adsrv = createAdsrvClient({ server: rec.url, apiKey: "adsrv_secret" });
    await adsrv.ad({ ...FILLS, playerId: "p&1" });
    await adsrv.vast(FILLS);
    await adsrv.stats();
    await adsrv.impression(`${rec.url}/impression?t=abc.def`);
    const [ad, vast, stats, impression] = rec.seen;
    expect(new URL(ad?.url ?? "").search).toBe("?country=ca&lang=eng&player_id=p%261");
    for (const req of [ad, vast, stats]) {
      expect(req?.headers.get("x-api-key")).toBe("adsrv_secret");
      expect(req?.headers.get("authorization")).toBeNull();
    }
    expect(new URL(vast?.url ?? "").pathname).toBe("/vast");
    expect(vast?.headers.get("accept")).toContain("application/xml");
    expect(new URL(stats?.url ?? "").pathname).toBe("/stats");
    expect(impression?.url).toBe(`${rec.url}/impression?t=abc.def`);
    expect(impression?.headers.get("x-api-key")).toBeNull();
    expect(impression?.headers.get("authorization")).toBeNull();
  });

  test("a JWT goes in Authorization: Bearer", async () => {
    const rec = recorder(ok);
    const adsrv = createAdsrvClient({ server: rec.url, token: "eyJhbGciOiJSUzI1NiJ9.e30.sig" });
    expect(await adsrv.ad(FILLS)).toMatchObject({ kind: "ad", ad: { id: "a" } });
    expect(rec.seen[0]?.headers.get("authorization")).toBe("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig");
    expect(rec.seen[0]?.headers.get("x-api-key")).toBeNull();
  });

  test("answers that are not what the route promises are protocol errors", async () => {
    const rec = recorder(
      () => new Response("<html>login</html>", { headers: { "Content-Type": "text/html" } }),
    );
    const adsrv = createAdsrvClient({ server: rec.url });
    expect(await adsrv.ad(FILLS)).toMatchObject({ kind: "error", error: "protocol" });
    expect(await adsrv.vast(FILLS)).toMatchObject({ kind: "error", error: "protocol" });
    expect(await adsrv.stats()).toMatchObject({ kind: "error", error: "protocol" });
    expect(await createAdsrvClient({ server: "ftp://x" }).ad(FILLS)).toMatchObject({
      kind: "error",
      error: "invalid_url",
      attempts: 0,
    });
  });
});

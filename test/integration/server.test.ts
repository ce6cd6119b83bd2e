/**
 * The server over real sockets: startServer on a free port, a fake campaign service on loopback,
 * a fake clock. Waits on sync outcomes (events), never on sleeps.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import type { SyncOutcome } from "../../src/sync/loop.ts";
import { createLogger, silentLogger } from "../../src/telemetry/log.ts";
import { type FakeCampaignService, fakeCampaignService, sampleAd, waiter } from "../rig.ts";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOUR = 3_600_000;
const DEFAULT_TEST_LIMITS = { connectTimeoutMs: 300, totalTimeoutMs: 600, maxBytes: 1024 * 1024 };
const DAY0 = Date.UTC(2026, 10, 29, 0, 0, 0);

interface Harness {
  server: RunningServer;
  outcomes: ReturnType<typeof waiter<SyncOutcome>>;
  clock: { now: number };
  get(path: string, init?: RequestInit): Promise<Response>;
}

async function start(overrides: Partial<Config>, clockStart = DAY0 + 5 * HOUR): Promise<Harness> {
  const clock = { now: clockStart };
  const outcomes = waiter<SyncOutcome>();
  const config = makeConfig({
    listen: { host: "127.0.0.1", port: 0 },
    refreshSeconds: 0.05,
    ...overrides,
    fetch: { ...DEFAULT_TEST_LIMITS, ...overrides.fetch },
  });
  const server = await startServer(config, {
    now: () => clock.now,
    log: silentLogger,
    onSyncOutcome: (o) => outcomes.push(o),
  });
  cleanups.push(() => server.stop());
  return {
    server,
    outcomes,
    clock,
    get: (path, init) => fetch(`${server.url}${path}`, init),
  };
}

function service(catalog: unknown): FakeCampaignService {
  const s = fakeCampaignService(catalog);
  cleanups.push(() => s.stop());
  return s;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "adsrv-test-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function adId(h: Harness, query = "country=us&lang=eng"): Promise<string> {
  const res = await h.get(`/ad_request?${query}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { id: string }).id;
}

const three = { ads: [sampleAd("a1"), sampleAd("a2"), sampleAd("a3")] };

describe("serving", () => {
  test("rotates through the eligible ads in catalog order; k·n requests give each ad k times", async () => {
    const svc = service(three);
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await adId(h));
    expect(ids.slice(0, 6)).toEqual(["a1", "a2", "a3", "a1", "a2", "a3"]);
    for (const id of ["a1", "a2", "a3"]) expect(ids.filter((x) => x === id)).toHaveLength(4);
  });

  test("200 body and headers", async () => {
    const svc = service(three);
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    const res = await h.get("/ad_request?country=US&lang=en-US");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as Record<string, string>;
    expect(Object.keys(body).sort()).toEqual(["id", "impression_url", "video_url"]);
    expect(body).toMatchObject({ id: "a1", video_url: "https://cdn.example.com/a1.mp4" });
    expect(body.impression_url).toStartWith(`${h.server.url}/impression?t=`);
    expect(res.headers.get("adsrv-catalog-version")).toBe(h.server.holder.current?.version as string);
  });

  test("every status code of the API", async () => {
    const svc = service({
      ads: [sampleAd("us1"), sampleAd("fr1", { country: "fr", lang: "fre", start_hour: 8, end_hour: 18 })],
    });
    const h = await start({ catalog: svc.url }, DAY0 + 3 * HOUR);
    await h.server.ready;
    const problem = async (path: string, status: number, init?: RequestInit) => {
      const res = await h.get(path, init);
      expect(res.status).toBe(status);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ status });
      expect(typeof body.type).toBe("string");
      expect(typeof body.title).toBe("string");
      expect(typeof body.detail).toBe("string");
      return { res, body };
    };
    expect((await problem("/ad_request?country=us", 400)).body.param).toBe("lang");
    expect((await problem("/ad_request?lang=eng", 400)).body.param).toBe("country");
    expect((await problem("/ad_request?country=us&lang=eng&lang=eng", 400)).body.param).toBe("lang");
    expect((await problem("/ad_request?country=xx&lang=eng", 400)).body.param).toBe("country");
    expect((await problem("/ad_request?country=us&lang=qqq", 400)).body.param).toBe("lang");
    expect((await problem("/ad_request?country=de&lang=deu", 404)).body.reason).toBe(
      "no_ad_for_country_lang",
    );
    expect((await problem("/ad_request?country=fr&lang=fr", 404)).body.reason).toBe("outside_hours");
    const post = await problem("/ad_request?country=us&lang=eng", 405, { method: "POST" });
    expect(post.res.headers.get("allow")).toBe("GET, HEAD");
    expect((await problem("/ad_request", 405, { method: "DELETE" })).res.headers.get("allow")).toBe(
      "GET, HEAD",
    );
    await problem("/nothing-here", 404);
    expect((await h.get("/healthz")).status).toBe(200);
    const ready = await h.get("/readyz");
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { catalog_version: string }).catalog_version).toBe(
      h.server.holder.current?.version as string,
    );
    const head = await h.get("/ad_request?country=us&lang=eng", { method: "HEAD" });
    expect(head.status).toBe(200);
  });

  test("no catalog yet: 503 with Retry-After on /ad_request and /readyz until one loads", async () => {
    const svc = service(three);
    svc.mode = "500";
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    const res = await h.get("/ad_request?country=us&lang=eng");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(((await res.json()) as { type: string }).type).toContain("no-catalog");
    expect((await h.get("/readyz")).status).toBe(503);
    expect((await h.get("/healthz")).status).toBe(200);
    // Bad input is still a 400 while no catalog is loaded.
    expect((await h.get("/ad_request?country=us")).status).toBe(400);
    svc.mode = "ok";
    await h.outcomes.next((o) => o.kind === "updated");
    expect(await adId(h)).toBe("a1");
    expect((await h.get("/readyz")).status).toBe(200);
  });
});

describe("hours, with a fake clock", () => {
  test("an ad runs from start_hour:00:00 to (end_hour-1):59:59 UTC, wrapping windows too", async () => {
    const svc = service({
      ads: [
        sampleAd("day", { start_hour: 1, end_hour: 14 }),
        sampleAd("night", { country: "gb", start_hour: 22, end_hour: 3 }),
        sampleAd("late", { country: "fr", lang: "fre", start_hour: 20, end_hour: 0 }),
      ],
    });
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    const status = async (query: string, at: number) => {
      h.clock.now = at;
      return (await h.get(`/ad_request?${query}`)).status;
    };
    const us = "country=us&lang=eng";
    expect(await status(us, DAY0 + 1 * HOUR - 1)).toBe(404);
    expect(await status(us, DAY0 + 1 * HOUR)).toBe(200);
    expect(await status(us, DAY0 + 14 * HOUR - 1)).toBe(200);
    expect(await status(us, DAY0 + 14 * HOUR)).toBe(404);
    const gb = "country=gb&lang=eng";
    expect(await status(gb, DAY0 + 22 * HOUR - 1)).toBe(404);
    expect(await status(gb, DAY0 + 22 * HOUR)).toBe(200);
    expect(await status(gb, DAY0 + 24 * HOUR + 2 * HOUR + 59 * 60_000)).toBe(200);
    expect(await status(gb, DAY0 + 24 * HOUR + 3 * HOUR)).toBe(404);
    const fr = "country=fr&lang=fra";
    expect(await status(fr, DAY0 + 23 * HOUR + 59 * 60_000 + 59_999)).toBe(200);
    expect(await status(fr, DAY0 + 24 * HOUR)).toBe(404);
  });
});

describe("catalog sync", () => {
  test("a changed file is picked up at the next check", async () => {
    const dir = await tempDir();
    const file = join(dir, "catalog.json");
    await writeFile(file, JSON.stringify({ ads: [sampleAd("old")] }));
    const h = await start({ catalog: file });
    await h.server.ready;
    expect(await adId(h)).toBe("old");
    const updated = h.outcomes.next((o) => o.kind === "updated");
    await writeFile(file, JSON.stringify({ ads: [sampleAd("new")] }));
    await updated;
    expect(await adId(h)).toBe("new");
  });

  test.each([
    ["on the catalog worker", true, "building the catalog on the worker thread"],
    ["in slices (no worker)", false, "rebuilding the catalog in slices"],
  ])(
    "a big catalog replaced while one is live is built %s: the loop turns and requests are answered meanwhile",
    async (_, catalogWorker, startLine) => {
      const dir = await tempDir();
      const file = join(dir, "catalog.json");
      const many = (prefix: string) =>
        JSON.stringify({ ads: Array.from({ length: 10_000 }, (_, i) => sampleAd(`${prefix}${i}`)) });
      expect(many("old-").length).toBeGreaterThan(1 << 20); // the size from which rebuilds are sliced
      await writeFile(file, many("old-"));
      const lines: string[] = [];
      const outcomes = waiter<SyncOutcome>();
      const server = await startServer(
        makeConfig({
          listen: { host: "127.0.0.1", port: 0 },
          refreshSeconds: 0.05,
          catalog: file,
          fetch: { ...DEFAULT_TEST_LIMITS, maxBytes: 16 * 1024 * 1024 },
        }),
        {
          now: () => DAY0 + 5 * HOUR,
          log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
          onSyncOutcome: (o) => outcomes.push(o),
          catalogWorker,
        },
      );
      cleanups.push(() => server.stop());
      await server.ready;
      // Ticks of a 1 ms timer and answers from this process, each stamped with whether the
      // rebuild had started (its debug line) and whether the new catalog was live yet.
      const rebuilds = () => lines.filter((l) => l.includes(startLine)).length;
      const first = rebuilds(); // the first load went to the worker too (it has one)
      expect(first).toBe(catalogWorker ? 1 : 0);
      const started = () => rebuilds() > first;
      let ticks = 0;
      const ticker = setInterval(() => {
        if (started()) ticks++;
      }, 1);
      cleanups.push(() => clearInterval(ticker));
      let live = false;
      const updated = outcomes
        .next((o) => o.kind === "updated")
        .then(() => {
          live = true;
        });
      await writeFile(file, many("new-"));
      const during: string[] = [];
      while (!live) {
        const res = await fetch(`${server.url}/ad_request?country=us&lang=eng`);
        const { id } = (await res.json()) as { id: string };
        if (started() && !live) during.push(id);
      }
      await updated;
      clearInterval(ticker);
      // A rebuild in one go would answer nothing and tick never between its start and the swap.
      expect(ticks).toBeGreaterThan(3);
      expect(during.length).toBeGreaterThan(0);
      expect(during.every((id) => id.startsWith("old-"))).toBe(true);
      const res = await fetch(`${server.url}/ad_request?country=us&lang=eng`);
      expect(((await res.json()) as { id: string }).id.startsWith("new-")).toBe(true);
    },
  );

  test("a changed service catalog is picked up; validators make unchanged polls 304s", async () => {
    const svc = service({ ads: [sampleAd("old")] });
    svc.etag = true;
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    await h.outcomes.next((o) => o.kind === "unchanged");
    expect(svc.requests.lastHeaders?.get("if-none-match")).toMatch(/^".+"$/);
    svc.catalog = { ads: [sampleAd("new")] };
    await h.outcomes.next((o) => o.kind === "updated");
    expect(await adId(h)).toBe("new");
  });

  test.each([
    ["500", "http_status"],
    ["malformed", "malformed_json"],
    ["wrong_shape", "wrong_shape"],
    ["all_invalid", "all_invalid"],
    ["huge", "too_large"],
    ["hang", "timeout"],
    ["drip", "timeout"],
    ["redirect", "redirect"],
  ] as const)("service mode %s fails as %s and keeps the last good catalog", async (mode, failure) => {
    const svc = service(three);
    // Tight deadlines only where the failure is a deadline; elsewhere a loaded machine must not
    // turn the expected failure into a timeout.
    const slowModes: readonly string[] = ["hang", "drip"];
    const fetchLimits = slowModes.includes(mode) ? {} : { connectTimeoutMs: 5_000, totalTimeoutMs: 10_000 };
    const h = await start({ catalog: svc.url, fetch: { ...DEFAULT_TEST_LIMITS, ...fetchLimits } });
    await h.server.ready;
    const version = h.server.holder.current?.version;
    expect(version).toBeDefined();
    svc.mode = mode;
    const outcome = await h.outcomes.next((o) => o.kind === "failed");
    expect(outcome).toMatchObject({ kind: "failed", failure });
    expect(h.server.holder.current?.version).toBe(version as string);
    expect(await adId(h)).toBe("a1");
    expect((await h.get("/readyz")).status).toBe(200);
  });

  test("connection refused keeps the last good catalog", async () => {
    const svc = service(three);
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    await svc.stop();
    const outcome = await h.outcomes.next((o) => o.kind === "failed");
    expect(outcome).toMatchObject({ failure: "connect" });
    expect(await adId(h)).toBe("a1");
  });

  test("a feed with some invalid entries serves the valid ones", async () => {
    const svc = service({ ads: [sampleAd("ok1"), { id: "bad", country: "zz" }, sampleAd("ok2")] });
    const h = await start({ catalog: svc.url });
    const first = await h.outcomes.next();
    expect(first).toMatchObject({ kind: "updated", ads: 2, skipped: 1 });
    expect([await adId(h), await adId(h), await adId(h)]).toEqual(["ok1", "ok2", "ok1"]);
  });

  test("an empty ads list is a valid catalog: ready, and every request gets 404", async () => {
    const svc = service({ ads: [] });
    const h = await start({ catalog: svc.url });
    await h.server.ready;
    expect((await h.get("/readyz")).status).toBe(200);
    const res = await h.get("/ad_request?country=us&lang=eng");
    expect(res.status).toBe(404);
    expect(((await res.json()) as { reason: string }).reason).toBe("no_ad_for_country_lang");
  });

  test("restart with --state-dir while the service is down serves the saved catalog", async () => {
    const dir = await tempDir();
    const svc = service(three);
    const first = await start({ catalog: svc.url, stateDir: dir });
    await first.server.ready;
    expect(await adId(first)).toBe("a1");
    await first.server.stop();
    await svc.stop();

    const second = await start({ catalog: svc.url, stateDir: dir });
    const loaded = await second.outcomes.next((o) => o.kind === "updated");
    expect(loaded).toMatchObject({ from: "state_dir", ads: 3 });
    await second.server.ready;
    expect(await adId(second)).toBe("a1");
  });

  test("a rejected feed is never saved to the state dir", async () => {
    const dir = await tempDir();
    const svc = service(three);
    const first = await start({ catalog: svc.url, stateDir: dir });
    await first.server.ready;
    svc.mode = "all_invalid";
    await first.outcomes.next((o) => o.kind === "failed");
    await first.server.stop();
    svc.mode = "500";
    const second = await start({ catalog: svc.url, stateDir: dir });
    await second.server.ready;
    expect(second.server.holder.current?.ads.toArray().map((a) => a.id)).toEqual(["a1", "a2", "a3"]);
  });
});

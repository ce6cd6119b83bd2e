/**
 * Player-aware decisions, VAST, impressions, stats and the OpenAPI document over real sockets,
 * on in-memory state (no Redis). The same paths with Redis are in redis.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { ROOT, sampleAd } from "../rig.ts";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 29, 5, 0, 0);

async function start(ads: unknown[], overrides: Partial<Config> = {}) {
  const dir = await mkdtemp(join(tmpdir(), "adsrv-reach-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "catalog.json");
  await writeFile(file, JSON.stringify({ ads }));
  const clock = { now: T0 };
  const server: RunningServer = await startServer(
    makeConfig({ listen: { host: "127.0.0.1", port: 0 }, catalog: file, ...overrides }),
    { now: () => clock.now, log: silentLogger },
  );
  cleanups.push(() => server.stop());
  await server.ready;
  return { server, clock, get: (path: string) => fetch(`${server.url}${path}`) };
}

const three = [sampleAd("a1"), sampleAd("a2"), sampleAd("a3")];

describe("player-aware decisions (in memory)", () => {
  test("least recently served first: a player never sees the same ad twice in a row while another is eligible", async () => {
    const h = await start(three);
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) {
      const res = await h.get("/ad_request?country=us&lang=eng&player_id=p1");
      ids.push(((await res.json()) as { id: string }).id);
      h.clock.now += 1_000;
    }
    expect(ids).toEqual(["a1", "a2", "a3", "a1", "a2", "a3", "a1", "a2", "a3"]);
    // Another player starts with the oldest for them, independently of p1.
    const other = await h.get("/ad_request?country=us&lang=eng&player_id=p2");
    expect(((await other.json()) as { id: string }).id).toBe("a1");
  });

  test("frequency cap: default from config, per-ad override, rolling window, then 404 frequency_capped", async () => {
    const h = await start([sampleAd("x", { frequency_cap: 1 }), sampleAd("y")], {
      frequencyCap: 2,
      frequencyWindowSeconds: 3_600,
    });
    const seen: (string | number)[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await h.get("/ad_request?country=us&lang=eng&player_id=capped");
      seen.push(res.status === 200 ? ((await res.json()) as { id: string }).id : res.status);
      h.clock.now += 1_000;
    }
    expect(seen).toEqual(["x", "y", "y", 404]);
    const capped = await h.get("/ad_request?country=us&lang=eng&player_id=capped");
    expect(((await capped.json()) as { reason: string }).reason).toBe("frequency_capped");
    // The window rolls: an hour after the first serve, x is available again.
    h.clock.now = T0 + HOUR + 1;
    const again = await h.get("/ad_request?country=us&lang=eng&player_id=capped");
    expect(((await again.json()) as { id: string }).id).toBe("x");
  });

  test("/debug/decide explains a player's decision: capped ads, serves in the window, the chosen one", async () => {
    const h = await start(
      [sampleAd("x", { frequency_cap: 1 }), sampleAd("y"), sampleAd("z", { start_hour: 20, end_hour: 21 })],
      {
        adminListen: { host: "127.0.0.1", port: 0 },
      },
    );
    expect(
      ((await (await h.get("/ad_request?country=us&lang=eng&player_id=dbg")).json()) as { id: string }).id,
    ).toBe("x");
    const res = await fetch(`${h.server.adminUrl}/debug/decide?country=us&lang=eng&player_id=dbg`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      decision: { outcome: string; id?: string };
      ads: { id: string; reason: string; player?: { served_in_window: number; cap: number } }[];
    };
    expect(body.decision).toMatchObject({ outcome: "fill", id: "y" });
    expect(body.ads.map((a) => [a.id, a.reason])).toEqual([
      ["x", "capped"],
      ["y", "chosen"],
      ["z", "outside_hours"],
    ]);
    expect(body.ads[0]?.player).toMatchObject({ served_in_window: 1, cap: 1 });
    // Explaining does not record a serve: the real request still gets y.
    expect(
      ((await (await h.get("/ad_request?country=us&lang=eng&player_id=dbg")).json()) as { id: string }).id,
    ).toBe("y");
  });

  test("a fractional frequency_window (seconds) works: no error, whole milliseconds", async () => {
    const h = await start([sampleAd("f", { frequency_cap: 1, frequency_window: 1.0005 }), sampleAd("g")]);
    const a = await h.get("/ad_request?country=us&lang=eng&player_id=frac");
    const b = await h.get("/ad_request?country=us&lang=eng&player_id=frac");
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([((await a.json()) as { id: string }).id, ((await b.json()) as { id: string }).id]).toEqual([
      "f",
      "g",
    ]);
  });

  test("an invalid player_id is a 400 naming it", async () => {
    const h = await start(three);
    const res = await h.get(`/ad_request?country=us&lang=eng&player_id=${"p".repeat(129)}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { param: string }).param).toBe("player_id");
  });
});

describe("impressions and stats", () => {
  test("an impression is counted once, a replay is answered but not counted, a forged token is 400", async () => {
    const h = await start(three, { impressionKey: "ab".repeat(32) });
    const ad = (await (await h.get("/ad_request?country=us&lang=eng")).json()) as {
      id: string;
      impression_url: string;
    };
    const path = new URL(ad.impression_url).pathname + new URL(ad.impression_url).search;
    const first = await h.get(path);
    expect(first.status).toBe(204);
    expect(first.headers.get("adsrv-impression")).toBe("counted");
    const replay = await h.get(path);
    expect(replay.status).toBe(204);
    expect(replay.headers.get("adsrv-impression")).toBe("replay");
    const forged = await h.get(`${path.slice(0, -3)}AAA`);
    expect(forged.status).toBe(400);
    expect(((await forged.json()) as { param: string }).param).toBe("t");
    const missing = await h.get("/impression");
    expect(missing.status).toBe(400);

    const stats = (await (await h.get("/stats")).json()) as {
      by_ad: Record<string, { served: number; impressions: number }>;
    };
    expect(stats.by_ad[ad.id]).toMatchObject({ served: 1, impressions: 1 });
  });

  test("an impression token expires after --impression-ttl: 410", async () => {
    const h = await start(three, { impressionTtlSeconds: 60 });
    const ad = (await (await h.get("/ad_request?country=us&lang=eng")).json()) as { impression_url: string };
    h.clock.now += 61_000;
    const late = await h.get(new URL(ad.impression_url).pathname + new URL(ad.impression_url).search);
    expect(late.status).toBe(410);
    expect(((await late.json()) as { type: string }).type).toBe("urn:adsrv:problem:impression-expired");
  });

  test("/stats counts served ads and no-fills by reason", async () => {
    const h = await start([
      sampleAd("s1"),
      sampleAd("s2", { country: "fr", lang: "fre", start_hour: 20, end_hour: 21 }),
    ]);
    for (let i = 0; i < 3; i++) await h.get("/ad_request?country=us&lang=eng");
    await h.get("/ad_request?country=fr&lang=fr");
    await h.get("/ad_request?country=de&lang=deu");
    const stats = (await (await h.get("/stats")).json()) as {
      by_ad: Record<string, { served: number }>;
      no_fill_by_reason: Record<string, number>;
    };
    expect(stats.by_ad.s1?.served).toBe(3);
    expect(stats.no_fill_by_reason).toMatchObject({ outside_hours: 1, no_ad_for_country_lang: 1 });
  });
});

const xsd = join(ROOT, "..", "shared", "vast", "vast_4.2.xsd");
const canValidate = existsSync(xsd) && spawnSync("xmllint", ["--version"]).status === 0;

describe("VAST", () => {
  test.skipIf(!canValidate)(
    "ads and no-fills are VAST 4.2 documents that validate against the IAB schema",
    async () => {
      const h = await start([
        sampleAd("v1", { duration: 15, mime_type: "video/webm", width: 640, height: 360 }),
        sampleAd("v2", { video_url: "https://cdn.example.com/a&b.mp4?x=<1>" }),
      ]);
      const dir = await mkdtemp(join(tmpdir(), "adsrv-vast-"));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const docs: string[] = [];
      for (const path of [
        "/vast?country=us&lang=eng",
        "/vast?country=us&lang=eng&player_id=p",
        "/vast?country=de&lang=deu",
      ]) {
        const res = await h.get(path);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toStartWith("application/xml");
        docs.push(await res.text());
      }
      expect(docs[0]).toContain("<MediaFile");
      expect(docs[0]).toContain('type="video/webm"');
      expect(docs[0]).toContain("<Impression");
      expect(docs[0]).toContain("/impression?t=");
      expect(docs[2]).toContain("<Error>");
      expect(docs[2]).not.toContain("<Ad ");
      for (const [i, doc] of docs.entries()) {
        const file = join(dir, `doc${i}.xml`);
        await writeFile(file, doc);
        const lint = spawnSync("xmllint", ["--noout", "--schema", xsd, file], { encoding: "utf8" });
        expect(lint.stderr).toContain("validates");
        expect(lint.status).toBe(0);
      }
      // Bad input is still a problem+json 400.
      const bad = await h.get("/vast?country=zz&lang=eng");
      expect(bad.status).toBe(400);
      expect(bad.headers.get("content-type")).toBe("application/problem+json");
    },
  );
});

test("the OpenAPI document is served at /openapi.json and matches the committed file", async () => {
  const h = await start(three);
  const res = await h.get("/openapi.json");
  expect(res.status).toBe(200);
  const served = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
  const committed = (await Bun.file(join(ROOT, "openapi.json")).json()) as unknown;
  expect(served).toEqual(committed as typeof served);
  expect(served.openapi).toStartWith("3.1");
});

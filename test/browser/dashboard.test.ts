/**
 * The dashboard in a real browser: the public server (built-in sample catalog) and the admin
 * server on the same holder and Metrics, both on 127.0.0.1 port 0; real /ad_request traffic;
 * Debian chromium driven by playwright-core loads /dashboard and must show live data. A
 * screenshot goes to test-artifacts/dashboard.png.
 *
 * Skipped, with a message, only when /usr/bin/chromium is missing.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";
import { type AdminServer, startAdminServer } from "../../src/admin/server.ts";
import type { ServedStats } from "../../src/admin/types.ts";
import { makeConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { Decision, Metrics, Route } from "../../src/telemetry/metrics.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dir, "..", "..", "test-artifacts");
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(`SKIP dashboard browser test: ${CHROMIUM} is missing (Debian package "chromium")`);
}

const metrics = new Metrics();
/** Served and impression counts, aggregated from the responses the traffic below receives. */
const served: { byCountry: Record<string, Counts>; byAd: Record<string, Counts> } = {
  byCountry: {},
  byAd: {},
};
interface Counts {
  served: number;
  impressions: number;
}

/**
 * Whether the public routes record into `metrics` themselves. Found out by the first request
 * (see probe); until the routes are wired, driveTraffic records what it observes instead.
 */
let metricsWired: boolean | null = null;

/** (country, lang) pairs of the sample catalog, one with no ad, and one invalid country. */
const QUERIES: readonly string[] = [
  "country=us&lang=eng",
  "country=us&lang=spa",
  "country=gb&lang=eng",
  "country=fr&lang=fra",
  "country=de&lang=deu",
  "country=jp&lang=jpn",
  "country=br&lang=por",
  "country=in&lang=hin",
  "country=ca&lang=fra",
  "country=es&lang=spa",
  "country=aq&lang=eng",
  "country=zz&lang=eng",
];

function bump(table: Record<string, Counts>, key: string, field: keyof Counts): void {
  const row = table[key] ?? { served: 0, impressions: 0 };
  row[field]++;
  table[key] = row;
}

/** One /ad_request; returns true when `metrics` moved by itself (the routes are wired). */
async function adRequest(base: string, query: string): Promise<boolean> {
  const before = metrics.summary(0).requests.total;
  const started = performance.now();
  const res = await fetch(`${base}/ad_request?${query}`);
  const body = (await res.json()) as { id?: string; reason?: string; impression_url?: string };
  const seconds = (performance.now() - started) / 1000;
  const wired = metrics.summary(0).requests.total > before;
  const country = /country=([a-z]+)/.exec(query)?.[1] ?? "";
  if (res.status === 200 && body.id !== undefined) {
    bump(served.byCountry, country, "served");
    bump(served.byAd, body.id, "served");
    // Once responses carry an impression URL, play the player's part and call it.
    if (body.impression_url !== undefined) {
      const imp = await fetch(new URL(body.impression_url, base));
      await imp.arrayBuffer();
      if (imp.ok) {
        bump(served.byCountry, country, "impressions");
        bump(served.byAd, body.id, "impressions");
      }
    }
  }
  if (metricsWired === false || (metricsWired === null && !wired)) {
    // Seen from outside: the request latency bounds the decision latency from above.
    metrics.request(Route.ad_request, res.status, seconds);
    if (res.status === 200) metrics.decision(Decision.fill, seconds);
    else if (body.reason === "outside_hours") metrics.decision(Decision.outside_hours, seconds);
    else if (body.reason === "no_ad_for_country_lang")
      metrics.decision(Decision.no_ad_for_country_lang, seconds);
  }
  return wired;
}

/**
 * Sends `n` /ad_request calls (20 at a time) over the QUERIES mix. If the public routes do not
 * record metrics themselves, records each observed request and decision into `metrics`.
 */
async function driveTraffic(url: string, n: number): Promise<void> {
  let sent = 0;
  if (metricsWired === null && n > 0) {
    metricsWired = await adRequest(url, QUERIES[0] as string);
    sent = 1;
  }
  while (sent < n) {
    const batch = Math.min(20, n - sent);
    await Promise.all(
      Array.from({ length: batch }, (_, i) => adRequest(url, QUERIES[(sent + i) % QUERIES.length] as string)),
    );
    sent += batch;
  }
}

/** The part of the page's DOM the wait condition reads. */
interface PageDocument {
  getElementById(
    id: string,
  ): { textContent: string | null; dataset: Record<string, string | undefined> } | null;
  querySelectorAll(selector: string): { length: number };
}

let server: RunningServer;
let admin: AdminServer;
let profile: string;
let launching: Promise<BrowserContext> | null = null;

beforeAll(async () => {
  if (!haveChromium) return;
  // `metrics` goes in as a server dependency: it takes effect once ServerDeps accepts it.
  const deps = { log: silentLogger, metrics };
  server = await startServer(makeConfig({ listen: { host: "127.0.0.1", port: 0 } }), deps);
  admin = startAdminServer({
    listen: { host: "127.0.0.1", port: 0 },
    metrics,
    holder: server.holder,
    now: Date.now,
    served: (): ServedStats => served,
    log: silentLogger,
  });
  profile = await mkdtemp(join(tmpdir(), "adsrv-chromium-"));
});

afterAll(async () => {
  if (!haveChromium) return;
  const context = await launching?.catch(() => null);
  await context?.close();
  await admin?.stop();
  await server?.stop();
  if (profile) await rm(profile, { recursive: true, force: true });
});

test.skipIf(!haveChromium)(
  "the dashboard shows live charts and the whole catalog",
  async () => {
    // Chromium starts while the first traffic goes out.
    launching = chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 1000 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    await driveTraffic(server.url, 120);
    expect(metrics.summary(Date.now()).requests.total).toBeGreaterThanOrEqual(120);
    const context = await launching;
    const page = context.pages()[0] ?? (await context.newPage());
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });

    // Keep traffic flowing while the page polls, so the rate between two polls is not zero.
    let flowing = true;
    const traffic = (async () => {
      while (flowing) {
        await driveTraffic(server.url, 40);
        await Bun.sleep(100);
      }
    })();

    try {
      const res = await page.goto(`${admin.url}/dashboard`);
      expect(res?.status()).toBe(200);
      const ads = server.holder.current?.ads.length ?? 0;
      expect(ads).toBeGreaterThan(0);

      await page.waitForFunction(
        (want: number) => {
          // Runs in the page; the test's type library has no DOM, so a narrow view of it.
          const doc = (globalThis as unknown as { document: PageDocument }).document;
          const text = (id: string) => doc.getElementById(id)?.textContent ?? "";
          const data = (id: string, key: string) => Number(doc.getElementById(id)?.dataset[key] ?? 0);
          const rows = doc.querySelectorAll("#catalog-table tbody tr").length;
          return (
            Number.parseFloat(text("rps-value")) > 0 &&
            data("rps-chart", "points") >= 2 &&
            data("latency-chart", "points") >= 2 &&
            data("country-chart", "rows") > 0 &&
            data("ad-chart", "total") > 0 &&
            text("fill-value").includes("%") &&
            rows >= want
          );
        },
        ads,
        { timeout: 9000, polling: 100 },
      );
      const read = (selector: string) => page.locator(selector).textContent();
      expect(Number.parseFloat((await read("#rps-value")) ?? "")).toBeGreaterThan(0);
      const fill = Number.parseFloat((await read("#fill-value")) ?? "");
      expect(fill).toBeGreaterThan(0);
      expect(fill).toBeLessThan(100); // the mix holds a country with no ad
      expect(await read("#latency-value")).toMatch(/\d ms \/ \d.* ms/);
      expect(await read("#catalog-version")).toBe(server.holder.current?.version ?? "?");
      expect(await read("#catalog-age")).toContain(`${ads} ads`);
      // The built-in catalog is never synced; the page says so rather than inventing a sync.
      expect(await read("#last-sync")).toBe("none");
      expect(await page.locator("#catalog-table tbody tr").count()).toBe(ads);

      // The served column of the table follows the counts fed to the admin server.
      const [topId, topCounts] =
        Object.entries(served.byAd).sort((a, b) => b[1].served - a[1].served)[0] ?? [];
      expect(topId).toBeDefined();
      const cell = page
        .locator("#catalog-table tbody tr", { hasText: topId as string })
        .locator("td")
        .nth(4);
      expect(Number(await cell.textContent())).toBeGreaterThan(0);
      expect(Number(await cell.textContent())).toBeLessThanOrEqual(topCounts?.served ?? 0);

      // Search filters the table.
      await page.fill("#catalog-search", "jpn");
      const visible = await page.locator("#catalog-table tbody tr:not([hidden])").count();
      const expected =
        server.holder.current?.ads
          .toArray()
          .filter((a) => `${a.id} ${a.country} ${a.lang} ${a.video_url}`.toLowerCase().includes("jpn"))
          .length ?? 0;
      expect(expected).toBeGreaterThan(0);
      expect(visible).toBe(expected);
      await page.fill("#catalog-search", "");

      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
      expect(existsSync(join(ARTIFACTS, "dashboard.png"))).toBe(true);
      expect(problems).toEqual([]);
    } finally {
      flowing = false;
      await traffic;
    }
  },
  15_000,
);

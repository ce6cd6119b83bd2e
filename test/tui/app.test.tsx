/**
 * The inspector screen under ink-testing-library: render, type keys, assert on the frames.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cleanup, render } from "ink-testing-library";
import { App } from "../../cli/tui/App.tsx";
import { type Catalog, catalogFrom } from "../../cli/tui/model.ts";
import { parseCatalog } from "../../src/catalog/validate.ts";

const FIXTURE = join(import.meta.dir, "fixtures", "mixed-catalog.json");
const SAMPLE = join(import.meta.dir, "..", "..", "src", "catalog", "sample-catalog.json");

function load(path: string): Catalog {
  const catalog = catalogFrom(path, parseCatalog(readFileSync(path, "utf8")));
  if (catalog === null) throw new Error(`${path} is not a catalog`);
  return catalog;
}

const ARROW_DOWN = "\x1b[B";
const ARROW_RIGHT = "\x1b[C";
const ENTER = "\r";
const ESC = "\x1b";

type Screen = ReturnType<typeof render>;

/** Waits (bounded) for a frame satisfying `pred`; fails with the last frame. */
async function frame(screen: Screen, pred: (text: string) => boolean, what: string): Promise<string> {
  const deadline = performance.now() + 2_000;
  for (;;) {
    const text = screen.lastFrame() ?? "";
    if (pred(text)) return text;
    if (performance.now() > deadline) throw new Error(`no frame ${what}; last frame:\n${text}`);
    await Bun.sleep(5);
  }
}

/** Types keys one press at a time, letting ink take each before the next. */
async function press(screen: Screen, ...keys: string[]): Promise<void> {
  for (const key of keys) {
    screen.stdin.write(key);
    await Bun.sleep(15);
  }
}

/** The table line of an entry (starts with the selection marker column). */
function lineOf(text: string, id: string): string {
  return text.split("\n").find((line) => line.includes(` ${id} `)) ?? "";
}

afterEach(() => {
  cleanup();
});

describe("inspector screen", () => {
  test("first frame: summary, table with invalid entries marked, detail, help", () => {
    const screen = render(<App catalog={load(FIXTURE)} hour={10} size={{ columns: 100, rows: 30 }} />);
    const text = screen.lastFrame() ?? "";
    expect(text).toContain("5 valid · 3 invalid · 3 live at 10:00 UTC");
    expect(text).toContain("1–8 of 8");
    expect(lineOf(text, "us-morning")).toMatch(/^› ● us-morning +us +eng +06→12 ······██████············/);
    expect(lineOf(text, "us-night")).toMatch(/^ {4}us-night +us +eng +22→03 /);
    expect(lineOf(text, "bad-country")).toMatch(/^ {2}✗ bad-country +unknown_country: country is not/);
    expect(lineOf(text, "#7")).toContain("not_object");
    expect(text).toContain("us-morning entry #0 us · eng · 06:00–11:59 UTC · live at 10:00");
    expect(text).toContain("https://cdn.example.com/us-morning.mp4");
    expect(text).toContain("          ^ 10:00 UTC");
    expect(text).toContain("/ filter  h hour");
    expect(text).toContain("q quit");
  });

  test("arrows move the selection; an invalid entry's problem fills the detail pane", async () => {
    const screen = render(<App catalog={load(FIXTURE)} hour={10} size={{ columns: 100, rows: 30 }} />);
    await press(screen, ARROW_DOWN, ARROW_DOWN);
    const text = await frame(
      screen,
      (t) => lineOf(t, "bad-country").startsWith("›"),
      "with bad-country selected",
    );
    expect(lineOf(text, "us-morning")).toMatch(/^ {2}●/);
    expect(text).toContain("✗ entry #2 (id bad-country) is invalid: unknown_country");
    expect(text).toContain("country: country is not an ISO 3166-1 alpha-2 code");
  });

  test("/ filters as you type; enter applies; esc clears", async () => {
    const screen = render(<App catalog={load(FIXTURE)} hour={10} size={{ columns: 100, rows: 30 }} />);
    await press(screen, "/", "f", "r");
    let text = await frame(screen, (t) => t.includes("filter / fr"), "editing the filter");
    expect(text).toContain("1–2 of 2");
    expect(text).toContain("enter apply  esc cancel");
    expect(lineOf(text, "us-morning")).toBe("");
    await press(screen, ENTER);
    text = await frame(screen, (t) => t.includes("filter: fr"), "with the filter applied");
    expect(lineOf(text, "fr-allday")).toMatch(/^› ● fr-allday/);
    expect(lineOf(text, "ca-french")).not.toBe("");
    // q typed into the filter is text, not quit.
    await press(screen, "/", "q");
    text = await frame(screen, (t) => t.includes("filter / frq"), "with q typed");
    expect(text).toContain("no entries match");
    await press(screen, ESC);
    text = await frame(screen, (t) => t.includes("filter: fr "), "after cancelling");
    await press(screen, ESC);
    text = await frame(screen, (t) => t.includes("filter: none"), "with filters cleared");
    expect(text).toContain("1–8 of 8");
  });

  test("h changes the hour: live marks, the summary and the caret follow; l keeps live ads only", async () => {
    const screen = render(<App catalog={load(FIXTURE)} hour={10} size={{ columns: 100, rows: 30 }} />);
    await press(screen, "h", "2", "3", ENTER);
    let text = await frame(screen, (t) => t.includes("live at 23:00 UTC"), "at 23:00");
    expect(text).toContain("2 live at 23:00 UTC");
    expect(lineOf(text, "us-night")).toMatch(/^ {2}● us-night/);
    expect(lineOf(text, "us-morning")).toMatch(/^› {3}us-morning/);
    expect(text).toContain("off at 23:00");
    expect(text).toContain(`${" ".repeat(23)}^ 23:00 UTC`);
    await press(screen, "l");
    text = await frame(screen, (t) => t.includes("[live at 23h only]"), "live only");
    expect(text).toContain("1–2 of 2");
    expect(lineOf(text, "de-evening")).toBe("");
    // → steps past midnight: at 00:00 us-night is still live, de-evening is not.
    await press(screen, ARROW_RIGHT);
    text = await frame(screen, (t) => t.includes("live at 00:00 UTC"), "at 00:00");
    expect(lineOf(text, "us-night")).not.toBe("");
  });

  test("a bad hour is refused with a notice", async () => {
    const screen = render(<App catalog={load(FIXTURE)} hour={10} size={{ columns: 100, rows: 30 }} />);
    await press(screen, "h", "2", "4", ENTER);
    const text = await frame(screen, (t) => t.includes("hour must be a whole number"), "with the notice");
    expect(text).toContain("hour (0-23): 24");
    expect(text).toContain("live at 10:00 UTC");
  });

  test("the table scrolls to keep the selection on a short screen", async () => {
    const sample = load(SAMPLE);
    const last = sample.rows.at(-1);
    const lastId = last?.kind === "ad" ? last.ad.id : "";
    const screen = render(<App catalog={sample} hour={14} size={{ columns: 80, rows: 24 }} />);
    let text = screen.lastFrame() ?? "";
    expect(text).toContain("1–12 of 60");
    expect(text.split("\n").length).toBeLessThanOrEqual(24);
    await press(screen, "G");
    text = await frame(screen, (t) => t.includes("49–60 of 60"), "scrolled to the end");
    expect(lastId).not.toBe("");
    expect(text.split("\n").find((line) => line.startsWith("›"))).toContain(` ${lastId} `);
    expect(text).toContain(`${lastId} entry #59`);
  });

  test("a document the server would reject shows a banner and its invalid entries", () => {
    const doc =
      '{"ads":[{"id":"x1","country":"us"},{"id":"x2","video_url":"ftp://a","country":"us","lang":"eng","start_hour":0,"end_hour":0}]}';
    const catalog = catalogFrom("bad.json", parseCatalog(doc));
    if (catalog === null) throw new Error("expected a catalog");
    const screen = render(<App catalog={catalog} hour={10} size={{ columns: 100, rows: 30 }} />);
    const text = screen.lastFrame() ?? "";
    expect(text).toContain("✗ the server would reject this document: all 2 entries are invalid");
    expect(lineOf(text, "x1")).toMatch(/^› ✗ x1 +missing_field: video_url is required/);
    expect(lineOf(text, "x2")).toMatch(/^ {2}✗ x2 +invalid_video_url/);
  });

  test("q quits: ink stops reading the keyboard and keys change nothing", async () => {
    const screen = render(<App catalog={load(FIXTURE)} hour={10} size={{ columns: 100, rows: 30 }} />);
    expect(screen.stdin.listenerCount("readable")).toBeGreaterThan(0);
    await press(screen, "q");
    const deadline = performance.now() + 2_000;
    while (screen.stdin.listenerCount("readable") > 0 && performance.now() < deadline) await Bun.sleep(5);
    expect(screen.stdin.listenerCount("readable")).toBe(0);
    const frames = screen.frames.length;
    await press(screen, ARROW_DOWN);
    expect(screen.frames.length).toBe(frames);
  });
});

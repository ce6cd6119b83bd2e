/**
 * The compiled executable's inspector in a real terminal: tmux runs `adsrv inspect` in a
 * detached session of a fixed size; the test types with `send-keys` and reads `capture-pane`.
 * Proves ink works under `bun build --compile`, keys arrive, `q` exits 0 and the terminal
 * settings are restored. Each test uses its own tmux server socket, killed afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../rig.ts";
import { compiledBinary } from "./binary.ts";
import { HAVE_TMUX, startTerminal, type Terminal } from "./terminal.ts";

const FIXTURE = join(import.meta.dir, "fixtures", "mixed-catalog.json");
const SAMPLE = join(ROOT, "src", "catalog", "sample-catalog.json");

let binary: { path: string; dispose: () => void } | null = null;
let term: Terminal | null = null;
let dir = "";

function t(): Terminal {
  if (term === null) throw new Error("terminal not started");
  return term;
}

function start(
  name: string,
  size: { columns: number; rows: number },
  args: readonly string[],
  env: Record<string, string> = {},
): void {
  t().start(name, size, [binary?.path ?? "adsrv", ...args], { env });
}

const pane = (name: string, pred: (text: string) => boolean, what: string) => t().waitFor(name, pred, what);
/** Waits for the exit status; every test here ends the inspector with `q`, re-sent if it was lost. */
const exitStatus = (name: string) => t().exitCode(name, "q");
const keys = (name: string, ...names: string[]) => t().keys(name, ...names);

function lineOf(text: string, id: string): string {
  return text.split("\n").find((line) => line.includes(` ${id} `)) ?? "";
}

describe.skipIf(!HAVE_TMUX)("adsrv inspect in tmux (compiled executable)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "adsrv-inspect-"));
    binary = await compiledBinary();
    term = startTerminal();
  });

  afterAll(() => {
    term?.close();
    binary?.dispose();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  test("shows the table, filters, moves, and q exits 0 with the terminal restored", async () => {
    start("main", { columns: 100, rows: 30 }, ["inspect", FIXTURE, "--hour", "10"]);
    let text = await pane(
      "main",
      (t) => t.includes("5 valid · 3 invalid · 3 live at 10:00 UTC"),
      "the summary",
    );
    expect(lineOf(text, "us-morning")).toMatch(/^› ● us-morning +us +eng +06→12 ······██████/);
    expect(lineOf(text, "bad-country")).toMatch(/^ {2}✗ bad-country +unknown_country/);
    expect(text).toContain("q quit");

    keys("main", "/");
    await pane("main", (t) => t.includes("filter /"), "the filter prompt");
    keys("main", "-l", "fr");
    keys("main", "Enter");
    text = await pane("main", (t) => t.includes("filter: fr"), "the applied filter");
    expect(text).toContain("1–2 of 2");
    expect(lineOf(text, "us-morning")).toBe("");
    expect(lineOf(text, "fr-allday")).toMatch(/^› ● fr-allday/);

    keys("main", "Down");
    text = await pane("main", (t) => lineOf(t, "ca-french").startsWith("›"), "ca-french selected");
    expect(text).toContain("ca-french entry #6 ca · fra · 09:00–16:59 UTC · live at 10:00");

    keys("main", "q");
    expect(await exitStatus("main")).toBe(0);
    text = await pane("main", (t) => t.includes("EXIT=0"), "the wrapper's exit line");
    expect(text).toContain("TTY_RESTORED");
    // The alternate screen is gone: the table is not left on the terminal.
    expect(text).not.toContain("fr-allday");
  });

  for (const size of [
    { columns: 80, rows: 24 },
    { columns: 200, rows: 50 },
  ]) {
    test(`usable at ${size.columns}×${size.rows}`, async () => {
      const name = `s${size.columns}`;
      start(name, size, ["inspect", SAMPLE, "--hour", "14"]);
      const text = await pane(name, (t) => t.includes("q quit"), "the help line");
      const lines = text.replace(/\n+$/, "").split("\n");
      expect(lines.length).toBeLessThanOrEqual(size.rows);
      expect(lines[0]).toContain("60 valid · 0 invalid");
      expect(lines.at(-1)).toContain("q quit");
      const tableRows = lines.filter((line) => / [a-z]{2} +[a-z]{3} +\d\d→\d\d /.test(line));
      expect(tableRows.length).toBe(size.rows - 12);
      keys(name, "q");
      expect(await exitStatus(name)).toBe(0);
    });
  }

  test("colour on a terminal; none with NO_COLOR", async () => {
    // CI=true as CI machines set it: chalk alone would turn colour off; adsrv's rule keeps it.
    start("colour", { columns: 100, rows: 30 }, ["inspect", FIXTURE, "--hour", "10"], { CI: "true" });
    start("plain", { columns: 100, rows: 30 }, ["inspect", FIXTURE, "--hour", "10"], { NO_COLOR: "1" });
    for (const name of ["colour", "plain"])
      await pane(name, (text) => text.includes("q quit"), "the help line");
    const coloured = t().capture("colour", true);
    expect(coloured).toContain("\x1b[31m  ✗ bad-country"); // invalid entries in red
    expect(coloured).toContain("\x1b[32m● "); // live marks in green
    const plain = t().capture("plain", true);
    expect(plain).toContain("  ✗ bad-country");
    expect(plain).not.toContain("\x1b[");
    keys("colour", "q");
    keys("plain", "q");
    expect(await exitStatus("colour")).toBe(0);
    expect(await exitStatus("plain")).toBe(0);
  });

  test("a missing file: exit 1 with the reason", async () => {
    start("missing", { columns: 100, rows: 10 }, ["inspect", join(dir, "nope.json")]);
    expect(await exitStatus("missing")).toBe(1);
    const reason = `error: cannot read ${join(dir, "nope.json")}: `;
    expect(await pane("missing", (t) => t.includes(reason), "the reason")).toContain(reason);
  });

  test("a file that is not a catalog: exit 1 with the validator's reason", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, '{"ads": [');
    start("bad", { columns: 120, rows: 10 }, ["inspect", bad]);
    expect(await exitStatus("bad")).toBe(1);
    const reason = `error: ${bad} is not a catalog: catalog is not JSON`;
    expect(await pane("bad", (t) => t.includes(reason), "the reason")).toContain(reason);
  });
});

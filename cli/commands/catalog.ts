/**
 * `adsrv catalog fetch|validate|preview SOURCE`: the operator's view of a campaign catalog.
 *
 * Everything goes through the server's own code: `readSource` (same timeouts, byte cap, no
 * redirects), `parseCatalog`, `buildSnapshot` and the decision's `eligible`. Summaries and
 * grids are computed by src/catalog/report.ts; this file only prints them.
 * Exit codes: 0 ok, 1 fetch failure / rejected document / invalid entries (validate), 2 usage.
 * @module
 */
import { randomBytes } from "node:crypto";
import { rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import {
  type CatalogSummary,
  countCells,
  HOURS,
  hourCells,
  hourHeader,
  markerLine,
  type PreviewGroup,
  previewGroups,
  type Rotation,
  rotationAt,
  summarize,
  windowLabel,
} from "../../src/catalog/report.ts";
import { buildSnapshot, type Snapshot } from "../../src/catalog/snapshot.ts";
import type { ValidationResult } from "../../src/catalog/types.ts";
import { DEFAULT_LIMITS, type FetchLimits, isUrl, readSource } from "../../src/catalog/upstream.ts";
import { parseCatalog } from "../../src/catalog/validate.ts";
import { normalizeCountry, normalizeLang } from "../../src/codes/normalize.ts";
import { ConfigError, parseCount, parsePositive, parseSource } from "../../src/config.ts";
import { utcHour } from "../../src/decision/hours.ts";
import {
  type Colors,
  colorEnabled,
  colors,
  formatBytes,
  formatCount,
  type Paint,
  printJson,
  progressLine,
  quoted,
  wrapList,
} from "../output.ts";

// ---------------------------------------------------------------------------------------------
// Arguments and shared options

/** Turns a ConfigError into commander's usage error (exit 2, one line). */
function arg<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      if (error instanceof ConfigError) throw new InvalidArgumentError(error.message);
      throw error;
    }
  };
}

export function parseHour(value: string): number {
  const n = Number(value);
  if (!/^\d{1,2}$/.test(value) || n > 23) {
    throw new InvalidArgumentError(`hour must be a UTC hour from 0 to 23, got ${quoted(value)}`);
  }
  return n;
}

export function parseCountryFlag(value: string): string {
  const country = normalizeCountry(value);
  if (country === null) {
    throw new InvalidArgumentError(`${quoted(value)} is not an ISO 3166-1 alpha-2 country code`);
  }
  return country;
}

export function parseLangFlag(value: string): string {
  const lang = normalizeLang(value);
  if (lang === null) {
    throw new InvalidArgumentError(`${quoted(value)} is not an ISO 639 language code or BCP 47 tag`);
  }
  return lang;
}

interface LimitOptions {
  fetchConnectTimeout: number;
  fetchTimeout: number;
  maxCatalogBytes: number;
}

function withSource(command: Command): Command {
  return command.argument(
    "<source>",
    "catalog file path or http(s) URL of the campaign service",
    arg(parseSource),
  );
}

/** The server's fetch limits, as flags with the same names, env twins and defaults as `serve`. */
function withLimits(command: Command): Command {
  const d = DEFAULT_LIMITS;
  return command
    .addOption(
      new Option("--fetch-connect-timeout <seconds>", "time allowed to connect and receive response headers")
        .env("ADSRV_FETCH_CONNECT_TIMEOUT")
        .argParser(arg((v) => parsePositive("--fetch-connect-timeout", v)))
        .default(d.connectTimeoutMs / 1000),
    )
    .addOption(
      new Option("--fetch-timeout <seconds>", "time allowed for the whole fetch")
        .env("ADSRV_FETCH_TIMEOUT")
        .argParser(arg((v) => parsePositive("--fetch-timeout", v)))
        .default(d.totalTimeoutMs / 1000),
    )
    .addOption(
      new Option("--max-catalog-bytes <bytes>", "largest catalog accepted")
        .env("ADSRV_MAX_CATALOG_BYTES")
        .argParser(arg((v) => parseCount("--max-catalog-bytes", v)))
        .default(d.maxBytes),
    );
}

function limitsOf(opts: LimitOptions): FetchLimits {
  return {
    connectTimeoutMs: opts.fetchConnectTimeout * 1000,
    totalTimeoutMs: opts.fetchTimeout * 1000,
    maxBytes: opts.maxCatalogBytes,
  };
}

// ---------------------------------------------------------------------------------------------
// Reading the source

type Loaded =
  | { readonly ok: true; readonly text: string; readonly bytes: number; readonly elapsedMs: number }
  | { readonly ok: false; readonly failure: string; readonly message: string };

async function load(source: string, limits: FetchLimits): Promise<Loaded> {
  const progress = progressLine(process.stderr, { label: `fetching ${source}` });
  const started = performance.now();
  const result = await readSource(source, null, limits, progress.update);
  progress.done();
  const elapsedMs = Math.round(performance.now() - started);
  if (result.kind === "body") return { ok: true, text: result.text, bytes: result.bytes, elapsedMs };
  if (result.kind === "unchanged") return { ok: false, failure: "unchanged", message: "source unchanged" };
  const verb = isUrl(source) ? "fetch" : "read";
  return { ok: false, failure: result.failure, message: `cannot ${verb} ${source}: ${result.message}` };
}

/** Reports a failure of the thing checked: exit 1. */
function failed(json: boolean, source: string, failure: string, message: string): void {
  if (json) printJson({ ok: false, source, error: { failure, message } });
  else process.stderr.write(`${colors(colorEnabled(process.stderr)).red("error:")} ${message}\n`);
  process.exitCode = 1;
}

/** Writes `text` to `path` through a temporary file in the same directory, then a rename. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await writeFile(temp, text);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// fetch

interface FetchOptions extends LimitOptions {
  output?: string;
  json?: boolean;
}

function fetchCommand(): Command {
  const command = withLimits(
    withSource(new Command("fetch"))
      .description("fetch a catalog (same timeouts, size limit and no-redirect rule as the server)")
      .option("-o, --output <file>", "write the raw document to FILE (atomically) instead of stdout")
      .option("--json", "with -o: print a JSON summary of what was written"),
  );
  return command
    .addHelpText(
      "after",
      `
The raw body goes to stdout unless -o is given; a progress line is drawn on stderr for large
bodies when stderr is a terminal. The document is written as received even if the server
would reject it (a warning then says why). Exit 1 when the fetch fails (refused, timeout,
non-2xx, redirect, over --max-catalog-bytes).

Examples:
  $ adsrv catalog fetch https://campaigns.example/ads -o catalog.json
  $ adsrv catalog fetch https://campaigns.example/ads | jq '.ads | length'
  $ adsrv catalog fetch https://campaigns.example/ads -o catalog.json --json --fetch-timeout 60`,
    )
    .action(async (source: string, opts: FetchOptions, cmd: Command) => {
      const json = opts.json === true;
      if (json && opts.output === undefined) {
        cmd.error("error: --json needs -o FILE (without it the raw document goes to stdout)", {
          exitCode: 2,
        });
      }
      const loaded = await load(source, limitsOf(opts));
      if (!loaded.ok) return failed(json, source, loaded.failure, loaded.message);
      const check = parseCatalog(loaded.text);
      if (opts.output === undefined) {
        process.stdout.write(loaded.text);
      } else {
        try {
          await writeAtomically(opts.output, loaded.text);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code ?? "error";
          return failed(json, source, "write", `cannot write ${opts.output}: ${code}`);
        }
      }
      const sha256 = new Bun.CryptoHasher("sha256").update(loaded.text).digest("hex");
      const catalog = check.ok
        ? { accepted: true, valid: check.ads.length, invalid: check.issues.length, rejected: null }
        : { accepted: false, valid: 0, invalid: check.issues.length, rejected: check.code };
      if (json) {
        printJson({
          ok: true,
          source,
          output: opts.output,
          bytes: loaded.bytes,
          sha256,
          elapsed_ms: loaded.elapsedMs,
          catalog,
        });
      } else if (opts.output !== undefined) {
        const c = colors(colorEnabled(process.stdout));
        const ads = check.ok
          ? `${formatCount(check.ads.length)} valid ads${check.issues.length > 0 ? `, ${c.yellow(`${formatCount(check.issues.length)} invalid`)}` : ""}`
          : c.red("rejected by the validator");
        process.stdout.write(
          `${c.green("wrote")} ${opts.output}: ${formatBytes(loaded.bytes)} (${formatCount(loaded.bytes)} bytes) in ${loaded.elapsedMs} ms, ${ads}\n` +
            `sha256 ${sha256}\n`,
        );
      }
      if (!check.ok && !json) {
        process.stderr.write(
          `warning: a server would reject this document: ${check.message} (see adsrv catalog validate)\n`,
        );
      }
      process.exitCode = 0;
    });
}

// ---------------------------------------------------------------------------------------------
// validate

interface ValidateOptions extends LimitOptions {
  json?: boolean;
}

function summaryJson(source: string, summary: CatalogSummary): Record<string, unknown> {
  return {
    ok: summary.ok,
    source,
    accepted: summary.accepted,
    rejected: summary.rejected,
    version: summary.version,
    entries: summary.entries,
    valid: summary.valid,
    invalid: summary.invalid,
    by_reason: Object.fromEntries(summary.byReason.map((r) => [r.code, r.count])),
    countries: summary.countries,
    languages: summary.languages,
    pairs: summary.pairs,
    issues: summary.issues,
  };
}

function list(c: Colors, label: string, items: readonly string[]): string {
  return wrapList(c.bold(label), label.length, items);
}

function printSummary(source: string, summary: CatalogSummary, c: Colors): void {
  const out: string[] = [];
  const entries = summary.entries === null ? "no entries read" : `${formatCount(summary.entries)} entries`;
  out.push(
    `${c.bold(source)}: ${entries}, ${formatCount(summary.valid)} valid, ${formatCount(summary.invalid)} invalid`,
  );
  if (summary.issues.length > 0) {
    out.push("", c.bold("invalid entries:"));
    const rows = summary.issues.map((issue) => ({
      index: `#${issue.index}`,
      id: issue.id === null ? "(no id)" : quoted(issue.id),
      code: issue.code,
      message: issue.message,
    }));
    const wIndex = Math.max(...rows.map((r) => r.index.length));
    const wId = Math.min(40, Math.max(...rows.map((r) => r.id.length)));
    const wCode = Math.max(...rows.map((r) => r.code.length));
    for (const r of rows) {
      out.push(
        `  ${r.index.padEnd(wIndex)}  ${r.id.padEnd(wId)}  ${c.red(r.code.padEnd(wCode))}  ${r.message}`,
      );
    }
    out.push("", c.bold("by reason:"));
    const w = Math.max(...summary.byReason.map((r) => r.code.length));
    for (const r of summary.byReason) out.push(`  ${r.code.padEnd(w)}  ${formatCount(r.count)}`);
  }
  if (summary.accepted) {
    out.push(
      "",
      list(c, `countries (${summary.countries.length}):`, summary.countries),
      list(c, `languages (${summary.languages.length}):`, summary.languages),
      list(
        c,
        `pairs (${summary.pairs.length}):`,
        summary.pairs.map((p) => `${p.country}/${p.lang}:${p.ads}`),
      ),
      `${c.bold("version")}: ${summary.version ?? "-"}`,
    );
  }
  out.push("");
  if (summary.rejected !== null) {
    out.push(`${c.red("REJECTED")}: ${summary.rejected.message}; a server keeps its last good catalog`);
  } else if (!summary.ok) {
    out.push(
      `${c.yellow("INVALID")}: ${formatCount(summary.invalid)} entries would be skipped; ${formatCount(summary.valid)} ads would be served`,
    );
  } else {
    out.push(`${c.green("OK")}: ${formatCount(summary.valid)} ads, all valid`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

function validateCommand(): Command {
  return withLimits(
    withSource(new Command("validate"))
      .description("check every entry with the server's validator; exit 1 if any is invalid")
      .option("--json", "print the report as JSON"),
  )
    .addHelpText(
      "after",
      `
Lists each invalid entry (index in "ads", id, reason), then a summary: valid and invalid
counts, invalid entries by reason, and the countries, languages and (country, language) pairs
covered, as canonical codes (ISO 3166-1 alpha-2, ISO 639-2/T). The version is the one a
server reports as catalog_version in /readyz. Exit 1 when any entry is invalid or the document
is rejected (not JSON, not {"ads": [...]}, every entry invalid, too large) or cannot be read.

Examples:
  $ adsrv catalog validate catalog.json
  $ adsrv catalog validate https://campaigns.example/ads --json | jq .by_reason`,
    )
    .action(async (source: string, opts: ValidateOptions) => {
      const json = opts.json === true;
      const loaded = await load(source, limitsOf(opts));
      if (!loaded.ok) return failed(json, source, loaded.failure, loaded.message);
      const summary = summarize(parseCatalog(loaded.text));
      if (json) printJson(summaryJson(source, summary));
      else printSummary(source, summary, colors(colorEnabled(process.stdout)));
      process.exitCode = summary.ok ? 0 : 1;
    });
}

// ---------------------------------------------------------------------------------------------
// preview

interface PreviewOptions extends LimitOptions {
  country?: string;
  lang?: string;
  hour?: number;
  json?: boolean;
}

const MAX_ID_COLUMN = 24;

function idCell(id: string, width: number): string {
  return id.length > width ? `${id.slice(0, width - 1)}~` : id.padEnd(width);
}

/** Colours a 24-cell string cell by cell (`paint` picks each cell's colour), reversing hour `now`. */
function paintCells(cells: string, now: number, c: Colors, paint: (cell: string) => Paint): string {
  if (!c.enabled) return cells;
  let out = "";
  for (let h = 0; h < cells.length; h++) {
    const cell = cells[h] as string;
    const painted = paint(cell)(cell);
    out += h === now ? c.inverse(painted) : painted;
  }
  return out;
}

function printGrid(group: PreviewGroup, width: number, nowHour: number, c: Colors): string[] {
  const pad = " ".repeat(width + 4);
  const [tens, units] = hourHeader();
  const lines = [
    `${c.bold(`${group.country} ${group.lang}`)} (${group.ads.length} ${group.ads.length === 1 ? "ad" : "ads"})`,
    `${pad}${c.dim(tens)}`,
    `${pad}${c.dim(units)}  window (UTC)`,
  ];
  for (const ad of group.ads) {
    const cells = hourCells(ad.mask);
    const shown = paintCells(cells, nowHour, c, (cell) => (cell === "·" ? c.dim : c.green));
    lines.push(`  ${idCell(ad.id, width)}  ${shown}  ${windowLabel(ad.start_hour, ad.end_hour)}`);
  }
  const counts = countCells(group.live);
  const live = paintCells(counts, nowHour, c, (cell) => (cell === "·" ? c.red : (s) => s));
  lines.push(`  ${"live".padEnd(width)}  ${live}  ads eligible per hour`);
  lines.push(`${pad}${c.cyan(markerLine(nowHour, `^ now (${String(nowHour).padStart(2, "0")}h UTC)`))}`);
  return lines;
}

function rotationLines(country: string, lang: string, rotation: Rotation, snapshot: Snapshot, c: Colors) {
  const head = c.bold(`${country} ${lang}`);
  if (rotation.kind === "nofill") {
    const why =
      rotation.reason === "outside_hours"
        ? "no ad for this country and language runs at this hour"
        : "no ad targets this country and language";
    return [`${head}: ${c.yellow("no fill")} (${rotation.reason}: ${why}; the server answers 404)`];
  }
  const urls = new Map(Array.from(snapshot.ads, (a) => [a.id, a.video_url]));
  const width = Math.max(...rotation.ids.map((id) => id.length));
  const n = rotation.ids.length;
  return [
    `${head}: ${n} ${n === 1 ? "ad" : "ads"} in rotation`,
    ...rotation.ids.map(
      (id, i) => `  ${String(i + 1).padStart(String(n).length)}. ${id.padEnd(width)}  ${urls.get(id) ?? ""}`,
    ),
  ];
}

function previewCommand(): Command {
  return withLimits(
    withSource(new Command("preview"))
      .description(
        "show which ads are eligible: a 24-hour grid per (country, language), or the rotation at --hour",
      )
      .addOption(
        new Option("--country <code>", "only this country (ISO 3166-1 alpha-2)").argParser(parseCountryFlag),
      )
      .addOption(
        new Option(
          "--lang <code>",
          "only this language (ISO 639 code or BCP 47 tag; fre = fra = fr-CA)",
        ).argParser(parseLangFlag),
      )
      .addOption(
        new Option(
          "--hour <h>",
          "show the exact rotation order a server uses at this UTC hour (0-23)",
        ).argParser(parseHour),
      )
      .option("--json", "print the preview as JSON"),
  )
    .addHelpText(
      "after",
      `
The grid has one row per ad (catalog order), one column per UTC hour 0-23: a block where
the ad is eligible, "live" counts the eligible ads per hour, and ^ marks the current UTC hour.
With --hour, each (country, language) lists its eligible ads in the order a server serves
them, round-robin, from its first request at that hour. Invalid entries are skipped, as a
server skips them (a warning says how many). Exit 1 when the catalog cannot be read or is
rejected, 2 on a bad flag (unknown code, hour outside 0-23).

Examples:
  $ adsrv catalog preview catalog.json
  $ adsrv catalog preview catalog.json --country us --lang en
  $ adsrv catalog preview https://campaigns.example/ads --country fr --lang fre --hour 21
  $ adsrv catalog preview catalog.json --hour 3 --json | jq '.groups[] | {country, lang, rotation}'`,
    )
    .action(async (source: string, opts: PreviewOptions) => {
      const json = opts.json === true;
      const loaded = await load(source, limitsOf(opts));
      if (!loaded.ok) return failed(json, source, loaded.failure, loaded.message);
      const result: ValidationResult = parseCatalog(loaded.text);
      if (!result.ok) return failed(json, source, result.code, `catalog rejected: ${result.message}`);
      const now = Date.now();
      const nowHour = utcHour(now);
      const snapshot = buildSnapshot(result.ads, now);
      const filter = { country: opts.country ?? null, lang: opts.lang ?? null };
      const groups = previewGroups(snapshot, filter);
      const hour = opts.hour ?? null;
      // With both codes given and nothing targeting them, the server answers no_ad_for_country_lang.
      const nofill =
        groups.length === 0 && filter.country !== null && filter.lang !== null
          ? rotationAt(snapshot, filter.country, filter.lang, hour ?? nowHour)
          : null;
      if (json) {
        printJson({
          ok: true,
          source,
          version: snapshot.version,
          ads: snapshot.ads.length,
          skipped_invalid: result.issues.length,
          now_hour: nowHour,
          hour,
          filter,
          nofill: nofill?.kind === "nofill" ? nofill.reason : null,
          groups: groups.map((g) => {
            const rotation = hour === null ? null : rotationAt(snapshot, g.country, g.lang, hour);
            return {
              country: g.country,
              lang: g.lang,
              ads: g.ads.map((a) => ({
                id: a.id,
                video_url: a.video_url,
                start_hour: a.start_hour,
                end_hour: a.end_hour,
                hours: [...Array(HOURS).keys()].filter((h) => a.mask & (1 << h)),
              })),
              live: g.live,
              rotation: rotation === null ? null : rotation.kind === "ads" ? rotation.ids : [],
              nofill: rotation?.kind === "nofill" ? rotation.reason : null,
            };
          }),
        });
        process.exitCode = 0;
        return;
      }
      const c = colors(colorEnabled(process.stdout));
      const lines: string[] = [
        `${c.bold(source)}: ${formatCount(snapshot.ads.length)} ads, version ${snapshot.version}`,
      ];
      if (hour !== null) {
        lines.push(
          `at ${String(hour).padStart(2, "0")}:00-${String(hour).padStart(2, "0")}:59 UTC a server serves these in turn, round-robin (a freshly loaded catalog starts with 1.)`,
        );
      }
      if (nofill !== null && filter.country !== null && filter.lang !== null) {
        lines.push("", ...rotationLines(filter.country, filter.lang, nofill, snapshot, c));
      } else if (groups.length === 0) {
        const what = [filter.country, filter.lang].filter((x) => x !== null).join(" ");
        lines.push("", `no ads target ${what === "" ? "anything" : what}`);
      }
      // One id column width for every grid, so the hour columns line up down the page.
      const width = Math.min(
        MAX_ID_COLUMN,
        Math.max(4, ...groups.flatMap((g) => g.ads.map((a) => a.id.length))),
      );
      for (const g of groups) {
        lines.push("");
        if (hour === null) lines.push(...printGrid(g, width, nowHour, c));
        else
          lines.push(
            ...rotationLines(g.country, g.lang, rotationAt(snapshot, g.country, g.lang, hour), snapshot, c),
          );
      }
      process.stdout.write(`${lines.join("\n")}\n`);
      if (result.issues.length > 0) {
        process.stderr.write(
          `warning: ${result.issues.length} invalid ${result.issues.length === 1 ? "entry" : "entries"} skipped (see adsrv catalog validate)\n`,
        );
      }
      process.exitCode = 0;
    });
}

// ---------------------------------------------------------------------------------------------

export function catalogCommand(): Command {
  return new Command("catalog")
    .description("fetch, validate and preview a campaign catalog with the server's own code")
    .addCommand(fetchCommand())
    .addCommand(validateCommand())
    .addCommand(previewCommand())
    .addHelpText(
      "after",
      `
SOURCE is a file path or an http(s) URL of the campaign service.

Examples:
  $ adsrv catalog fetch https://campaigns.example/ads -o catalog.json
  $ adsrv catalog validate catalog.json
  $ adsrv catalog preview catalog.json --country us --lang eng --hour 14`,
    );
}

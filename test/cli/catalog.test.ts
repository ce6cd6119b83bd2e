/**
 * `adsrv catalog fetch|validate|preview` through the real executable (runCli): output, --json
 * shapes, exit codes and error messages; preview's rotation compared with a live server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { colorEnabled, colors, progressLine, quoted, wrapList } from "../../cli/output.ts";
import { makeConfig } from "../../src/config.ts";
import { hourMask } from "../../src/decision/hours.ts";
import { startServer } from "../../src/server.ts";
import { createLogger } from "../../src/telemetry/log.ts";
import {
  type CliResult,
  cliCommand,
  type FakeCampaignService,
  fakeCampaignService,
  ROOT,
  runCli,
  type ServiceMode,
  sampleAd,
} from "../rig.ts";

const FIXTURES = join(ROOT, "test", "fixtures");
const INVALID = join(FIXTURES, "catalog-tools-invalid.json");
const ROTATION = join(FIXTURES, "catalog-tools-rotation.json");
const MALFORMED = join(FIXTURES, "catalog-tools-malformed.json");
const SAMPLE = join(ROOT, "src", "catalog", "sample-catalog.json");

/** A loopback port with nothing listening: bound, then released. */
async function closedPort(): Promise<number> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const port = server.port as number;
  await server.stop(true);
  return port;
}

let dir: string;
const CATALOG = { ads: [sampleAd("one"), sampleAd("two", { country: "fr", lang: "fre" })] };

/** A fake campaign service of its own for one test, stopped by `await using`. */
function serviceFor(catalog: unknown, mode: ServiceMode = "ok"): FakeCampaignService & AsyncDisposable {
  const service = fakeCampaignService(catalog);
  service.mode = mode;
  return Object.assign(service, { [Symbol.asyncDispose]: () => service.stop() });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "adsrv-catalog-tools-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("adsrv catalog --help", () => {
  test("lists the subcommands; each has examples", async () => {
    const subs = ["fetch", "validate", "preview"];
    const [top, ...helps] = await Promise.all([
      runCli(["catalog", "--help"]),
      ...subs.map((sub) => runCli(["catalog", sub, "--help"])),
    ]);
    expect(top?.code).toBe(0);
    for (const sub of subs) expect(top?.stdout).toContain(sub);
    for (const [i, sub] of subs.entries()) {
      const r = helps[i] as CliResult;
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("Examples:");
      expect(r.stdout).toContain(`$ adsrv catalog ${sub}`);
      expect(r.stdout).toContain("--max-catalog-bytes");
    }
  });

  test("unknown flag and missing SOURCE are usage errors (exit 2)", async () => {
    const [unknown, missing, scheme] = await Promise.all([
      runCli(["catalog", "validate", SAMPLE, "--bogus"]),
      runCli(["catalog", "preview"]),
      runCli(["catalog", "fetch", "ftp://example.com/ads"]),
    ]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown option '--bogus'");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'source'");
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toContain("must be a file path or an http(s) URL");
  });
});

describe("adsrv catalog fetch", () => {
  test("writes the raw body to stdout", async () => {
    await using service = serviceFor(CATALOG);
    const r = await runCli(["catalog", "fetch", service.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(JSON.stringify(CATALOG));
    expect(r.stderr).toBe("");
    expect(service.requests.lastHeaders?.get("accept")).toBe("application/json");
  });

  test("-o FILE writes the exact bytes and prints a summary; --json shape", async () => {
    const body = `${JSON.stringify(CATALOG, null, 1)}\n`;
    await using service = serviceFor(body);
    const out = join(dir, "fetched.json");
    const out2 = join(dir, "fetched2.json");
    const [r, j] = await Promise.all([
      runCli(["catalog", "fetch", service.url, "-o", out]),
      runCli(["catalog", "fetch", service.url, "--output", out2, "--json"]),
    ]);
    expect(r.code).toBe(0);
    expect(await readFile(out, "utf8")).toBe(body);
    expect(r.stdout).toContain(`wrote ${out}`);
    expect(r.stdout).toContain(`(${body.length} bytes)`);
    expect(r.stdout).toContain("2 valid ads");

    expect(j.code).toBe(0);
    const summary = JSON.parse(j.stdout);
    expect(summary).toMatchObject({
      ok: true,
      source: service.url,
      output: out2,
      bytes: body.length,
      sha256: new Bun.CryptoHasher("sha256").update(body).digest("hex"),
      catalog: { accepted: true, valid: 2, invalid: 0, rejected: null },
    });
    expect(typeof summary.elapsed_ms).toBe("number");
    expect(await readFile(out2, "utf8")).toBe(body);
  });

  test("a 500 fails with exit 1 and leaves an existing -o file untouched", async () => {
    await using service = serviceFor(CATALOG, "500");
    const out = join(dir, "kept.json");
    await writeFile(out, "previous");
    const [r, j] = await Promise.all([
      runCli(["catalog", "fetch", service.url, "-o", out]),
      runCli(["catalog", "fetch", service.url, "-o", out, "--json"]),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot fetch ${service.url}: campaign service answered 500`);
    expect(r.stdout).toBe("");
    expect(await readFile(out, "utf8")).toBe("previous");
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toEqual({
      ok: false,
      source: service.url,
      error: {
        failure: "http_status",
        message: `cannot fetch ${service.url}: campaign service answered 500`,
      },
    });
  });

  test("a redirect is not followed: exit 1", async () => {
    await using service = serviceFor(CATALOG, "redirect");
    const out = join(dir, "redirected.json");
    const r = await runCli(["catalog", "fetch", service.url, "-o", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("redirect (302) not followed");
    expect(service.requests.count).toBe(1);
    expect(await Bun.file(out).exists()).toBe(false);
  });

  test("the size limit and timeouts are the server's, set by the same flags", async () => {
    await using service = serviceFor(CATALOG);
    await using hanging = serviceFor(CATALOG, "hang");
    const started = performance.now();
    const [big, hung, bad] = await Promise.all([
      runCli(["catalog", "fetch", service.url, "--max-catalog-bytes", "20"]),
      runCli(["catalog", "fetch", hanging.url, "--fetch-connect-timeout", "0.3"]),
      runCli(["catalog", "fetch", service.url, "--fetch-timeout", "-1"]),
    ]);
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/is over the 20 (byte )?limit/);
    expect(hung.code).toBe(1);
    expect(hung.stderr).toContain("no response within 300 ms");
    // Well before runCli would kill it (20 s): the deadline came from the flag.
    expect(performance.now() - started).toBeLessThan(15_000);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--fetch-timeout must be a positive number");
  });

  test("an unreachable URL (closed port) or a missing file fails with exit 1", async () => {
    const url = `http://127.0.0.1:${await closedPort()}/ads`;
    const path = join(dir, "nope.json");
    const [r, missing] = await Promise.all([
      runCli(["catalog", "fetch", url]),
      runCli(["catalog", "fetch", path]),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot fetch ${url}: cannot reach the campaign service`);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot read ${path}: ${path} does not exist`);
  });

  test("a malformed body is still saved as received, with a warning", async () => {
    await using service = serviceFor(CATALOG, "malformed");
    const out = join(dir, "malformed.json");
    const r = await runCli(["catalog", "fetch", service.url, "-o", out]);
    expect(r.code).toBe(0);
    expect(await readFile(out, "utf8")).toBe('{"ads": [');
    expect(r.stdout).toContain("rejected by the validator");
    expect(r.stderr).toContain("warning: a server would reject this document: catalog is not JSON");
  });

  test("--json without -o is a usage error", async () => {
    const r = await runCli(["catalog", "fetch", "http://127.0.0.1:9/ads", "--json"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--json needs -o FILE");
  });
});

describe("adsrv catalog validate", () => {
  test("lists every invalid entry with index, id and reason; summary; exit 1", async () => {
    const r = await runCli(["catalog", "validate", INVALID]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(`${INVALID}: 10 entries, 3 valid, 7 invalid`);
    const entry = (index: number) => lines.find((l) => l.startsWith(`  #${index} `)) ?? "";
    expect(entry(1)).toMatch(/^ {2}#1\s+"bad-country"\s+unknown_country\s+country is not an ISO 3166-1/);
    expect(entry(3)).toMatch(/"a1"\s+duplicate_id\s+id already used/);
    expect(entry(4)).toMatch(/\(no id\)\s+missing_field\s+id is required/);
    expect(entry(5)).toMatch(/"late"\s+invalid_hour\s+start_hour must be/);
    expect(entry(7)).toMatch(/"ftp-ad"\s+invalid_video_url/);
    expect(entry(8)).toMatch(/\(no id\)\s+not_object/);
    expect(entry(9)).toMatch(/"zz2"\s+unknown_country/);
    for (const valid of [0, 2, 6]) expect(entry(valid)).toBe("");
    const byReason = lines.slice(lines.indexOf("by reason:") + 1, lines.indexOf("by reason:") + 7);
    expect(byReason.map((l) => l.trim().split(/\s+/))).toEqual([
      ["unknown_country", "2"],
      ["duplicate_id", "1"],
      ["invalid_hour", "1"],
      ["invalid_video_url", "1"],
      ["missing_field", "1"],
      ["not_object", "1"],
    ]);
    expect(r.stdout).toContain("countries (3): fr gb us\n");
    expect(r.stdout).toContain("languages (2): eng fra\n");
    expect(r.stdout).toContain("pairs (3): fr/fra:1 gb/eng:1 us/eng:1\n");
    expect(r.stdout).toContain("INVALID: 7 entries would be skipped; 3 ads would be served");
  });

  test("--json shape", async () => {
    const r = await runCli(["catalog", "validate", INVALID, "--json"]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(Object.keys(report).sort()).toEqual(
      [
        "ok",
        "source",
        "accepted",
        "rejected",
        "version",
        "entries",
        "valid",
        "invalid",
        "by_reason",
        "countries",
        "languages",
        "pairs",
        "issues",
      ].sort(),
    );
    expect(report).toMatchObject({
      ok: false,
      source: INVALID,
      accepted: true,
      rejected: null,
      entries: 10,
      valid: 3,
      invalid: 7,
      by_reason: {
        unknown_country: 2,
        duplicate_id: 1,
        invalid_hour: 1,
        invalid_video_url: 1,
        missing_field: 1,
        not_object: 1,
      },
      countries: ["fr", "gb", "us"],
      languages: ["eng", "fra"],
    });
    expect(report.version).toMatch(/^[0-9a-f]{16}$/);
    expect(report.issues[0]).toEqual({
      index: 1,
      id: "bad-country",
      code: "unknown_country",
      field: "country",
      message: "country is not an ISO 3166-1 alpha-2 code",
    });
    expect(report.issues.map((i: { index: number }) => i.index)).toEqual([1, 3, 4, 5, 7, 8, 9]);
  });

  test("a valid catalog: exit 0, and its version is what /readyz reports", async () => {
    const r = await runCli(["catalog", "validate", SAMPLE, "--json"]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ ok: true, accepted: true, invalid: 0, issues: [], by_reason: {} });
    expect(report.valid).toBeGreaterThan(20);
    const server = await startServer(
      makeConfig({ listen: { host: "127.0.0.1", port: 0 }, catalog: SAMPLE, refreshSeconds: 3600 }),
      { log: createLogger({ write: () => {} }) },
    );
    try {
      await server.ready;
      const ready = (await (await fetch(`${server.url}/readyz`)).json()) as {
        catalog_version: string;
        ads: number;
      };
      expect(ready.catalog_version).toBe(report.version);
      expect(ready.ads).toBe(report.valid);
    } finally {
      await server.stop();
    }
    const human = await runCli(["catalog", "validate", SAMPLE]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`OK: ${report.valid} ads, all valid`);
    expect(human.stdout).not.toContain("invalid entries:");
  });

  test("malformed JSON is rejected: exit 1", async () => {
    const [r, json] = await Promise.all([
      runCli(["catalog", "validate", MALFORMED]),
      runCli(["catalog", "validate", MALFORMED, "--json"]),
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("REJECTED: catalog is not JSON");
    expect(json.code).toBe(1);
    const j = JSON.parse(json.stdout);
    expect(j).toMatchObject({ ok: false, accepted: false, entries: null, valid: 0 });
    expect(j.rejected.code).toBe("malformed_json");
  });

  test("from a URL: all-invalid and wrong-shape documents are rejected", async () => {
    await using allInvalid = serviceFor(CATALOG, "all_invalid");
    await using wrongShape = serviceFor(CATALOG, "wrong_shape");
    await using good = serviceFor(CATALOG);
    const [all, shape, ok] = await Promise.all([
      runCli(["catalog", "validate", allInvalid.url, "--json"]),
      runCli(["catalog", "validate", wrongShape.url]),
      runCli(["catalog", "validate", good.url]),
    ]);
    expect(all.code).toBe(1);
    const report = JSON.parse(all.stdout);
    expect(report.rejected.code).toBe("all_invalid");
    expect(report.issues.map((i: { id: string }) => i.id)).toEqual(["x", "y"]);
    expect(shape.code).toBe(1);
    expect(shape.stdout).toContain('REJECTED: catalog must have an "ads" array');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("OK: 2 ads, all valid");
  });

  test("missing file and unreachable URL: exit 1 with the reason", async () => {
    const path = join(dir, "missing.json");
    const url = `http://127.0.0.1:${await closedPort()}/ads`;
    const [missing, down] = await Promise.all([
      runCli(["catalog", "validate", path]),
      runCli(["catalog", "validate", url, "--json"]),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`error: cannot read ${path}: ${path} does not exist\n`);
    expect(down.code).toBe(1);
    expect(JSON.parse(down.stdout).error.failure).toBe("connect");
  });

  test("ids from the feed are escaped before reaching the terminal", async () => {
    const path = join(dir, "hostile.json");
    await writeFile(
      path,
      JSON.stringify({ ads: [sampleAd("ok"), { id: "\u001b[31mred\u202e", country: "us" }] }),
    );
    const r = await runCli(["catalog", "validate", path]);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain("\u001b");
    expect(r.stdout).not.toContain("\u202e");
    expect(r.stdout).toContain('"\\u001b[31mred\\u202e"');
  });
});

describe("adsrv catalog preview", () => {
  /** Starts a server on the catalog file with its clock at UTC hour `hour`. */
  async function serverAt(catalog: string, hour: number) {
    const server = await startServer(
      makeConfig({ listen: { host: "127.0.0.1", port: 0 }, catalog, refreshSeconds: 3600 }),
      { now: () => Date.UTC(2026, 0, 15, hour, 30), log: createLogger({ write: () => {} }) },
    );
    await server.ready;
    return server;
  }

  test("a grid per (country, language): rows match the windows, ^ marks the current UTC hour", async () => {
    const before = new Date().getUTCHours();
    const r = await runCli(["catalog", "preview", ROTATION, "--country", "US", "--lang", "en"]);
    const after = new Date().getUTCHours();
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^.*catalog-tools-rotation\.json: 8 ads, version [0-9a-f]{16}$/);
    expect(r.stdout).toContain("us eng (5 ads)");
    expect(r.stdout).not.toContain("us spa");
    expect(r.stdout).not.toContain("fr fra");
    const row = (id: string) => lines.find((l) => l.startsWith(`  ${id} `)) ?? "";
    const cellsStart = row("allday-1").indexOf("█");
    const cells = (id: string) => row(id).slice(cellsStart, cellsStart + 24);
    const expected = (s: number, e: number) => {
      const m = hourMask(s, e);
      return Array.from({ length: 24 }, (_, h) => (m & (1 << h) ? "█" : "·")).join("");
    };
    expect(cells("allday-1")).toBe(expected(0, 0));
    expect(cells("morning")).toBe(expected(6, 12));
    expect(cells("night")).toBe(expected(22, 3));
    expect(cells("allday-2")).toBe(expected(5, 5));
    expect(cells("afternoon")).toBe(expected(12, 18));
    expect(row("afternoon")).toEndWith("12:00-18:00");
    expect(row("night")).toEndWith("22:00-03:00");
    expect(row("allday-1")).toEndWith("all day");
    expect(row("live").slice(cellsStart, cellsStart + 24)).toBe("333222333333333333222233");
    // Ads in catalog order.
    const order = ["allday-1", "morning", "night", "allday-2", "afternoon"].map((id) =>
      lines.findIndex((l) => l.startsWith(`  ${id} `)),
    );
    expect(order).toEqual([...order].sort((a, b) => a - b));
    const marker = lines.find((l) => l.includes("^ now")) ?? "";
    expect([before, after]).toContain(marker.indexOf("^") - cellsStart);
    expect(marker).toContain("h UTC)");
  });

  test("--json grid shape", async () => {
    const r = await runCli(["catalog", "preview", ROTATION, "--json"]);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p).toMatchObject({ ok: true, ads: 8, skipped_invalid: 0, hour: null, nofill: null });
    expect(p.filter).toEqual({ country: null, lang: null });
    expect(p.groups.map((g: { country: string; lang: string }) => `${g.country}/${g.lang}`)).toEqual([
      "fr/fra",
      "us/eng",
      "us/spa",
    ]);
    const fr = p.groups[0];
    expect(fr.ads[0]).toEqual({
      id: "fr-soir",
      video_url: "https://cdn.example.com/fr-soir.mp4",
      start_hour: 18,
      end_hour: 24,
      hours: [18, 19, 20, 21, 22, 23],
    });
    expect(fr.live).toHaveLength(24);
    expect(fr.rotation).toBeNull();
  });

  test("--hour gives the exact order a live server serves at that hour", async () => {
    const hours = [1, 7, 13, 23];
    const previews = await Promise.all(
      hours.map((hour) => runCli(["catalog", "preview", ROTATION, "--hour", String(hour), "--json"])),
    );
    for (const [i, hour] of hours.entries()) {
      const r = previews[i] as CliResult;
      expect(r.code).toBe(0);
      const p = JSON.parse(r.stdout);
      expect(p.hour).toBe(hour);
      const server = await serverAt(ROTATION, hour);
      try {
        for (const group of p.groups as {
          country: string;
          lang: string;
          rotation: string[];
          nofill: string;
        }[]) {
          const url = `${server.url}/ad_request?country=${group.country}&lang=${group.lang}`;
          if (group.rotation.length === 0) {
            const res = await fetch(url);
            expect(res.status).toBe(404);
            expect(((await res.json()) as { reason: string }).reason).toBe(group.nofill);
            continue;
          }
          const served: string[] = [];
          for (let i = 0; i < group.rotation.length * 2; i++) {
            const res = await fetch(url);
            expect(res.status).toBe(200);
            served.push(((await res.json()) as { id: string }).id);
          }
          expect(served).toEqual([...group.rotation, ...group.rotation]);
        }
      } finally {
        await server.stop();
      }
    }
  });

  test("--hour human output lists the rotation in order, and no-fill reasons", async () => {
    const [r, fr, none] = await Promise.all([
      runCli(["catalog", "preview", ROTATION, "--hour", "23", "--country", "us"]),
      runCli(["catalog", "preview", ROTATION, "--hour", "3", "--country", "fr", "--lang", "fr-FR"]),
      runCli(["catalog", "preview", ROTATION, "--country", "de", "--lang", "ger", "--json"]),
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("at 23:00-23:59 UTC a server serves these in turn");
    const usEng = r.stdout.slice(r.stdout.indexOf("us eng: 3 ads in rotation"));
    expect(usEng).toMatch(
      /^us eng: 3 ads in rotation\n {2}1\. allday-1 +https:\S+\n {2}2\. night +https:\S+\n {2}3\. allday-2 +https:\S+\n/,
    );
    expect(r.stdout).not.toContain("fr fra");

    expect(fr.code).toBe(0);
    expect(fr.stdout).toContain("fr fra: no fill (outside_hours");

    expect(none.code).toBe(0);
    const p = JSON.parse(none.stdout);
    expect(p.groups).toEqual([]);
    expect(p.nofill).toBe("no_ad_for_country_lang");
    expect(p.filter).toEqual({ country: "de", lang: "deu" });
  });

  test("bad --hour, unknown country or language: usage errors (exit 2)", async () => {
    const cases = [
      ["--hour", "24", "hour must be a UTC hour from 0 to 23"],
      ["--hour", "x", "hour must be a UTC hour from 0 to 23"],
      ["--hour", "-1", "hour must be a UTC hour from 0 to 23"],
      ["--country", "zz", '"zz" is not an ISO 3166-1 alpha-2 country code'],
      ["--country", "usa", "is not an ISO 3166-1 alpha-2 country code"],
      ["--lang", "xx1", "is not an ISO 639 language code"],
    ] as const;
    const results = await Promise.all(
      cases.map(([flag, value]) => runCli(["catalog", "preview", ROTATION, flag, value])),
    );
    for (const [i, [, , message]] of cases.entries()) {
      const r = results[i];
      expect(r?.code).toBe(2);
      expect(r?.stderr).toContain(message);
      expect(r?.stdout).toBe("");
    }
  });

  test("invalid entries are skipped like the server does, with a warning; rejected documents exit 1", async () => {
    const [r, human, bad, gone] = await Promise.all([
      runCli(["catalog", "preview", INVALID, "--json"]),
      runCli(["catalog", "preview", INVALID]),
      runCli(["catalog", "preview", MALFORMED]),
      runCli(["catalog", "preview", join(dir, "gone.json")]),
    ]);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p.ads).toBe(3);
    expect(p.skipped_invalid).toBe(7);
    expect(human.code).toBe(0);
    expect(human.stderr).toBe("warning: 7 invalid entries skipped (see adsrv catalog validate)\n");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("error: catalog rejected: catalog is not JSON");
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("does not exist");
  });
});

const SCRIPT = Bun.which("script");

/** Runs adsrv with stdout on a pseudo-terminal (util-linux `script`), NO_COLOR as given. */
async function onTerminal(args: readonly string[], noColor: string | undefined): Promise<string> {
  const command = cliCommand(args)
    .map((a) => `'${a.replaceAll("'", "'\\''")}'`)
    .join(" ");
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: noColor, TERM: "xterm" };
  const proc = Bun.spawn([SCRIPT as string, "-qec", command, "/dev/null"], {
    cwd: ROOT,
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 20_000,
  });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  return out;
}

describe("colour on a terminal", () => {
  test.skipIf(SCRIPT === null)("on a TTY: colour unless NO_COLOR is set; never when piped", async () => {
    const args = ["catalog", "preview", ROTATION, "--country", "us", "--lang", "spa"];
    const [tty, ttyNoColor, piped] = await Promise.all([
      onTerminal(args, undefined),
      onTerminal(args, "1"),
      runCli(args, { env: { NO_COLOR: "" } }),
    ]);
    expect(tty).toContain("\u001b[32m█\u001b[39m");
    expect(tty).toContain("\u001b[7m");
    expect(ttyNoColor).toContain("us spa (1 ad)");
    expect(ttyNoColor).not.toContain("\u001b[");
    expect(piped.code).toBe(0);
    expect(piped.stdout).toContain("us spa (1 ad)");
    expect(piped.stdout).not.toContain("\u001b[");
  });
});

describe("cli/output.ts", () => {
  test("colour only on a TTY with NO_COLOR unset or empty", () => {
    expect(colorEnabled({ isTTY: true }, {})).toBe(true);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: "" })).toBe(true);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
    expect(colorEnabled({ isTTY: false }, {})).toBe(false);
    expect(colorEnabled({}, {})).toBe(false);
    expect(colors(false).red("x")).toBe("x");
    expect(colors(true).red("x")).toBe("\u001b[31mx\u001b[39m");
  });

  test("the progress line draws only on a TTY, past the threshold, and is erased", () => {
    const written: string[] = [];
    const tty = { isTTY: true, write: (s: string) => written.push(s) };
    const p = progressLine(tty, { minBytes: 100, intervalMs: 0, label: "fetching" });
    p.update(50, 1000);
    expect(written).toEqual([]);
    p.update(500, 1000);
    expect(written.at(-1)).toBe("\r\u001b[2Kfetching 500 B of 1000 B (50%)");
    p.update(2048, null);
    expect(written.at(-1)).toBe("\r\u001b[2Kfetching 2.0 KiB");
    p.done();
    expect(written.at(-1)).toBe("\r\u001b[2K");
    const piped: string[] = [];
    const q = progressLine({ isTTY: false, write: (s: string) => piped.push(s) }, { minBytes: 0 });
    q.update(10_000_000, null);
    q.done();
    expect(piped).toEqual([]);
  });

  test("quoted escapes control and non-ASCII characters", () => {
    expect(quoted("a\u001bb\u009bc\u202e")).toBe('"a\\u001bb\\u009bc\\u202e"');
    expect(quoted('x"y')).toBe('"x\\"y"');
  });

  test("wrapList folds under the label", () => {
    expect(wrapList("L:", 2, ["aaa", "bbb", "ccc"], 10)).toBe("L: aaa bbb\n   ccc");
    expect(wrapList("L:", 2, [], 10)).toBe("L: none");
  });
});

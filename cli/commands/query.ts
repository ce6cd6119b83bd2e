/**
 * `adsrv query COUNTRY LANG`: asks a running server for an ad through src/client.ts and prints
 * the ad or the problem details with the latency; `--count N` shows the distribution of ads.
 * Exit codes: 0 every answer was an ad, 1 a problem answer or an unreachable server, 2 usage.
 * @module
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { type AdAnswer, adRequestUrl, requestAd } from "../../src/client.ts";
import { ConfigError, parseCount, parsePositive } from "../../src/config.ts";
import { type Colors, colorEnabled, colors, printJson, quoted } from "../output.ts";

export const DEFAULT_SERVER = "http://127.0.0.1:8080";

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

export function parseServer(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`${quoted(value)} is not a URL (expected http://HOST:PORT)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError(`${quoted(value)} is not an http(s) URL`);
  }
  return value;
}

interface QueryOptions {
  server: string;
  playerId?: string;
  apiKey?: string;
  token?: string;
  count: number;
  timeout: number;
  json?: boolean;
}

const ms = (n: number): string => `${n.toFixed(1)} ms`;

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? 0;
}

const round = (n: number): number => Math.round(n * 100) / 100;

function answerJson(answer: AdAnswer): Record<string, unknown> {
  switch (answer.kind) {
    case "ad":
      return { ok: true, status: answer.status, latency_ms: round(answer.latencyMs), ad: answer.ad };
    case "problem":
      return {
        ok: false,
        status: answer.status,
        latency_ms: round(answer.latencyMs),
        problem: answer.problem,
        retry_after: answer.retryAfter,
      };
    case "error":
      return {
        ok: false,
        status: null,
        latency_ms: round(answer.latencyMs),
        error: { kind: answer.error, message: answer.message },
      };
  }
}

function printOne(answer: AdAnswer, url: string, c: Colors): void {
  if (answer.kind === "error") {
    process.stderr.write(`${c.red("error:")} ${answer.message}\n`);
    return;
  }
  const ok = answer.kind === "ad";
  const title = ok ? "OK" : answer.problem.title;
  const status = ok ? c.green(`${answer.status} ${title}`) : c.red(`${answer.status} ${title}`);
  const body = ok ? answer.ad : answer.problem;
  const extra =
    answer.kind === "problem" && answer.retryAfter !== null ? `  Retry-After: ${answer.retryAfter}` : "";
  process.stdout.write(
    `${status}  ${c.dim(ms(answer.latencyMs))}  ${c.dim(url)}${extra}\n${JSON.stringify(body, null, 2)}\n`,
  );
}

/** How a problem answer is counted in a distribution: status and reason (or parameter, or type). */
function problemKey(answer: Extract<AdAnswer, { kind: "problem" }>): string {
  const why = answer.problem.reason ?? answer.problem.param ?? answer.problem.type;
  return `${answer.status} ${typeof why === "string" ? why : ""}`.trim();
}

export function queryCommand(): Command {
  return new Command("query")
    .description("ask a running server for an ad (GET /ad_request) and show the answer and its latency")
    .argument("<country>", "ISO 3166-1 alpha-2 country code, sent as given (e.g. us)")
    .argument("<lang>", "ISO 639 language code or BCP 47 tag, sent as given (e.g. eng, fr-CA)")
    .addOption(
      new Option("--server <url>", "base URL of the server")
        .env("ADSRV_SERVER")
        .argParser(parseServer)
        .default(DEFAULT_SERVER),
    )
    .option("--player-id <id>", "player id, sent as player_id")
    .addOption(
      new Option("--api-key <key>", "API key, sent as X-Api-Key").env("ADSRV_API_KEY").conflicts("token"),
    )
    .addOption(new Option("--token <jwt>", "JWT, sent as Authorization: Bearer").env("ADSRV_TOKEN"))
    .addOption(
      new Option("--count <n>", "make N requests in a row and show how the ads were distributed")
        .argParser(arg((v) => parseCount("--count", v)))
        .default(1),
    )
    .addOption(
      new Option("--timeout <seconds>", "deadline for each request")
        .argParser(arg((v) => parsePositive("--timeout", v)))
        .default(5),
    )
    .option("--json", "print the answer (or the distribution) as JSON")
    .addHelpText(
      "after",
      `
Country and language are sent as typed, so the server's own 400 answers can be seen.
Credentials are sent when given (X-Api-Key or Authorization: Bearer) and never printed;
prefer ADSRV_API_KEY / ADSRV_TOKEN to the flags, which other local users can see in ps.
With --count, requests run one after another (the server rotates round-robin, so n ads
eligible and k*n requests give each ad k times), stopping early if the server is unreachable.
Exit 0 when every answer was an ad, 1 on a problem answer (404 no-fill, 400, 503, ...) or an
unreachable server, 2 on a usage error.

Examples:
  $ adsrv query us eng
  $ adsrv query fr fr-CA --server http://adsrv.internal:8080 --player-id p-42
  $ adsrv query us eng --count 100
  $ ADSRV_SERVER=http://127.0.0.1:9000 adsrv query gb en --json | jq -r .ad.video_url`,
    )
    .action(async (country: string, lang: string, opts: QueryOptions) => {
      const json = opts.json === true;
      const c = colors(colorEnabled(process.stdout));
      const request = {
        country,
        lang,
        ...(opts.playerId !== undefined ? { playerId: opts.playerId } : {}),
      };
      const options = {
        timeoutMs: opts.timeout * 1000,
        ...(opts.apiKey !== undefined ? { apiKey: opts.apiKey } : {}),
        ...(opts.token !== undefined ? { token: opts.token } : {}),
      };
      const url = adRequestUrl(opts.server, request).toString();

      if (opts.count === 1) {
        const answer = await requestAd(opts.server, request, options);
        if (json) printJson({ url, ...answerJson(answer) });
        else printOne(answer, url, c);
        process.exitCode = answer.kind === "ad" ? 0 : 1;
        return;
      }

      const started = performance.now();
      const answers: AdAnswer[] = [];
      for (let i = 0; i < opts.count; i++) {
        const answer = await requestAd(opts.server, request, options);
        answers.push(answer);
        if (answer.kind === "error") break;
      }
      const elapsedMs = performance.now() - started;
      const ads = new Map<string, number>();
      const problems = new Map<string, number>();
      for (const answer of answers) {
        if (answer.kind === "ad") ads.set(answer.ad.id, (ads.get(answer.ad.id) ?? 0) + 1);
        else if (answer.kind === "problem") {
          const key = problemKey(answer);
          problems.set(key, (problems.get(key) ?? 0) + 1);
        }
      }
      const latencies = answers.filter((a) => a.kind !== "error").map((a) => a.latencyMs);
      latencies.sort((a, b) => a - b);
      const stats = {
        min: round(latencies[0] ?? 0),
        p50: round(percentile(latencies, 50)),
        p95: round(percentile(latencies, 95)),
        p99: round(percentile(latencies, 99)),
        max: round(latencies.at(-1) ?? 0),
      };
      const allAds = answers.length === opts.count && answers.every((a) => a.kind === "ad");
      const lastError = answers.at(-1)?.kind === "error" ? (answers.at(-1) as AdAnswer) : null;
      if (json) {
        printJson({
          ok: allAds,
          url,
          requested: opts.count,
          completed: answers.filter((a) => a.kind !== "error").length,
          elapsed_ms: round(elapsedMs),
          ads: Object.fromEntries(ads),
          problems: Object.fromEntries(problems),
          error: lastError?.kind === "error" ? { kind: lastError.error, message: lastError.message } : null,
          latency_ms: stats,
          sequence: answers.map((a) => (a.kind === "ad" ? a.ad.id : null)),
        });
      } else {
        const done = answers.filter((a) => a.kind !== "error").length;
        const lines = [`${done} of ${opts.count} requests to ${c.dim(url)} in ${ms(elapsedMs)}`];
        const rows = [
          ...[...ads].map(([key, n]) => ({ key, n, paint: c.green })),
          ...[...problems].map(([key, n]) => ({ key, n, paint: c.red })),
        ];
        const width = Math.max(0, ...rows.map((row) => row.key.length));
        for (const { key, n, paint } of rows) {
          const share = done === 0 ? 0 : n / done;
          const bar = "█".repeat(Math.round(share * 30));
          const label = paint(key.padEnd(width));
          lines.push(
            `  ${label}  ${String(n).padStart(String(opts.count).length)}  ${(share * 100).toFixed(1).padStart(5)}%  ${bar}`,
          );
        }
        if (latencies.length > 0) {
          lines.push(
            `latency: min ${ms(stats.min)}  p50 ${ms(stats.p50)}  p95 ${ms(stats.p95)}  p99 ${ms(stats.p99)}  max ${ms(stats.max)}`,
          );
        }
        process.stdout.write(`${lines.join("\n")}\n`);
        if (lastError?.kind === "error") process.stderr.write(`${c.red("error:")} ${lastError.message}\n`);
      }
      process.exitCode = allAds ? 0 : 1;
    });
}

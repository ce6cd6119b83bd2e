/**
 * Shared test rig: fake campaign service, spawning the CLI, waiting on events.
 * Everything listens on 127.0.0.1 port 0 and is stopped by the test that started it.
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { sha256Hex } from "../src/crypto/sha256.ts";

export const ROOT = join(import.meta.dir, "..");
export const BINARY = join(ROOT, "dist", "adsrv");
export const BUN = process.execPath;

/** Modes of the fake campaign service, set with `service.mode = ...`. */
export type ServiceMode =
  | "ok"
  | "500"
  | "malformed"
  | "wrong_shape"
  | "all_invalid"
  | "huge"
  | "hang"
  | "redirect"
  | "drip";

export interface FakeCampaignService {
  readonly url: string;
  mode: ServiceMode;
  /** The catalog served in mode "ok" (a JSON-able object or raw text). */
  catalog: unknown;
  /** Number of GET requests received, and the last request's headers. */
  readonly requests: { count: number; lastHeaders: Headers | null };
  /** Whether to answer with an ETag (and 304 on a matching If-None-Match). */
  etag: boolean;
  stop(): Promise<void>;
}

/** A catalog document as the fleet's store reads it back (src/store/catalog.ts): bytes and digest. */
export function sharedDoc(text: string, sha256 = sha256Hex(text)): { data: Uint8Array; sha256: string } {
  return { data: new TextEncoder().encode(text), sha256 };
}

export function sampleAd(id: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    video_url: `https://cdn.example.com/${id}.mp4`,
    country: "us",
    lang: "eng",
    start_hour: 0,
    end_hour: 0,
    ...overrides,
  };
}

export function fakeCampaignService(catalog: unknown): FakeCampaignService {
  const requests = { count: 0, lastHeaders: null as Headers | null };
  const state = { mode: "ok" as ServiceMode, catalog, etag: false };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    development: false,
    async fetch(req) {
      requests.count++;
      requests.lastHeaders = req.headers;
      const body = typeof state.catalog === "string" ? state.catalog : JSON.stringify(state.catalog);
      switch (state.mode) {
        case "ok": {
          const tag = `"${Bun.hash(body).toString(16)}"`;
          if (state.etag && req.headers.get("if-none-match") === tag)
            return new Response(null, { status: 304 });
          return new Response(body, {
            headers: { "Content-Type": "application/json", ...(state.etag ? { ETag: tag } : {}) },
          });
        }
        case "500":
          return new Response("oops", { status: 500 });
        case "malformed":
          return new Response('{"ads": [', { headers: { "Content-Type": "application/json" } });
        case "wrong_shape":
          return Response.json({ campaigns: [] });
        case "all_invalid":
          return Response.json({ ads: [{ id: "x" }, { id: "y", country: "zz" }] });
        case "huge":
          return new Response(new Uint8Array(4 * 1024 * 1024).fill(32), {
            headers: { "Content-Type": "application/json" },
          });
        case "hang":
          await new Promise(() => {});
          return new Response("never");
        case "redirect":
          return Response.redirect("http://127.0.0.1:9/elsewhere", 302);
        case "drip": {
          const stream = new ReadableStream({
            async pull(controller) {
              await Bun.sleep(200);
              controller.enqueue(new TextEncoder().encode(" "));
            },
          });
          return new Response(stream, { headers: { "Content-Type": "application/json" } });
        }
      }
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/ads`,
    get mode() {
      return state.mode;
    },
    set mode(m: ServiceMode) {
      state.mode = m;
    },
    get catalog() {
      return state.catalog;
    },
    set catalog(c: unknown) {
      state.catalog = c;
    },
    get etag() {
      return state.etag;
    },
    set etag(e: boolean) {
      state.etag = e;
    },
    requests,
    stop: () => server.stop(true),
  };
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the compiled executable (built by `npm test` before the tests). Falls back to
 * `bun cli/main.ts` when dist/adsrv is missing, so single test files run without a build.
 */
export async function runCli(
  args: readonly string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const cmd = existsSync(BINARY) ? [BINARY, ...args] : [BUN, join(ROOT, "cli", "main.ts"), ...args];
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs ?? 20_000,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** The command that runs adsrv (binary if built), for tests that manage the process themselves. */
export function cliCommand(args: readonly string[]): string[] {
  return existsSync(BINARY) ? [BINARY, ...args] : [BUN, join(ROOT, "cli", "main.ts"), ...args];
}

/** Resolves with the first value passed to the returned callback that satisfies `pred`. */
export function waiter<T>(): {
  push: (value: T) => void;
  next: (pred?: (value: T) => boolean) => Promise<T>;
} {
  const waiting: { pred: (value: T) => boolean; resolve: (value: T) => void }[] = [];
  return {
    push(value) {
      for (let i = 0; i < waiting.length; i++) {
        const w = waiting[i];
        if (w?.pred(value)) {
          waiting.splice(i, 1);
          i--;
          w.resolve(value);
        }
      }
    },
    next(pred = () => true) {
      return new Promise<T>((resolve) => waiting.push({ pred, resolve }));
    },
  };
}

/** Reads lines from a stream until one satisfies `pred`; returns it. */
export async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pred: (line: string) => boolean,
  seen: string[] = [],
): Promise<string> {
  // Lines read past the match stay here for the next call on the same stream (a chunk can
  // carry several lines: the one looked for, and the ones a later call looks for).
  const state = pending.get(stream) ?? { decoder: new TextDecoder(), buffered: "" };
  pending.set(stream, state);
  const next = (): string | undefined => {
    let nl = state.buffered.indexOf("\n");
    while (nl >= 0) {
      const line = state.buffered.slice(0, nl);
      state.buffered = state.buffered.slice(nl + 1);
      seen.push(line);
      if (pred(line)) return line;
      nl = state.buffered.indexOf("\n");
    }
    return undefined;
  };
  const already = next();
  if (already !== undefined) return already;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`stream ended before the expected line; saw:\n${seen.join("\n")}`);
      state.buffered += state.decoder.decode(value, { stream: true });
      const line = next();
      if (line !== undefined) return line;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Per stream: its decoder and the text read but not yet handed out as lines (see `readUntil`). */
const pending = new WeakMap<ReadableStream<Uint8Array>, { decoder: TextDecoder; buffered: string }>();

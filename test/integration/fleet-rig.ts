/**
 * A fleet on loopback for the multi-instance tests (issue 5): one private `redis-server`, a fake
 * campaign service, N `adsrv serve` processes (the compiled executable) and nginx as the
 * round-robin balancer in front, with the proxy settings of the deployment
 * (deploy/nginx/proxy.conf is included as is). The same topology as deploy/docker-compose.yml.
 *
 * Everything listens on 127.0.0.1 on free ports, lives in one temporary directory, and is killed
 * by `stop()` (and, should a test forget it, when the test process exits). Never the shared
 * Redis on 6379: `startRedis` refuses it.
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type PrivateRedis, startRedis } from "../fakes/redis.ts";
import { cliCommand, type FakeCampaignService, fakeCampaignService, ROOT, sampleAd } from "../rig.ts";

/** Where a program is, looking in PATH and the sbin directories (nginx lives in /usr/sbin). */
export function findProgram(name: string): string | null {
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/local/sbin", "/usr/sbin", "/sbin"]);
  for (const dir of dirs) {
    if (dir === "") continue;
    const path = join(dir, name);
    try {
      if (Bun.spawnSync(["test", "-x", path]).exitCode === 0) return path;
    } catch {
      // not there
    }
  }
  return null;
}

export const NGINX = findProgram("nginx");
export const REDIS_SERVER = findProgram("redis-server");
/** Why the fleet tests cannot run here, or null. */
export const MISSING: string | null =
  NGINX === null || REDIS_SERVER === null
    ? `fleet tests skipped: ${[NGINX === null ? "nginx" : null, REDIS_SERVER === null ? "redis-server" : null]
        .filter(Boolean)
        .join(" and ")} not installed (Debian: apt-get install -y nginx redis-server)`
    : null;

const live = new Set<Subprocess>();
let exitHook = false;
function track(proc: Subprocess): void {
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const p of live) {
        try {
          p.kill("SIGKILL");
        } catch {
          // gone
        }
      }
    });
  }
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
}

async function freePort(): Promise<number> {
  for (;;) {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    if (port !== 6379) return port;
  }
}

/** The environment of the caller without ADSRV_* or REDIS_URL (a developer's shell must not leak in). */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith("ADSRV_") || k === "BUN_OPTIONS") continue;
    if (k === "REDIS_URL" || k === "VALKEY_URL") continue;
    env[k] = v;
  }
  return env;
}

/** Reads a child's output line by line for its whole life (a full pipe would block the child). */
function pump(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  return (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf("\n");
      }
    }
    if (buffered !== "") onLine(buffered);
  })().catch(() => {});
}

export interface Instance {
  readonly index: number;
  /** `http://127.0.0.1:PORT` (fixed for the instance's life, across restarts). */
  readonly url: string;
  readonly port: number;
  /** The current process (changes on `restart()`). */
  readonly pid: number;
  /** Every line the process wrote (stdout and stderr), most recent last, capped. */
  readonly lines: string[];
  alive(): boolean;
  /** Sends a signal and, for SIGKILL/SIGTERM, waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the process again on the same port, with the same arguments; waits until it listens. */
  restart(): Promise<void>;
}

export interface Nginx {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

export interface Fleet {
  readonly redis: PrivateRedis;
  readonly service: FakeCampaignService;
  readonly instances: Instance[];
  readonly lb: Nginx;
  readonly dir: string;
  /** The last lines of every process, for a failure message. */
  diagnostics(lines?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface FleetOptions {
  readonly instances?: number;
  /** --refresh seconds (default 1). */
  readonly refresh?: number;
  /** --frequency-cap (default 2). */
  readonly cap?: number;
  /** Any more `adsrv serve` arguments, e.g. ["--on-store-error", "closed"]. */
  readonly args?: readonly string[];
  /** The catalog the fake campaign service starts with (default: catalogOf(3)). */
  readonly catalog?: unknown;
}

/** `n` all-day ads for us/eng: ids `ad-<tag>-1` … in catalog order. */
export function catalogOf(n: number, tag = "a"): { ads: Record<string, unknown>[] } {
  return { ads: Array.from({ length: n }, (_, i) => sampleAd(`ad-${tag}-${i + 1}`)) };
}

const MAX_LINES = 2_000;

/** One impression key for the whole fleet (as deployments must): a link may come back anywhere. */
const IMPRESSION_KEY = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) =>
  b.toString(16).padStart(2, "0"),
).join("");

function startInstance(
  index: number,
  dir: string,
  baseArgs: readonly string[],
  firstPort: number | null,
): Promise<Instance> {
  let proc: Subprocess<"ignore", "pipe", "pipe">;
  let port = firstPort ?? 0;
  const lines: string[] = [];
  const push = (line: string) => {
    lines.push(line);
    if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
  };

  const spawn = async (): Promise<void> => {
    const args = ["serve", "--listen", `127.0.0.1:${port}`, "--admin-listen", "off", ...baseArgs];
    proc = Bun.spawn(cliCommand(args), {
      cwd: dir,
      env: { ...cleanEnv(), ADSRV_IMPRESSION_KEY: IMPRESSION_KEY },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    track(proc);
    const { promise: listening, resolve, reject } = Promise.withResolvers<string>();
    const onLine = (line: string) => {
      push(line);
      if (line.includes('"msg":"listening"')) {
        try {
          resolve((JSON.parse(line) as { url: string }).url);
        } catch (error) {
          reject(error);
        }
      }
    };
    void pump(proc.stdout, onLine);
    void pump(proc.stderr, (l) => push(`[stderr] ${l}`));
    void proc.exited.then((code) => {
      push(`[exit] code=${code} signal=${proc.signalCode}`);
      reject(new Error(`adsrv ${index} exited (${code}) before listening:\n${lines.slice(-20).join("\n")}`));
    });
    const timer = setTimeout(() => reject(new Error(`adsrv ${index} did not listen within 10 s`)), 10_000);
    try {
      const url = await listening;
      port = Number(new URL(url).port);
    } finally {
      clearTimeout(timer);
    }
  };

  const instance: Instance = {
    index,
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get pid() {
      return proc.pid;
    },
    lines,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (!instance.alive()) return;
      proc.kill(signal);
      if (signal === "SIGKILL" || signal === "SIGTERM" || signal === "SIGINT") await proc.exited;
    },
    async restart() {
      await instance.kill("SIGKILL");
      await spawn();
    },
  };
  return spawn().then(() => instance);
}

/** Which retry policy of deploy/nginx/ nginx uses: open mode (the default) or closed mode. */
export type RetryPolicy = "retry.conf" | "retry-closed.conf";

function nginxConf(dir: string, port: number, upstreams: readonly number[], retry: RetryPolicy): string {
  const servers = upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=2 fail_timeout=5s;`).join("\n");
  const proxyConf = join(ROOT, "deploy", "nginx", "proxy.conf");
  const retryConf = join(ROOT, "deploy", "nginx", retry);
  return `# generated by test/integration/fleet-rig.ts
worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  keepalive_timeout 60s;
  keepalive_requests 100000;
  upstream adsrv {
    zone adsrv 64k;
${servers}
    keepalive 64;
    keepalive_timeout 60s;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${port};
    location = /nginx-health { return 200 "ok\\n"; }
    location / {
      proxy_pass http://adsrv;
      include ${proxyConf};
      include ${retryConf};
      # Which instance answered (tests check the round robin and per-player rotation across instances).
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`;
}

/** nginx in the foreground (no master process, so one SIGKILL ends it), its own prefix and files. */
export async function startNginx(
  upstreams: readonly number[],
  retry: RetryPolicy = "retry.conf",
): Promise<Nginx> {
  if (NGINX === null) throw new Error("nginx is not installed");
  const dir = mkdtempSync(join(tmpdir(), "adsrv-nginx-"));
  for (const sub of ["tmp", "logs"]) Bun.spawnSync(["mkdir", "-p", join(dir, sub)]);
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxConf(dir, port, upstreams, retry));
  const proc = Bun.spawn(
    [NGINX, "-p", dir, "-c", conf, "-e", join(dir, "error.log"), "-g", "daemon off; master_process off;"],
    {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    },
  );
  track(proc);
  const stderr = new Response(proc.stderr).text();
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 5_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited ${proc.exitCode}: ${await stderr}`);
    try {
      if ((await fetch(`${url}/nginx-health`)).ok) break;
    } catch {
      // not yet
    }
    if (performance.now() > deadline)
      throw new Error(
        `nginx did not answer within 5 s: ${await Bun.file(join(dir, "error.log"))
          .text()
          .catch(() => "")}`,
      );
    await Bun.sleep(20);
  }
  return {
    url,
    port,
    dir,
    errorLog: () =>
      Bun.file(join(dir, "error.log"))
        .text()
        .catch(() => ""),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts Redis, the campaign service, the instances (all at once) and nginx. */
export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const n = options.instances ?? 3;
  const dir = mkdtempSync(join(tmpdir(), "adsrv-fleet-"));
  const stops: (() => Promise<unknown> | unknown)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch {
        // keep stopping the rest
      }
    }
  };
  try {
    const redis = await startRedis({ transport: "tcp" });
    stops.push(() => redis.stop());
    const service = fakeCampaignService(options.catalog ?? catalogOf(3));
    stops.push(() => service.stop());
    const args = [
      "--redis",
      redis.url,
      "--catalog",
      service.url,
      "--refresh",
      String(options.refresh ?? 1),
      "--frequency-cap",
      String(options.cap ?? 2),
      "--log-format",
      "json",
      ...(options.args ?? []),
    ];
    const instances: Instance[] = [];
    stops.push(() => Promise.all(instances.map((i) => i.kill("SIGKILL"))));
    const started = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => startInstance(i, dir, args, null)),
    );
    for (const s of started) if (s.status === "fulfilled") instances.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    // The retry policy deploy/nginx/ prescribes for the instances' --on-store-error mode.
    const closed = args.join(" ").includes("--on-store-error closed");
    const lb = await startNginx(
      instances.map((i) => i.port),
      closed ? "retry-closed.conf" : "retry.conf",
    );
    stops.push(() => lb.stop());
    return {
      redis,
      service,
      instances,
      lb,
      dir,
      async diagnostics(count = 15) {
        const parts = instances.map(
          (i) => `--- adsrv ${i.index} (pid ${i.pid}, ${i.url})\n${i.lines.slice(-count).join("\n")}`,
        );
        parts.push(`--- nginx error.log\n${(await lb.errorLog()).split("\n").slice(-count).join("\n")}`);
        return parts.join("\n");
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

// -------------------------------------------------------------------------------------------
// Load

export interface Outcome {
  /** HTTP status, or 0 when the request failed without an answer. */
  readonly status: number;
  readonly ms: number;
  /** The ad id on 200, the problem `reason` on 404. */
  readonly id?: string;
  readonly reason?: string;
  readonly upstream?: string | null;
  readonly version?: string | null;
  readonly retryAfter?: string | null;
  readonly error?: string;
}

/** One GET; the body is read whole (ad JSON or a problem). Never throws. */
export async function hit(url: string, timeoutMs = 5_000): Promise<Outcome> {
  const started = performance.now();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const ms = performance.now() - started;
    let id: string | undefined;
    let reason: string | undefined;
    if (text.startsWith("{")) {
      try {
        const body = JSON.parse(text) as { id?: string; reason?: string };
        if (res.status === 200) id = body.id;
        else reason = body.reason;
      } catch {
        // not JSON
      }
    }
    return {
      status: res.status,
      ms,
      ...(id !== undefined ? { id } : {}),
      ...(reason !== undefined ? { reason } : {}),
      upstream: res.headers.get("x-upstream"),
      version: res.headers.get("adsrv-catalog-version"),
      retryAfter: res.headers.get("retry-after"),
    };
  } catch (error) {
    return { status: 0, ms: performance.now() - started, error: String(error).slice(0, 120) };
  }
}

/**
 * Runs `worker(slot)` in `concurrency` loops until `stop()` resolves or each loop's worker
 * returns false. Returns every outcome with its start time (ms since `t0`).
 */
export async function load(
  concurrency: number,
  next: (slot: number, n: number) => string | null,
  until: Promise<unknown>,
): Promise<{ t: number; url: string; o: Outcome }[]> {
  const results: { t: number; url: string; o: Outcome }[] = [];
  let done = false;
  void until.then(() => {
    done = true;
  });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, slot) => {
      for (let n = 0; !done; n++) {
        const url = next(slot, n);
        if (url === null) return;
        const t = performance.now() - t0;
        results.push({ t, url, o: await hit(url) });
      }
    }),
  );
  return results;
}

/** Percentile (0–100) of a list of numbers. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** `/readyz` of one instance: its catalog version, or null when not ready / not answering. */
export async function readyVersion(instance: Instance): Promise<string | null> {
  try {
    const res = await fetch(`${instance.url}/readyz`, { signal: AbortSignal.timeout(1_000) });
    if (res.status !== 200) return null;
    return ((await res.json()) as { catalog_version?: string }).catalog_version ?? null;
  } catch {
    return null;
  }
}

/** Polls `predicate` every `everyMs` until it holds; returns the time it took, or throws. */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await predicate()) return performance.now() - started;
    if (performance.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

/**
 * Player-keyed decisions per second, as a ratio of the anonymous path (issue 5: target ≥ 0.5).
 *
 *   node_modules/.bin/bun scripts/bench/player.ts [--duration S] [--rounds N] [--connections C]
 *       [--threads T] [--ads N] [--players N] [--cap N] [--no-pin] [--json]
 *
 * Starts a private redis-server (test/fakes/redis.ts: a free loopback port, never 6379) and the
 * compiled `dist/adsrv serve --workers 1 --redis URL` on a catalog of `--ads` all-day us/eng ads
 * (default 20), then drives it with wrk in alternating rounds:
 *   anonymous   GET /ad_request?country=us&lang=eng                 (per-process rotation, no I/O)
 *   player      GET /ad_request?country=us&lang=eng&player_id=P     (one Lua check-and-record in
 *               Redis per decision: least-recently-served choice + rolling frequency cap)
 * Each wrk thread cycles through its own `--players` ids (default 100 000 per thread, so with the
 * default cap of 3 hardly any player is capped during a round; capped answers are counted).
 *
 * With two or more CPUs and `taskset`, adsrv is pinned to CPU 0 and wrk + Redis to the others
 * (`--no-pin` to turn off), so the figures are per adsrv core. Prints a table and the ratio of
 * median rates; `--json` prints one JSON line instead. Exit 1 when a run failed (a process did
 * not start, wrk failed, or more than 0.1 % of requests failed at the socket level or with 5xx).
 * Needs wrk (Debian: apt-get install -y wrk) and redis-server.
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { startRedis } from "../../test/fakes/redis.ts";

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(name);
const value = (name: string, fallback: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : fallback;
};
if (flag("--help") || flag("-h")) {
  console.log((await Bun.file(new URL(import.meta.url)).text()).split("*/")[0]);
  process.exit(0);
}

const ROOT = resolve(import.meta.dir, "../..");
const BINARY = join(ROOT, "dist", "adsrv");
const DURATION = Number(value("--duration", "10"));
const ROUNDS = Number(value("--rounds", "3"));
const CONNECTIONS = Number(value("--connections", "64"));
const THREADS = Number(value("--threads", "1"));
const ADS = Number(value("--ads", "20"));
const PLAYERS = Number(value("--players", "100000"));
const CAP = Number(value("--cap", "3"));
const JSON_OUT = flag("--json");

function log(message: string): void {
  console.error(`[player-bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    if (dir !== "" && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

const wrkBin = which("wrk");
if (wrkBin === null) {
  console.error("needs wrk: apt-get install -y wrk");
  process.exit(1);
}
if (!existsSync(BINARY)) {
  console.error("needs dist/adsrv: node_modules/.bin/bun scripts/build.ts");
  process.exit(1);
}
const taskset = which("taskset");
const PIN = !flag("--no-pin") && taskset !== null && cpus().length >= 2;
const others = `1-${cpus().length - 1}`;
const pinned = (cpu: string, cmd: string[]): string[] =>
  PIN && taskset ? [taskset, "-c", cpu, ...cmd] : cmd;

const work = mkdtempSync(join(tmpdir(), "adsrv-player-bench-"));
const children = new Set<Subprocess>();
let redisStop: (() => Promise<void>) | null = null;

async function cleanup(): Promise<void> {
  for (const child of children) {
    child.kill("SIGKILL");
    await child.exited;
  }
  children.clear();
  await redisStop?.();
  rmSync(work, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    void cleanup().then(() => process.exit(130));
  });
}

/** wrk's Lua: the anonymous path, or a player id per request from the thread's own pool. */
function luaScript(players: boolean): string {
  return `
local n = 0
local counter = 0
local threads = {}
local reqs = {}
c5xx = 0
c404 = 0
function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
function init(args)
  if ${players ? "true" : "false"} then
    local t = tonumber(tid) or 0
    for k = 1, ${PLAYERS} do
      reqs[k] = wrk.format("GET", "/ad_request?country=us&lang=eng&player_id=bench-" .. t .. "-" .. k)
    end
  else
    reqs[1] = wrk.format("GET", "/ad_request?country=us&lang=eng")
  end
end
function request()
  n = n % #reqs + 1
  return reqs[n]
end
function response(status, headers, body)
  if status >= 500 then c5xx = c5xx + 1 elseif status == 404 then c404 = c404 + 1 end
end
function done(summary, latency, requests)
  local e = summary.errors
  local s5, s4 = 0, 0
  for _, t in ipairs(threads) do
    s5 = s5 + (tonumber(t:get("c5xx")) or 0)
    s4 = s4 + (tonumber(t:get("c404")) or 0)
  end
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"s5xx":%d,"s404":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, s5, s4,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`;
}

interface Round {
  kind: "anonymous" | "player";
  rps: number;
  requests: number;
  /** 404 answers (frequency_capped: every eligible ad capped for that player). */
  capped: number;
  /** 5xx answers. */
  server5xx: number;
  socketErrors: number;
  p50ms: number;
  p99ms: number;
  /** adsrv's CPU time per request (µs): 1e6 / this is what one adsrv core can answer. */
  adsrvCpuUs: number;
  /** Redis's CPU time per request (µs), network I/O included. */
  redisCpuUs: number;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

async function wrk(
  port: number,
  kind: Round["kind"],
  pids: { adsrv: number; redis: number },
): Promise<Round> {
  const cpu0 = { adsrv: cpuSeconds(pids.adsrv), redis: cpuSeconds(pids.redis) };
  const script = join(work, `${kind}.lua`);
  writeFileSync(script, luaScript(kind === "player"));
  const proc = Bun.spawn(
    pinned(PIN ? others : "0", [
      wrkBin as string,
      `-t${THREADS}`,
      `-c${CONNECTIONS}`,
      `-d${DURATION}s`,
      "--latency",
      "-s",
      script,
      `http://127.0.0.1:${port}/`,
    ]),
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const line = out.split("\n").find((l) => l.startsWith("JSON "));
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (${code}): ${(err || out).slice(-300)}`);
  const r = JSON.parse(line.slice(5)) as Record<string, number>;
  const adsrvCpu = cpuSeconds(pids.adsrv) - cpu0.adsrv;
  const redisCpu = cpuSeconds(pids.redis) - cpu0.redis;
  const socketErrors = (r.connect ?? 0) + (r.read ?? 0) + (r.write ?? 0) + (r.timeout ?? 0);
  return {
    kind,
    rps: (r.requests ?? 0) / ((r.duration_us ?? 1) / 1e6),
    requests: r.requests ?? 0,
    capped: r.s404 ?? 0,
    server5xx: r.s5xx ?? 0,
    socketErrors,
    p50ms: (r.p50_us ?? 0) / 1000,
    p99ms: (r.p99_us ?? 0) / 1000,
    adsrvCpuUs: (adsrvCpu * 1e6) / Math.max(1, r.requests ?? 0),
    redisCpuUs: (redisCpu * 1e6) / Math.max(1, r.requests ?? 0),
  };
}

async function main(): Promise<number> {
  const redis = await startRedis({ transport: "tcp" });
  redisStop = () => redis.stop();
  if (PIN && taskset) Bun.spawnSync([taskset, "-pc", others, String(redis.pid)], { stdout: "ignore" });

  const catalogFile = join(work, "catalog.json");
  const ads = Array.from({ length: ADS }, (_, i) => ({
    id: `bench-${i + 1}`,
    video_url: `https://cdn.example.com/bench-${i + 1}.mp4`,
    country: "us",
    lang: "eng",
    start_hour: 0,
    end_hour: 0,
  }));
  writeFileSync(catalogFile, JSON.stringify({ ads }));

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith("ADSRV_") && k !== "BUN_OPTIONS") env[k] = v;
  const server = Bun.spawn(
    pinned("0", [
      BINARY,
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--admin-listen",
      "off",
      "--workers",
      "1",
      "--catalog",
      catalogFile,
      "--refresh",
      "3600",
      "--redis",
      redis.url,
      "--frequency-cap",
      String(CAP),
      "--log-level",
      "warn",
      "--log-format",
      "json",
    ]),
    { cwd: work, env, stdin: "ignore", stdout: "pipe", stderr: "inherit" },
  );
  children.add(server);
  // The listening line is logged at info; with --log-level warn nothing is printed: poll instead.
  const port = await (async () => {
    const deadline = performance.now() + 10_000;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`adsrv exited ${server.exitCode}`);
      const ss = Bun.spawnSync(["ss", "-Htlnp"]).stdout.toString();
      const m = new RegExp(`127\\.0\\.0\\.1:(\\d+)\\s.*pid=${server.pid},`).exec(ss);
      if (m) {
        const p = Number(m[1]);
        try {
          const ready = await fetch(`http://127.0.0.1:${p}/readyz`);
          if (ready.status === 200) return p;
        } catch {
          // not yet
        }
      }
      if (performance.now() > deadline) throw new Error("adsrv not ready within 10 s");
      await Bun.sleep(50);
    }
  })();
  const admin = async <T>(command: string, args: string[]): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await (await redis.admin()).send(command, args)) as T;
      } catch (error) {
        if (attempt >= 3) throw error;
        await Bun.sleep(200);
      }
    }
  };
  // Player-keyed probes until one leaves its history in Redis: the Redis path works (in open
  // mode a request decided while Redis is not yet connected is a 200 too, without history).
  for (let i = 0; ; i++) {
    const probe = await fetch(`http://127.0.0.1:${port}/ad_request?country=us&lang=eng&player_id=probe-${i}`);
    if (probe.status !== 200)
      throw new Error(`player-keyed probe answered ${probe.status}: ${await probe.text()}`);
    if ((await admin<number>("DBSIZE", [])) > 0) break;
    if (i >= 50) throw new Error("player-keyed requests leave nothing in Redis: is --redis wired?");
    await Bun.sleep(100);
  }

  log(
    `adsrv pid ${server.pid} on :${port}${PIN ? ` (CPU 0; wrk and Redis on ${others})` : ""}, ` +
      `${ADS} ads, cap ${CAP}, wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION}s × ${ROUNDS} rounds each`,
  );
  // Warm-up (JIT, connections, Redis script cache).
  const pids = { adsrv: server.pid, redis: redis.pid };
  await wrk(port, "anonymous", pids);
  await wrk(port, "player", pids);

  await admin("CONFIG", ["RESETSTAT"]);
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const kind of ["anonymous", "player"] as const) {
      const r = await wrk(port, kind, pids);
      rounds.push(r);
      log(
        `${kind.padEnd(9)} ${Math.round(r.rps).toString().padStart(7)} req/s  p50 ${r.p50ms.toFixed(2)} ms  ` +
          `p99 ${r.p99ms.toFixed(2)} ms  adsrv ${r.adsrvCpuUs.toFixed(1)} µs CPU/req  ` +
          `Redis ${r.redisCpuUs.toFixed(1)} µs CPU/req  404 ${r.capped}  5xx ${r.server5xx}  socket errors ${r.socketErrors}`,
      );
    }
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };
  const anon = median(rounds.filter((r) => r.kind === "anonymous").map((r) => r.rps));
  const player = median(rounds.filter((r) => r.kind === "player").map((r) => r.rps));
  const ratio = player / anon;
  // Per adsrv core: requests per CPU-second of the adsrv process. On a small machine wrk and
  // Redis take CPU that would be elsewhere in production; this figure does not depend on them.
  const anonCore = 1e6 / median(rounds.filter((r) => r.kind === "anonymous").map((r) => r.adsrvCpuUs));
  const playerCore = 1e6 / median(rounds.filter((r) => r.kind === "player").map((r) => r.adsrvCpuUs));
  const redisUs = median(rounds.filter((r) => r.kind === "player").map((r) => r.redisCpuUs));
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  // Redis's own time per decision script (EVALSHA), from INFO commandstats: what one Redis core
  // can take, before network I/O.
  const commandstats = await admin<string>("INFO", ["commandstats"]);
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(commandstats);
  const evalshaUs = m ? Number(m[3]) : null;
  const failed = rounds.filter((r) => r.socketErrors + r.server5xx > r.requests * 0.001);
  const result = {
    anonymous_rps: Math.round(anon),
    player_rps: Math.round(player),
    ratio: Number(ratio.toFixed(3)),
    anonymous_per_adsrv_core: Math.round(anonCore),
    player_per_adsrv_core: Math.round(playerCore),
    ratio_per_core: Number((playerCore / anonCore).toFixed(3)),
    redis_cpu_us_per_decision: Number(redisUs.toFixed(1)),
    target: 0.5,
    pinned: PIN,
    cpus: cpus().length,
    cpu,
    duration_s: DURATION,
    rounds: ROUNDS,
    connections: CONNECTIONS,
    ads: ADS,
    cap: CAP,
    redis_evalsha_us_per_call: evalshaUs,
    player_capped: rounds.filter((r) => r.kind === "player").reduce((n, r) => n + r.capped, 0),
  };
  if (JSON_OUT) console.log(JSON.stringify(result));
  else {
    console.log(
      `\nplayer-keyed decisions with Redis vs anonymous (${cpu}, ${cpus().length} CPUs${PIN ? ", adsrv on one" : ""})`,
    );
    console.log(`  anonymous      ${result.anonymous_rps} req/s (median of ${ROUNDS})`);
    console.log(`  player + Redis ${result.player_rps} req/s (median of ${ROUNDS})`);
    console.log(`  ratio          ${result.ratio} (target ≥ 0.5: ${ratio >= 0.5 ? "met" : "NOT met"})`);
    console.log(
      `  per adsrv core ${result.anonymous_per_adsrv_core} anonymous, ${result.player_per_adsrv_core} player-keyed ` +
        `req per CPU-second (ratio ${result.ratio_per_core}); Redis ${result.redis_cpu_us_per_decision} µs CPU per decision`,
    );
    if (evalshaUs !== null)
      console.log(`  Redis          ${evalshaUs} µs of Redis time per decision script (INFO commandstats)`);
  }
  if (failed.length > 0) {
    log(`FAILED: socket errors and 5xx above 0.1 % in ${failed.length} round(s)`);
    return 1;
  }
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  log(`FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  await cleanup();
}
process.exit(code);

/**
 * A private `redis-server` for tests: never the shared one on 127.0.0.1:6379.
 *
 * `startRedis()` starts `redis-server --daemonize no` in a temporary directory, on a unix socket
 * (default, no TCP listener at all) or on a free loopback TCP port (`{ transport: "tcp" }`), with
 * persistence off and `DEBUG` allowed from local clients. It refuses port 6379. Fault helpers:
 * `pause()` / `resume()` (SIGSTOP / SIGCONT: calls hang), `down()` (SIGKILL, wait for exit),
 * `up()` (start again on the same socket or port), `restart()` (both).
 *
 * Every server started here is killed when the test process exits, even if a test forgot
 * `stop()`; call `stop()` in `afterAll` anyway (it also removes the temporary directory).
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RedisClient } from "bun";

export interface StartRedisOptions {
  /** "unix" (default): a socket in a temp dir, no TCP. "tcp": 127.0.0.1 on a free port. */
  readonly transport?: "unix" | "tcp";
  /** A fixed TCP port (tcp only). Never 6379. */
  readonly port?: number;
  /** More `redis-server` arguments, e.g. `["--maxmemory", "10mb"]`. */
  readonly args?: readonly string[];
}

export interface PrivateRedis {
  /** `redis+unix:///…/r.sock` or `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** The TCP port, or null on a unix socket. */
  readonly port: number | null;
  /** The socket path, or null on TCP. */
  readonly socket: string | null;
  /** The server's current process id (changes after `up()`/`restart()`). */
  readonly pid: number;
  /** A plain client on this server, for test setup and admin commands (closed by `stop()`). */
  admin(): Promise<RedisClient>;
  /** SIGSTOP: the server keeps its sockets but answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL and wait for the process to exit (the socket or port stays reserved for `up()`). */
  down(): Promise<void>;
  /** Start again on the same socket or port (empty: persistence is off). */
  up(): Promise<void>;
  restart(): Promise<void>;
  /** Kill the server and remove its directory. Idempotent. */
  stop(): Promise<void>;
}

const FORBIDDEN_PORT = 6379;
const live = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of live) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

async function freePort(): Promise<number> {
  for (;;) {
    const listener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data() {} },
    });
    const port = listener.port;
    listener.stop(true);
    if (port !== FORBIDDEN_PORT) return port;
  }
}

async function waitReady(url: string, proc: { exitCode: number | null }, log: string): Promise<void> {
  const deadline = performance.now() + 5_000;
  while (performance.now() < deadline) {
    if (proc.exitCode !== null) {
      const text = await Bun.file(log)
        .text()
        .catch(() => "");
      throw new Error(`redis-server exited with ${proc.exitCode}: ${text.slice(-500)}`);
    }
    const client = new RedisClient(url, {
      autoReconnect: false,
      enableOfflineQueue: false,
      connectionTimeout: 200,
    });
    try {
      await client.connect();
      if ((await client.send("PING", [])) === "PONG") return;
    } catch {
      // not yet
    } finally {
      client.close();
    }
    await Bun.sleep(10);
  }
  throw new Error("redis-server did not become ready within 5 s");
}

export async function startRedis(options: StartRedisOptions = {}): Promise<PrivateRedis> {
  installExitHook();
  const transport = options.transport ?? "unix";
  if (options.port === FORBIDDEN_PORT) throw new Error("startRedis refuses port 6379 (the shared Redis)");
  if (options.port !== undefined && transport !== "tcp") throw new Error("port is for the tcp transport");
  const dir = mkdtempSync(join(tmpdir(), "adsrv-redis-"));
  const socket = transport === "unix" ? join(dir, "r.sock") : null;
  const port = transport === "tcp" ? (options.port ?? (await freePort())) : null;
  if (port === FORBIDDEN_PORT) throw new Error("startRedis refuses port 6379 (the shared Redis)");
  const url = socket !== null ? `redis+unix://${socket}` : `redis://127.0.0.1:${port}`;
  const logFile = join(dir, "redis.log");
  const argv = [
    "redis-server",
    "--port",
    String(port ?? 0),
    "--bind",
    "127.0.0.1",
    ...(socket !== null ? ["--unixsocket", socket, "--unixsocketperm", "700"] : []),
    "--save",
    "",
    "--appendonly",
    "no",
    "--daemonize",
    "no",
    "--enable-debug-command",
    "local",
    "--dir",
    dir,
    "--logfile",
    logFile,
    ...(options.args ?? []),
  ];

  let proc: ReturnType<typeof Bun.spawn> | null = null;
  const admins: RedisClient[] = [];
  let stopped = false;

  const up = async (): Promise<void> => {
    if (stopped) throw new Error("this redis-server was stopped");
    if (proc !== null && proc.exitCode === null && proc.signalCode === null) return;
    if (socket !== null) rmSync(socket, { force: true });
    const child = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    proc = child;
    live.add(child.pid);
    void child.exited.then(() => live.delete(child.pid));
    await waitReady(url, child, logFile);
  };

  const down = async (): Promise<void> => {
    const child = proc;
    if (child === null) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
    await child.exited;
    live.delete(child.pid);
  };

  await up();

  return {
    url,
    port,
    socket,
    get pid() {
      if (proc === null) throw new Error("not running");
      return proc.pid;
    },
    async admin() {
      const client = new RedisClient(url, { autoReconnect: false, connectionTimeout: 1_000 });
      await client.connect();
      admins.push(client);
      return client;
    },
    pause() {
      if (proc !== null) process.kill(proc.pid, "SIGSTOP");
    },
    resume() {
      if (proc !== null) process.kill(proc.pid, "SIGCONT");
    },
    down,
    up,
    async restart() {
      await down();
      await up();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const client of admins) client.close();
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

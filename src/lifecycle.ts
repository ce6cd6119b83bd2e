/**
 * Process lifecycle for `adsrv serve`: worker processes sharing the port, and shutdown on
 * SIGTERM/SIGINT (readiness off → stop accepting → drain within the grace period → exit 0).
 * @module
 */
import type { Subprocess } from "bun";
import type { Config } from "./config.ts";
import { startServer } from "./server.ts";
import { createLogger, type Logger } from "./telemetry/log.ts";

/** Set in the environment of worker processes started by the primary. */
export const WORKER_ENV = "ADSRV_WORKER_INDEX";

/** The command line that runs this same program again (compiled binary or `bun cli/main.ts`). */
export function selfCommand(): string[] {
  const [, script, ...rest] = process.argv;
  // In a compiled executable argv[1] is the embedded entry point, not a file to pass again.
  if (script === undefined || script.startsWith("/$bunfs/")) return [process.execPath, ...rest];
  return [process.execPath, script, ...rest];
}

/** Runs the server until a signal; resolves with the exit code. */
export async function runServe(initial: Config): Promise<number> {
  let config = initial;
  const workerIndex = Number(process.env[WORKER_ENV] ?? "0");
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    base: config.workers > 1 ? { worker: workerIndex } : {},
  });
  // Handlers go in before the port opens, so a signal during start-up still drains and exits 0.
  const { promise: signalled, resolve: onSignalled } = Promise.withResolvers<NodeJS.Signals>();
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    onSignalled(signal);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  // Workers must sign and verify impression tokens with one key: without a configured key, the
  // primary draws one and hands it to its workers through their environment.
  if (config.impressionKey === null && config.workers > 1 && workerIndex === 0) {
    const key = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
    process.env.ADSRV_IMPRESSION_KEY = key;
    config = { ...config, impressionKey: key };
  }
  const server = await startServer(config, { log, adminEnabled: workerIndex === 0 });
  process.on("SIGHUP", () => server.reloadTls());
  const children = new Set<Subprocess>();
  if (workerIndex === 0 && !shuttingDown) {
    for (let i = 1; i < config.workers; i++) spawnWorker(i, children, log, () => shuttingDown);
  }

  const signal = await signalled;
  log.info("shutting down", { signal });
  for (const child of children) child.kill(signal);
  await server.stop();
  await Promise.all([...children].map((c) => c.exited));
  log.info("stopped");
  return 0;
}

function spawnWorker(index: number, children: Set<Subprocess>, log: Logger, stopping: () => boolean): void {
  const child = Bun.spawn(selfCommand(), {
    env: { ...process.env, [WORKER_ENV]: String(index) },
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.add(child);
  void child.exited.then((code) => {
    children.delete(child);
    if (stopping()) return;
    log.error("worker exited; restarting it", { worker: index, code });
    setTimeout(() => {
      if (!stopping()) spawnWorker(index, children, log, stopping);
    }, 1_000);
  });
}

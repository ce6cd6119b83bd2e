/**
 * Making sure tests run the executable built from the current sources.
 *
 * `runCli` (test/rig.ts) runs dist/adsrv whenever it exists. A dist/adsrv older than the
 * sources (left from an earlier build) would test old code, so `refreshDistBinary` rebuilds it
 * with scripts/build.ts, into a temporary file renamed over the old one (processes already
 * running it keep their copy). `compiledBinary` gives a current compiled executable for tests
 * that need one even when dist/adsrv is missing (tmux): dist/adsrv if current, else a build in
 * a temporary directory.
 * @module
 */
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, BUN, ROOT } from "../rig.ts";

/** Newest modification time (ms) among the files the executable is built from. */
function newestSource(): number {
  let newest = 0;
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.(ts|tsx|json)$/.test(entry.name)) newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  walk(join(ROOT, "cli"));
  walk(join(ROOT, "src"));
  for (const file of ["package.json", "scripts/build.ts"]) {
    newest = Math.max(newest, statSync(join(ROOT, file)).mtimeMs);
  }
  return newest;
}

/** Whether dist/adsrv exists and was built after every source file changed. */
export function distIsCurrent(): boolean {
  return existsSync(BINARY) && statSync(BINARY).mtimeMs >= newestSource();
}

async function build(outfile: string): Promise<void> {
  const proc = Bun.spawn([BUN, join(ROOT, "scripts", "build.ts"), "--outfile", outfile], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`scripts/build.ts --outfile ${outfile} failed (${code}):\n${out}${err}`);
}

/** Rebuilds dist/adsrv when it exists but is older than the sources; runCli then runs current code. */
export async function refreshDistBinary(): Promise<void> {
  if (!existsSync(BINARY) || distIsCurrent()) return;
  const partial = `${BINARY}.partial-${process.pid}`;
  try {
    await build(partial);
    renameSync(partial, BINARY);
  } finally {
    rmSync(partial, { force: true });
  }
}

/** A compiled executable of the current sources, and how to clean up after it. */
export async function compiledBinary(): Promise<{ path: string; dispose: () => void }> {
  if (distIsCurrent()) return { path: BINARY, dispose: () => {} };
  const dir = mkdtempSync(join(tmpdir(), "adsrv-bin-"));
  const path = join(dir, "adsrv");
  await build(path);
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A private tmux server for tests that need a real terminal: start a command in a detached
 * session of a fixed size, type with `send-keys`, read with `capture-pane`, learn its exit code.
 * Every server has its own socket name (`adsrv-test-<random>`); `close()` kills it.
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const HAVE_TMUX = Bun.which("tmux") !== null;

/** Variables removed from a command's environment unless the test sets them. */
const CLEARED = ["NO_COLOR", "FORCE_COLOR", "CI", "TERM_PROGRAM", "COLORTERM"];

/** Single-quotes a word for sh. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export interface Terminal {
  /**
   * Runs `argv` in a new session `name`. A wrapper shell checks that the terminal settings after
   * the command equal those before (printing `TTY_RESTORED`), then prints `EXIT=<code>`; the pane
   * stays after exit (remain-on-exit) so it can still be read. `env` is set for the command.
   */
  start(
    name: string,
    size: { readonly columns: number; readonly rows: number },
    argv: readonly string[],
    options?: { readonly env?: Readonly<Record<string, string>>; readonly stdoutFile?: string },
  ): void;
  /** `tmux send-keys` (key names such as Enter, Down; pass "-l" first for literal text). */
  keys(name: string, ...keys: string[]): void;
  /** The pane's text; with `escapes`, its colours and attributes as SGR sequences too. */
  capture(name: string, escapes?: boolean): string;
  /** Polls the pane until `pred` holds (8 s at most); returns it or fails showing the pane. */
  waitFor(name: string, pred: (text: string) => boolean, what: string): Promise<string>;
  /** Waits for the command to end; its exit code. */
  /**
   * The exit code the wrapper printed. `nudge`: a key to send again every 2 s while waiting (a
   * keystroke sent while a loaded machine is still setting the pane up can be lost).
   */
  exitCode(name: string, nudge?: string): Promise<number>;
  close(): void;
}

export function startTerminal(): Terminal {
  const server = `adsrv-test-${crypto.randomUUID().slice(0, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), "adsrv-tmux-"));
  const config = join(dir, "tmux.conf");
  writeFileSync(config, "set -g remain-on-exit on\nset -g status off\n");

  const tmux = (...args: string[]): { code: number; out: string; err: string } => {
    const result = Bun.spawnSync(["tmux", "-L", server, "-f", config, ...args], {
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: result.exitCode, out: result.stdout.toString(), err: result.stderr.toString() };
  };
  const capture = (name: string, escapes = false): string =>
    tmux("capture-pane", "-p", ...(escapes ? ["-e"] : []), "-t", name).out;
  const keys = (name: string, ...names: string[]): void => {
    tmux("send-keys", "-t", name, ...names);
  };
  const waitFor = async (
    name: string,
    pred: (text: string) => boolean,
    what: string,
    nudge?: string,
  ): Promise<string> => {
    const started = performance.now();
    const deadline = started + 15_000;
    let nudged = started;
    for (;;) {
      const text = capture(name);
      if (pred(text)) return text;
      if (performance.now() > deadline) throw new Error(`pane never showed ${what}; it shows:\n${text}`);
      if (nudge !== undefined && performance.now() - nudged > 2_000) {
        keys(name, nudge);
        nudged = performance.now();
      }
      await Bun.sleep(40);
    }
  };

  return {
    start(name, size, argv, options = {}) {
      const env = Object.entries(options.env ?? {}).map(([key, value]) => `${key}=${shellQuote(value)}`);
      // Hermetic: colour and CI settings of the machine running the tests do not leak in (a CI
      // runner sets CI, some set NO_COLOR); a test that wants them passes them in `env`.
      const command = [
        "env",
        ...CLEARED.flatMap((name) => ["-u", name]),
        ...env,
        ...argv.map(shellQuote),
      ].join(" ");
      const redirect = options.stdoutFile === undefined ? "" : ` > ${shellQuote(options.stdoutFile)}`;
      // `read` first: tmux is still setting a new pane up when its command starts, and output
      // written in those first moments can vanish. Once tmux has handled the Enter sent below,
      // the pane is ready.
      // The exit code also goes to a file: the pane's text is what the tests check, but once in
      // a full-suite run the wrapper's lines never showed on a dead pane (blank, "Pane is dead
      // (status 0)"), so waiting for the exit does not depend on them.
      const statusFile = join(dir, `${name}.exit`);
      const script = `read ready; before=$(stty -g); ${command}${redirect}; code=$?; [ "$(stty -g)" = "$before" ] && echo TTY_RESTORED; echo "EXIT=$code"; echo "$code" > ${shellQuote(statusFile)}`;
      const result = tmux(
        "new-session",
        "-d",
        "-s",
        name,
        "-x",
        String(size.columns),
        "-y",
        String(size.rows),
        `sh -c ${shellQuote(script)}`,
      );
      if (result.code !== 0) throw new Error(`tmux new-session failed: ${result.err}`);
      keys(name, "Enter");
    },
    keys,
    capture,
    waitFor,
    // The code the wrapper wrote to its file: tmux 3.3's #{pane_dead_status} is unreliable here
    // (under load the server sometimes never reaps the pane's shell and leaves no status).
    async exitCode(name, nudge) {
      const statusFile = join(dir, `${name}.exit`);
      const started = performance.now();
      let nudged = started;
      for (;;) {
        const written = existsSync(statusFile) ? readFileSync(statusFile, "utf8") : "";
        if (/^\d+\n$/.test(written)) return Number(written);
        if (performance.now() - started > 15_000) {
          throw new Error(`no exit status for ${name}; the pane shows:\n${capture(name)}`);
        }
        if (nudge !== undefined && performance.now() - nudged > 2_000) {
          keys(name, nudge);
          nudged = performance.now();
        }
        await Bun.sleep(40);
      }
    },
    close() {
      tmux("kill-server");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

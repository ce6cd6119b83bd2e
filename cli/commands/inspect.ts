/**
 * `adsrv inspect SOURCE`: an interactive (ink) view of a catalog. It reads the source with the
 * server's own `readSource` and validates it with the server's own `parseCatalog`, so what it
 * shows valid or invalid is exactly what a server would accept or skip.
 *
 * Exit codes: 0 after `q`; 1 when the source cannot be read or the document is refused as a
 * whole (not JSON, wrong shape); 2 on usage errors, including a missing terminal: the inspector
 * needs stdin and stdout to be TTYs and refuses to start otherwise (scripts want
 * `adsrv catalog validate` instead).
 * @module
 */
import { Command } from "commander";
import { readSource } from "../../src/catalog/upstream.ts";
import { parseCatalog } from "../../src/catalog/validate.ts";
import { utcHour } from "../../src/decision/hours.ts";
import { colorEnabled } from "../output.ts";
import { type Catalog, catalogFrom } from "../tui/model.ts";

/** Why the inspector cannot run here, or null when stdin and stdout are terminals. */
export function terminalProblem(stdinTTY: boolean, stdoutTTY: boolean): string | null {
  if (stdinTTY && stdoutTTY) return null;
  const which = !stdinTTY && !stdoutTTY ? "stdin and stdout are" : !stdinTTY ? "stdin is" : "stdout is";
  return `adsrv inspect is interactive and needs a terminal, but ${which} not a TTY; for scripts use 'adsrv catalog validate SOURCE'`;
}

/** Reads and validates the source; a message when there is nothing to inspect. */
export async function loadCatalog(source: string): Promise<Catalog | string> {
  const read = await readSource(source, null);
  if (read.kind === "failed") return `cannot read ${source}: ${read.message}`;
  if (read.kind === "unchanged") return `cannot read ${source}: no body`;
  const result = parseCatalog(read.text);
  const catalog = catalogFrom(source, result);
  if (catalog === null) return `${source} is not a catalog: ${result.ok ? "no entries" : result.message}`;
  return catalog;
}

export function inspectCommand(): Command {
  return new Command("inspect")
    .description("browse a catalog in the terminal: filter, check hours, see invalid entries")
    .argument("<source>", "catalog file path or http(s) URL of the campaign service")
    .option("--hour <h>", "UTC hour to start at (default: now)")
    .addHelpText(
      "after",
      `
Keys:
  ↑/↓ j/k move, PgUp/PgDn page, g/G first/last
  /   filter: words match id, country or language; c:us l:fr id:abc narrow to one field
  h   type an hour (0-23); ←/→ step it by one; l shows only ads live at that hour
  p   only invalid entries     esc clear filters     q quit

Needs a terminal (exit 2 otherwise). Exit 1 when the source cannot be read or is not a catalog.

Examples:
  $ adsrv inspect ./catalog.json
  $ adsrv inspect https://campaigns.example/ads --hour 18`,
    )
    .action(async (source: string, opts: { hour?: string }, command: Command) => {
      let hour = utcHour(Date.now());
      if (opts.hour !== undefined) {
        if (!/^\d{1,2}$/.test(opts.hour) || Number(opts.hour) > 23) {
          command.error(`error: --hour must be a whole number from 0 to 23, got '${opts.hour}'`, {
            exitCode: 2,
          });
        }
        hour = Number(opts.hour);
      }
      const problem = terminalProblem(process.stdin.isTTY === true, process.stdout.isTTY === true);
      if (problem !== null) command.error(`error: ${problem}`, { exitCode: 2 });
      const catalog = await loadCatalog(source);
      if (typeof catalog === "string") {
        process.stderr.write(`error: ${catalog}\n`);
        process.exitCode = 1;
        return;
      }
      // adsrv's colour rule (a terminal, and NO_COLOR unset: https://no-color.org) decides, not
      // chalk's own guess under ink, which reads FORCE_COLOR when it loads and turns colour off
      // whenever CI is set. NO_COLOR wins over a FORCE_COLOR the user set; otherwise theirs stays.
      if (!colorEnabled()) process.env.FORCE_COLOR = "0";
      else if (process.env.FORCE_COLOR === undefined) process.env.FORCE_COLOR = "1";
      // Loaded on demand: other subcommands do not pay for React and ink.
      const [{ render }, { createElement }, { App }] = await Promise.all([
        import("ink"),
        import("react"),
        import("../tui/App.tsx"),
      ]);
      const app = render(createElement(App, { catalog, hour }), {
        alternateScreen: true,
        // A TTY was checked above; ink would otherwise turn non-interactive when CI is set.
        interactive: true,
        exitOnCtrlC: true,
        patchConsole: true,
      });
      await app.waitUntilExit();
      process.exitCode = 0;
    });
}

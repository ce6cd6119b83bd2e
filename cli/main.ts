#!/usr/bin/env bun
/**
 * The `adsrv` executable: a commander program. Exit codes: 0 ok, 1 the checked thing failed,
 * 2 usage or configuration error.
 * @module
 */
import { Command, CommanderError } from "commander";
import pkg from "../package.json";

/**
 * The subcommands, in help order, each loaded only when needed: `adsrv serve` then carries none
 * of the tools' code, which a long-running server's every full collection would mark again
 * (live cells after a full collection 40,400 → 31,200, a forced one's median 1.5-2.4 → 1.3-2.2 ms;
 * docs/performance.md). Chunks are split at build (scripts/build.ts): in one chunk, every module's
 * functions would be created at start, imported or not.
 */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  serve: async () => (await import("./commands/serve.ts")).serveCommand(),
  catalog: async () => (await import("./commands/catalog.ts")).catalogCommand(),
  query: async () => (await import("./commands/query.ts")).queryCommand(),
  token: async () => (await import("./commands/token.ts")).tokenCommand(),
  inspect: async () => (await import("./commands/inspect.ts")).inspectCommand(),
  keys: async () => (await import("./commands/keys.ts")).keysCommand(),
};

/**
 * The program for `argv`: with only the named subcommand when `argv` starts with one, else
 * (help, version, an unknown word) with all of them.
 */
export async function program(argv: readonly string[] = []): Promise<Command> {
  const root = new Command("adsrv")
    .description("adsrv: an ad decision server for video games")
    .version(pkg.version);
  const all = Object.entries(COMMANDS);
  const named = all.filter(([name]) => name === argv[0]);
  for (const [, load] of named.length > 0 ? named : all) root.addCommand(await load());
  // addCommand() does not pass settings down: apply them to every subcommand.
  const apply = (command: Command): void => {
    command.exitOverride();
    for (const sub of command.commands) apply(sub);
  };
  apply(root);
  return root;
}

/** Runs the program; returns the exit code instead of exiting (for tests). */
export async function run(argv: readonly string[]): Promise<number> {
  const root = await program(argv);
  try {
    await root.parseAsync([...argv], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return 0;
      if (error.code === "commander.help") return 0;
      return error.exitCode === 1 ? 2 : error.exitCode;
    }
    throw error;
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  // A reader that stops early (`adsrv catalog preview … | head`) closes the pipe: a tool stops
  // quietly, as Unix tools do, instead of a stack trace for EPIPE. Not the server: its stdout is
  // its log, and losing it stays an error.
  if (argv[0] !== "serve") {
    process.stdout.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") throw error;
      process.exit(process.exitCode ?? 0);
    });
  }
  process.exitCode = await run(argv);
}

#!/usr/bin/env bun
/**
 * The `adsrv` executable: a commander program. Exit codes: 0 ok, 1 the checked thing failed,
 * 2 usage or configuration error.
 * @module
 */
import { Command, CommanderError } from "commander";
import pkg from "../package.json";
import { catalogCommand } from "./commands/catalog.ts";
import { inspectCommand } from "./commands/inspect.ts";
import { keysCommand } from "./commands/keys.ts";
import { queryCommand } from "./commands/query.ts";
import { serveCommand } from "./commands/serve.ts";
import { tokenCommand } from "./commands/token.ts";

export function program(): Command {
  const root = new Command("adsrv")
    .description("adsrv: an ad decision server for video games")
    .version(pkg.version)
    .addCommand(serveCommand())
    .addCommand(catalogCommand())
    .addCommand(queryCommand())
    .addCommand(tokenCommand())
    .addCommand(inspectCommand())
    .addCommand(keysCommand());
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
  const root = program();
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
  process.exitCode = await run(process.argv.slice(2));
}

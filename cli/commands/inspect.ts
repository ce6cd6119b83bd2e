import { Command } from "commander";

/** Placeholder until the `inspect` subcommand lands (issue 3). */
export function inspectCommand(): Command {
  return new Command("inspect").description("(not available yet)");
}

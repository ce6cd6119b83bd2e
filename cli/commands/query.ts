import { Command } from "commander";

/** Placeholder until the `query` subcommand lands (issue 3). */
export function queryCommand(): Command {
  return new Command("query").description("(not available yet)");
}

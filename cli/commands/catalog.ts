import { Command } from "commander";

/** Placeholder until the `catalog` subcommand lands (issue 3). */
export function catalogCommand(): Command {
  return new Command("catalog").description("(not available yet)");
}

import { Command } from "commander";

/** Placeholder until the `token` subcommand lands (issue 3). */
export function tokenCommand(): Command {
  return new Command("token").description("(not available yet)");
}

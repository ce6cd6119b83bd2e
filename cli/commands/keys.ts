import { Command } from "commander";

/** Placeholder until `adsrv keys` lands (issue 6). */
export function keysCommand(): Command {
  return new Command("keys").description("(not available yet)");
}

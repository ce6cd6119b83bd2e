/** The program loads only the subcommand it runs (`adsrv serve` carries none of the tools). */
import { expect, test } from "bun:test";
import { program } from "../../cli/main.ts";

const ALL = ["serve", "catalog", "query", "token", "inspect", "keys"];

test("a named subcommand is the only one loaded", async () => {
  for (const name of ALL) {
    const root = await program([name, "--help"]);
    expect(root.commands.map((c) => c.name())).toEqual([name]);
  }
});

test("help, version and unknown words load every subcommand, in help order", async () => {
  for (const argv of [[], ["--help"], ["help", "serve"], ["--version"], ["nosuch"], ["-h"]]) {
    const root = await program(argv);
    expect(root.commands.map((c) => c.name())).toEqual(ALL);
  }
});

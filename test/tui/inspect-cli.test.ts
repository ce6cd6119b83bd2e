/**
 * `adsrv inspect` through the real executable without a terminal: it refuses to start (exit 2)
 * and its usage errors exit 2. The interactive side is covered by app.test.tsx and tmux.test.ts.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../rig.ts";
import { refreshDistBinary } from "./binary.ts";

const FIXTURE = join(import.meta.dir, "fixtures", "mixed-catalog.json");

beforeAll(async () => {
  await refreshDistBinary();
});

describe("adsrv inspect without a terminal", () => {
  test("refuses to start: exit 2, says why and what to use instead", async () => {
    const result = await runCli(["inspect", FIXTURE], { stdin: "" });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      "error: adsrv inspect is interactive and needs a terminal, but stdin and stdout are not a TTY; " +
        "for scripts use 'adsrv catalog validate SOURCE'\n",
    );
  });

  test("a missing SOURCE is a usage error", async () => {
    const result = await runCli(["inspect"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("missing required argument 'source'");
  });

  test("a bad --hour is a usage error", async () => {
    const result = await runCli(["inspect", FIXTURE, "--hour", "24"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--hour must be a whole number from 0 to 23, got '24'");
  });

  test("--help lists the keys and the exit codes", async () => {
    const result = await runCli(["inspect", "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Usage: adsrv inspect [options] <source>");
    for (const key of ["/   filter", "h   type an hour", "q quit", "Needs a terminal (exit 2 otherwise)"]) {
      expect(result.stdout).toContain(key);
    }
  });
});

/**
 * A tool whose reader stops early (`adsrv … | head`): the closed pipe ends it quietly with its
 * own exit code, not with a stack trace for EPIPE.
 */
import { expect, test } from "bun:test";
import { cliCommand, ROOT } from "../rig.ts";

test("a tool whose stdout reader has gone ends quietly", async () => {
  const proc = Bun.spawn(cliCommand(["--help"]), { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  // Closed at once, long before the process has started and written its help.
  await proc.stdout.cancel();
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  expect(stderr).not.toContain("EPIPE");
  expect(code).toBe(0);
});

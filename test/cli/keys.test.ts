/**
 * `adsrv keys new|hash|check` through the real executable (runCli): the key alone on the first
 * line, a `[[client]]` entry that parses and matches the key, usage errors (exit 2), help.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeySet, looksLikeKey, parseKeysFile } from "../../src/auth/apikey.ts";
import { runCli } from "../rig.ts";
import { refreshDistBinary } from "../tui/binary.ts";

const KEY_LINE = /^adsrv_[a-z2-7]{56}$/;

/** An independent SHA-256 (Bun's hasher, not the module's). */
function sha256(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

let dir: string;

beforeAll(async () => {
  await refreshDistBinary();
  dir = await mkdtemp(join(tmpdir(), "adsrv-keys-cli-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("adsrv keys new", () => {
  test.concurrent("prints the key alone on the first line, then the [[client]] entry", async () => {
    const r = await runCli(["keys", "new", "game-ios"]);
    expect(r.code).toBe(0);
    const [first, ...rest] = r.stdout.split("\n");
    expect(first).toMatch(KEY_LINE);
    const key = first ?? "";
    expect(looksLikeKey(key)).toBe(true);
    const toml = rest.join("\n");
    expect(toml).not.toContain(key);
    const doc = Bun.TOML.parse(toml) as { client: Record<string, unknown>[] };
    expect(doc).toEqual({ client: [{ name: "game-ios", key_sha256: sha256(key) }] });
    // The server's own parser accepts it, and the key then authenticates as that client.
    const set = new KeySet(parseKeysFile(toml));
    expect(set.authenticate(key)).toEqual({ ok: true, client: { name: "game-ios" } });
  });

  test.concurrent("--rate-limit adds rate_limit to the entry", async () => {
    const [whole, fraction] = await Promise.all([
      runCli(["keys", "new", "partner.acme_1", "--rate-limit", "20"]),
      runCli(["keys", "new", "slow-client", "--rate-limit", "0.5"]),
    ]);
    for (const [r, name, rate] of [
      [whole, "partner.acme_1", 20],
      [fraction, "slow-client", 0.5],
    ] as const) {
      expect(r.code).toBe(0);
      const [key, ...rest] = r.stdout.split("\n");
      const doc = Bun.TOML.parse(rest.join("\n"));
      expect(doc).toEqual({ client: [{ name, key_sha256: sha256(key ?? ""), rate_limit: rate }] });
    }
  });

  test.concurrent("two keys are never the same, and entries from several runs form a valid file", async () => {
    const runs = await Promise.all(["a", "b", "c"].map((name) => runCli(["keys", "new", name])));
    const keys = runs.map((r) => r.stdout.split("\n")[0] ?? "");
    expect(new Set(keys).size).toBe(3);
    const file = runs.map((r) => r.stdout.split("\n").slice(1).join("\n")).join("\n");
    const set = new KeySet(parseKeysFile(file));
    expect(set.size).toBe(3);
    expect(keys.map((k) => set.authenticate(k))).toEqual(
      ["a", "b", "c"].map((name) => ({ ok: true, client: { name } })),
    );
  });

  test.concurrent.each([
    ["a space", "bad name"],
    ["an empty name", ""],
    ["65 characters", "n".repeat(65)],
    ["a non-ASCII letter", "jeu-é"],
    ["a slash", "a/b"],
  ])("a NAME with %s is a usage error (exit 2)", async (_label, name) => {
    const r = await runCli(["keys", "new", name]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/client name .* must be 1 to 64 characters/);
  });

  test.concurrent.each([["0"], ["-1"], ["fast"], [""]])(
    "--rate-limit %p is a usage error (exit 2)",
    async (value) => {
      const r = await runCli(["keys", "new", "x", "--rate-limit", value]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("--rate-limit");
    },
  );

  test.concurrent("no NAME, or an unknown option, is a usage error (exit 2)", async () => {
    const [none, unknown] = await Promise.all([
      runCli(["keys", "new"]),
      runCli(["keys", "new", "x", "--burst", "3"]),
    ]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("missing required argument");
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe("");
  });
});

describe("adsrv keys hash and check", () => {
  test.concurrent("hash reads a key on stdin and prints its SHA-256", async () => {
    const made = await runCli(["keys", "new", "h"]);
    const key = made.stdout.split("\n")[0] ?? "";
    const r = await runCli(["keys", "hash"], { stdin: `${key}\n` });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${sha256(key)}\n`);
  });

  test.concurrent("hash refuses what is not a key, without echoing it", async () => {
    const made = await runCli(["keys", "new", "h"]);
    const key = made.stdout.split("\n")[0] ?? "";
    const typo = `${key.slice(0, -1)}${key.endsWith("a") ? "b" : "a"}`;
    const r = await runCli(["keys", "hash"], { stdin: typo });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("does not hold an adsrv key");
    expect(r.stderr).not.toContain(typo.slice(6));
  });

  test.concurrent("check accepts a valid keys file and refuses a broken one (exit 1)", async () => {
    const made = await runCli(["keys", "new", "ok", "--rate-limit", "5"]);
    const good = join(dir, "good.toml");
    await writeFile(good, made.stdout.split("\n").slice(1).join("\n"));
    const ok = await runCli(["keys", "check", good]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("1 client, 1 with their own rate limit");

    const key = made.stdout.split("\n")[0] ?? "";
    const bad = join(dir, "bad.toml");
    await writeFile(bad, `[[client]]\nname = "ok"\nkey_sha256 = "${key}"\n`);
    const refused = await runCli(["keys", "check", bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('client #1 ("ok"): "key_sha256" must be 64 hexadecimal characters');
    expect(refused.stderr).not.toContain(key.slice(6));

    const missing = await runCli(["keys", "check", join(dir, "absent.toml")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot read");
  });
});

describe("adsrv keys --help", () => {
  test.concurrent("lists the subcommands, the file format and examples", async () => {
    const r = await runCli(["keys", "--help"]);
    expect(r.code).toBe(0);
    for (const text of [
      "new [options] <name>",
      "hash",
      "check <file>",
      "[[client]]",
      "key_sha256",
      "Examples:",
    ]) {
      expect(r.stdout).toContain(text);
    }
  });

  test.concurrent("each subcommand has examples", async () => {
    const helps = await Promise.all(["new", "hash", "check"].map((sub) => runCli(["keys", sub, "--help"])));
    for (const [i, sub] of ["new", "hash", "check"].entries()) {
      const r = helps[i];
      expect(r?.code).toBe(0);
      expect(r?.stdout).toContain(`Usage: adsrv keys ${sub}`);
      expect(r?.stdout).toContain(`$ adsrv keys ${sub}`);
    }
    expect(helps[0]?.stdout).toContain("--rate-limit <per-second>");
  });
});

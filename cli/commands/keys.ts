/**
 * `adsrv keys new|hash|check`: API keys for `--api-keys FILE` (issue 6).
 *
 * `new NAME` prints the key alone on the first line of stdout, then the `[[client]]` entry to
 * append to the keys file (which stores only the key's SHA-256). The key is shown once.
 * Exit codes: 0 ok, 1 not a key / invalid keys file, 2 usage.
 * @module
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { CLIENT_NAME, generateKey, looksLikeKey, parseKeysFile, sha256Hex } from "../../src/auth/apikey.ts";
import { ConfigError, parsePositive } from "../../src/config.ts";

function parseRateLimit(value: string): number {
  try {
    return parsePositive("--rate-limit", value);
  } catch (error) {
    if (error instanceof ConfigError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}

/** The `[[client]]` table for a key (TOML). */
export function clientEntry(name: string, keySha256: string, rateLimit?: number): string {
  const lines = ["[[client]]", `name = ${JSON.stringify(name)}`, `key_sha256 = "${keySha256}"`];
  if (rateLimit !== undefined) lines.push(`rate_limit = ${String(rateLimit)}`);
  return `${lines.join("\n")}\n`;
}

function newCommand(): Command {
  return new Command("new")
    .description(
      "generate an API key: the key on the first line, then the [[client]] entry for the keys file",
    )
    .argument("<name>", "client name (1-64 of A-Z a-z 0-9 . _ -), shown in logs and used for rate limits")
    .addOption(
      new Option("--rate-limit <per-second>", "this client's own limit, in requests per second").argParser(
        parseRateLimit,
      ),
    )
    .addHelpText(
      "after",
      `
The key is printed once and stored nowhere: hand it to the client now. Append the rest of the
output to the keys file (adsrv serve --api-keys FILE); the server picks it up within seconds.

Examples:
  $ adsrv keys new game-ios
  $ adsrv keys new partner.acme --rate-limit 20
  $ adsrv keys new game-android > new.txt && head -n1 new.txt   # the key
  $ tail -n +2 new.txt >> /etc/adsrv/keys.toml                  # the entry`,
    )
    .action((name: string, opts: { rateLimit?: number }, command: Command) => {
      if (!CLIENT_NAME.test(name)) {
        command.error(
          `error: client name ${JSON.stringify(name.slice(0, 80))} must be 1 to 64 characters from A-Z a-z 0-9 . _ -`,
          { exitCode: 2 },
        );
      }
      const { key, sha256 } = generateKey();
      process.stdout.write(`${key}\n${clientEntry(name, sha256, opts.rateLimit)}`);
    });
}

function hashCommand(): Command {
  return new Command("hash")
    .description("read a key on stdin and print its SHA-256, the key_sha256 value for the keys file")
    .addHelpText(
      "after",
      `
The key is read from stdin (not from the command line, where it would land in shell history).

Examples:
  $ adsrv keys hash < key.txt
  $ printf '%s' "$ADSRV_KEY" | adsrv keys hash`,
    )
    .action(async () => {
      const input = (await Bun.stdin.text()).trim();
      if (!looksLikeKey(input)) {
        process.stderr.write("error: stdin does not hold an adsrv key (wrong format or checksum)\n");
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${sha256Hex(input)}\n`);
    });
}

function checkCommand(): Command {
  return new Command("check")
    .description("validate a keys file as the server would load it")
    .argument("<file>", "the keys file (TOML)")
    .addHelpText(
      "after",
      `
Examples:
  $ adsrv keys check /etc/adsrv/keys.toml`,
    )
    .action(async (file: string) => {
      let text: string;
      try {
        text = await Bun.file(file).text();
      } catch (error) {
        const code = (error as { code?: unknown } | null)?.code;
        process.stderr.write(`error: cannot read ${file}${typeof code === "string" ? ` (${code})` : ""}\n`);
        process.exitCode = 1;
        return;
      }
      try {
        const clients = parseKeysFile(text);
        const limited = clients.filter((c) => c.rateLimit !== undefined).length;
        process.stdout.write(
          `${file}: ${clients.length} client${clients.length === 1 ? "" : "s"}, ${limited} with their own rate limit\n`,
        );
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        process.stderr.write(`error: ${error.message}\n`);
        process.exitCode = 1;
      }
    });
}

export function keysCommand(): Command {
  return new Command("keys")
    .description("create and check API keys (adsrv serve --api-keys FILE)")
    .addCommand(newCommand())
    .addCommand(hashCommand())
    .addCommand(checkCommand())
    .addHelpText(
      "after",
      `
Keys look like adsrv_ followed by 56 letters and digits (240 random bits and a checksum).
Clients send them in the X-Api-Key header. The keys file holds only their SHA-256:

  [[client]]
  name = "game-ios"
  key_sha256 = "<64 hex characters>"
  rate_limit = 50          # optional, requests per second

Examples:
  $ adsrv keys new game-ios
  $ adsrv keys hash < key.txt
  $ adsrv keys check /etc/adsrv/keys.toml`,
    );
}

/**
 * `adsrv token`: mints a Cognito test token with AdminInitiateAuth and prints it.
 *
 * The password is read from stdin with `--password-stdin`, or typed at a prompt (no echo) on a
 * terminal; it is never accepted in argv, where `ps` would show it. AWS credentials come from
 * the SDK's standard chain (environment, shared files, SSO, container or instance role).
 * The region is `--region`, else the one in the pool id (`eu-west-1_abc`), else the SDK's.
 *
 * One sign-in gets at most two attempts and `--timeout` seconds in all (10 by default): a hung
 * endpoint fails with exit 1, never a retry storm.
 *
 * Exit codes: 0 token printed; 1 Cognito refused or could not be reached; 2 usage.
 * @module
 */
import { Command, InvalidArgumentError, Option } from "commander";

export const FLOWS = ["ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"] as const;
export type Flow = (typeof FLOWS)[number];

interface TokenOptions {
  userPoolId: string;
  clientId: string;
  username: string;
  passwordStdin?: boolean;
  password?: string;
  region?: string;
  endpoint?: string;
  flow: Flow;
  access?: boolean;
  json?: boolean;
  timeout: number;
}

/** Largest password read from stdin; Cognito's limit is 256 characters. */
const MAX_STDIN_BYTES = 64 * 1024;

function parseEndpoint(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError("must be an absolute http(s) URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError("must be an absolute http(s) URL");
  }
  return value;
}

function parseTimeout(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(seconds > 0) || seconds > 300) {
    throw new InvalidArgumentError("must be a number of seconds above 0 and at most 300");
  }
  return seconds;
}

function parseRegion(value: string): string {
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(value)) throw new InvalidArgumentError("is not an AWS region name");
  return value;
}

/** The region a pool id names (`eu-west-1_AbC123` → `eu-west-1`), or null. */
export function regionOfPool(userPoolId: string): string | null {
  const match = /^([a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+$/.exec(userPoolId);
  return match?.[1] ?? null;
}

/** Reads all of stdin (capped) and drops one trailing line break. */
async function readPasswordFromStdin(): Promise<string> {
  const reader = Bun.stdin.stream().getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_STDIN_BYTES) {
      await reader.cancel();
      throw new UsageError(`stdin holds more than ${MAX_STDIN_BYTES} bytes: that is not a password`);
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks)).replace(/\r?\n$/, "");
}

/** Asks for the password on the terminal without echoing it. Null when cancelled (Ctrl-C/D). */
async function promptPassword(prompt: string): Promise<string | null> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string | null>((resolve) => {
      let typed = "";
      const onData = (chunk: Buffer): void => {
        for (const char of chunk.toString("utf8")) {
          if (char === "\r" || char === "\n") {
            stdin.off("data", onData);
            resolve(typed);
            return;
          }
          if (char === "\x03" || char === "\x04") {
            stdin.off("data", onData);
            resolve(null);
            return;
          }
          if (char === "\x7f" || char === "\b") typed = typed.slice(0, -1);
          else if (char >= " ") typed += char;
        }
      };
      stdin.on("data", onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}

class UsageError extends Error {}

/** A one-line explanation of a failed call (never the password, never a stack). */
export function describeFailure(
  error: unknown,
  where: string,
  timeoutSeconds: number,
  timedOut: boolean,
): string {
  if (timedOut) return `no answer from Cognito (${where}) within ${timeoutSeconds} s`;
  const name = error instanceof Error ? error.name : "Error";
  const raw = error instanceof Error ? error.message : String(error);
  const message = raw.replace(/\s+/g, " ").trim().slice(0, 300);
  switch (name) {
    case "NotAuthorizedException":
      return `Cognito refused the sign-in: ${message} (NotAuthorizedException)`;
    case "TooManyRequestsException":
    case "LimitExceededException":
      return `Cognito is throttling requests: ${message} (${name}); try again later`;
    case "ResourceNotFoundException":
      return `${message} (ResourceNotFoundException): check --user-pool-id, --client-id and --region`;
    case "InvalidParameterException":
      return `${message} (InvalidParameterException): the app client must allow the flow (see --flow)`;
    case "UserNotConfirmedException":
    case "PasswordResetRequiredException":
    case "UserNotFoundException":
      return `${message} (${name})`;
    case "CredentialsProviderError":
      return `no AWS credentials found in the standard chain (environment, profile, SSO, role): ${message}`;
    case "AbortError":
    case "TimeoutError":
      return `no answer from Cognito (${where}) within ${timeoutSeconds} s`;
  }
  const code =
    error !== null && typeof error === "object" && "code" in error && typeof error.code === "string"
      ? error.code
      : null;
  if (code !== null && /^E[A-Z]+$/.test(code)) return `cannot reach Cognito (${where}): ${code}`;
  return `${name}: ${message}`;
}

async function mint(opts: TokenOptions): Promise<number> {
  let password: string;
  if (opts.passwordStdin) {
    password = await readPasswordFromStdin();
    if (password === "") throw new UsageError("--password-stdin given but stdin is empty");
  } else if (process.stdin.isTTY) {
    const typed = await promptPassword(`Password for ${opts.username}: `);
    if (typed === null) {
      process.stderr.write("error: cancelled\n");
      return 1;
    }
    password = typed;
  } else {
    throw new UsageError("no password: pipe it in with --password-stdin (a terminal gets a prompt)");
  }

  // Loaded here: the SDK is large and only this subcommand needs it.
  const { AdminInitiateAuthCommand, CognitoIdentityProviderClient } = await import(
    "@aws-sdk/client-cognito-identity-provider"
  );
  const region = opts.region ?? regionOfPool(opts.userPoolId) ?? undefined;
  const timeoutMs = Math.round(opts.timeout * 1000);
  const client = new CognitoIdentityProviderClient({
    ...(region === undefined ? {} : { region }),
    ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }),
    maxAttempts: 2,
    requestHandler: { connectionTimeout: Math.min(timeoutMs, 3000), requestTimeout: timeoutMs },
  });
  const where = opts.endpoint ?? `region ${region ?? "from the AWS config"}`;
  const deadline = AbortSignal.timeout(timeoutMs);
  let timer: ReturnType<typeof setTimeout> | undefined;
  // The SDK's abortSignal covers the HTTP exchange; the race also bounds credential lookup.
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DOMException("deadline", "TimeoutError")), timeoutMs + 250);
  });
  try {
    const output = await Promise.race([
      client.send(
        new AdminInitiateAuthCommand({
          UserPoolId: opts.userPoolId,
          ClientId: opts.clientId,
          AuthFlow: opts.flow,
          AuthParameters: { USERNAME: opts.username, PASSWORD: password },
        }),
        { abortSignal: deadline },
      ),
      expired,
    ]);
    const result = output.AuthenticationResult;
    if (result === undefined) {
      const challenge = output.ChallengeName ?? "an unknown challenge";
      process.stderr.write(
        `error: Cognito answered with ${challenge} instead of tokens; adsrv token cannot answer challenges: ` +
          "give the test user a permanent password and no MFA\n",
      );
      return 1;
    }
    const token = opts.access ? result.AccessToken : result.IdToken;
    if (token === undefined) {
      process.stderr.write(`error: Cognito's answer has no ${opts.access ? "AccessToken" : "IdToken"}\n`);
      return 1;
    }
    if (opts.json) {
      const expiresIn = result.ExpiresIn ?? null;
      process.stdout.write(
        `${JSON.stringify({
          token_use: opts.access ? "access" : "id",
          token,
          id_token: result.IdToken ?? null,
          access_token: result.AccessToken ?? null,
          token_type: result.TokenType ?? null,
          expires_in: expiresIn,
          expires_at: expiresIn === null ? null : new Date(Date.now() + expiresIn * 1000).toISOString(),
        })}\n`,
      );
    } else {
      process.stdout.write(`${token}\n`);
    }
    return 0;
  } catch (error) {
    process.stderr.write(`error: ${describeFailure(error, where, opts.timeout, deadline.aborted)}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    client.destroy();
  }
}

export function tokenCommand(): Command {
  return new Command("token")
    .description("mint a Cognito test token (AdminInitiateAuth) and print the ID token")
    .requiredOption("--user-pool-id <id>", "Cognito user pool id, e.g. eu-west-1_AbC123")
    .requiredOption("--client-id <id>", "app client id (the client must allow the flow used)")
    .requiredOption("--username <name>", "user to sign in as")
    .option("--password-stdin", "read the password from stdin (default: prompt on a terminal)")
    .addOption(
      new Option("--password <password>", "refused: a password in argv is visible to other users").hideHelp(),
    )
    .addOption(new Option("--region <region>", "AWS region (default: the pool id's)").argParser(parseRegion))
    .addOption(
      new Option("--endpoint <url>", "Cognito endpoint to call instead of AWS's (tests, proxies)").argParser(
        parseEndpoint,
      ),
    )
    .addOption(
      new Option("--flow <flow>", "authentication flow").choices(FLOWS).default("ADMIN_USER_PASSWORD_AUTH"),
    )
    .option("--access", "print the access token instead of the ID token")
    .option("--json", "print a JSON object: token, id_token, access_token, expires_in, expires_at")
    .addOption(
      new Option("--timeout <seconds>", "time allowed for the whole sign-in")
        .argParser(parseTimeout)
        .default(10),
    )
    .addHelpText(
      "after",
      `
AWS credentials come from the standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE, SSO, instance or task role) and need cognito-idp:AdminInitiateAuth on the pool.
Exit codes: 0 token printed, 1 sign-in refused or Cognito unreachable, 2 usage error.

Examples:
  $ adsrv token --user-pool-id eu-west-1_AbC123 --client-id 3n4example --username qa-bot
  $ pass show qa-bot | adsrv token --user-pool-id eu-west-1_AbC123 --client-id 3n4example \\
      --username qa-bot --password-stdin
  $ TOKEN=$(adsrv token ... --password-stdin < pw.txt) && adsrv query us eng --token "$TOKEN"`,
    )
    .action(async (opts: TokenOptions, command: Command) => {
      if (opts.password !== undefined) {
        command.error(
          "error: --password is refused: a password in argv is visible to every user (ps, /proc); " +
            "pipe it with --password-stdin or type it at the prompt",
          { exitCode: 2 },
        );
      }
      try {
        process.exitCode = await mint(opts);
      } catch (error) {
        if (error instanceof UsageError) command.error(`error: ${error.message}`, { exitCode: 2 });
        throw error;
      }
    });
}

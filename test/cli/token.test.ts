/**
 * `adsrv token` through the real executable against a fake Cognito on loopback: tokens that
 * verify against the fake's JWKS, the error paths (refused, throttled, hung, unreachable), usage
 * errors, and where the password travels (stdin or a no-echo prompt, never argv).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { type FakeCognito, sigv4Scope, startFakeCognito } from "../fakes/cognito.ts";
import { cliCommand, runCli } from "../rig.ts";
import { refreshDistBinary } from "../tui/binary.ts";
import { HAVE_TMUX, startTerminal } from "../tui/terminal.ts";

const PASSWORD = "correct horse battery staple";
const ACCESS_KEY = "AKIDADSRVTOKENTEST01";

/** Static test credentials and nothing else from the AWS chain (no files, no instance role). */
const AWS_ENV: Record<string, string> = {
  AWS_ACCESS_KEY_ID: ACCESS_KEY,
  AWS_SECRET_ACCESS_KEY: "adsrv-test-secret-key-not-real",
  AWS_SESSION_TOKEN: "",
  AWS_REGION: "eu-west-1",
  AWS_PROFILE: "",
  AWS_CONFIG_FILE: "/nonexistent/adsrv-test/config",
  AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/adsrv-test/credentials",
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "",
  AWS_CONTAINER_CREDENTIALS_FULL_URI: "",
  AWS_WEB_IDENTITY_TOKEN_FILE: "",
};

let cognito: FakeCognito;

beforeAll(async () => {
  await refreshDistBinary();
  cognito = await startFakeCognito({ users: { alice: PASSWORD } });
});

afterAll(async () => {
  await cognito.stop();
});

beforeEach(() => {
  cognito.mode = "ok";
  cognito.clearCalls();
});

function baseArgs(...extra: string[]): string[] {
  return [
    "token",
    "--user-pool-id",
    cognito.userPoolId,
    "--client-id",
    cognito.clientId,
    "--username",
    "alice",
    "--endpoint",
    cognito.endpoint,
    ...extra,
  ];
}

function mint(extra: string[] = [], stdin = `${PASSWORD}\n`, env: Record<string, string> = {}) {
  return runCli(baseArgs("--password-stdin", ...extra), { env: { ...AWS_ENV, ...env }, stdin });
}

describe("adsrv token against a fake Cognito", () => {
  test("prints an ID token that verifies against the pool's JWKS", async () => {
    const result = await mint();
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const token = result.stdout.trim();
    expect(result.stdout).toBe(`${token}\n`);

    const jwks = createRemoteJWKSet(new URL(cognito.jwksUrl));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      algorithms: ["RS256"],
      issuer: cognito.issuer,
      audience: cognito.clientId,
      requiredClaims: ["exp", "iat", "sub"],
    });
    expect(protectedHeader.kid).toBe(cognito.kid);
    expect(payload.token_use).toBe("id");
    expect(payload.sub).toBe(cognito.subOf("alice"));
    expect(payload["cognito:username"]).toBe("alice");
    expect(cognito.jwksFetches).toBeGreaterThan(0);

    // One signed AdminInitiateAuth, with the credentials from the environment and the pool's region.
    expect(cognito.calls).toHaveLength(1);
    const call = cognito.calls[0];
    expect(call?.target).toBe("AWSCognitoIdentityProviderService.AdminInitiateAuth");
    expect(call?.contentType).toBe("application/x-amz-json-1.1");
    expect(sigv4Scope(call?.authorization ?? null)).toEqual({
      accessKeyId: ACCESS_KEY,
      region: "eu-west-1",
      service: "cognito-idp",
    });
    expect(call?.body).toEqual({
      UserPoolId: cognito.userPoolId,
      ClientId: cognito.clientId,
      AuthFlow: "ADMIN_USER_PASSWORD_AUTH",
      AuthParameters: { USERNAME: "alice", PASSWORD },
    });
  });

  test("--access prints the access token: token_use access, client_id, no aud", async () => {
    const result = await mint(["--access"]);
    expect(result.code).toBe(0);
    const token = result.stdout.trim();
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(cognito.jwksUrl)), {
      algorithms: ["RS256"],
      issuer: cognito.issuer,
      requiredClaims: ["exp", "iat"],
    });
    expect(payload.token_use).toBe("access");
    expect(payload.client_id).toBe(cognito.clientId);
    expect(payload.aud).toBeUndefined();
    expect(payload.username).toBe("alice");
  });

  test("--json prints both tokens and their lifetime", async () => {
    const before = Date.now();
    const result = await mint(["--json"]);
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(Object.keys(out).sort()).toEqual(
      ["access_token", "expires_at", "expires_in", "id_token", "token", "token_type", "token_use"].sort(),
    );
    expect(out.token_use).toBe("id");
    expect(out.token).toBe(out.id_token);
    expect(out.token_type).toBe("Bearer");
    expect(out.expires_in).toBe(3600);
    const expiresAt = Date.parse(String(out.expires_at));
    expect(expiresAt).toBeGreaterThanOrEqual(before + 3_590_000);
    expect(decodeProtectedHeader(String(out.access_token)).alg).toBe("RS256");
  });

  test("--flow ADMIN_NO_SRP_AUTH and --region reach the request", async () => {
    const result = await mint(["--flow", "ADMIN_NO_SRP_AUTH", "--region", "us-west-2"]);
    expect(result.code).toBe(0);
    expect(cognito.calls[0]?.body?.AuthFlow).toBe("ADMIN_NO_SRP_AUTH");
    expect(sigv4Scope(cognito.calls[0]?.authorization ?? null)?.region).toBe("us-west-2");
  });

  test("a wrong password: exit 1, Cognito's reason on one line, no retry", async () => {
    const result = await mint([], "not the password\n");
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      "error: Cognito refused the sign-in: Incorrect username or password. (NotAuthorizedException)\n",
    );
    expect(cognito.calls).toHaveLength(1);
    expect(result.stderr).not.toContain("not the password");
  });

  test("mode not_authorized refuses even the right password", async () => {
    cognito.mode = "not_authorized";
    const result = await mint();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("NotAuthorizedException");
  });

  test("throttled: exit 1 after at most two attempts", async () => {
    cognito.mode = "throttled";
    const result = await mint();
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: Cognito is throttling requests: .*TooManyRequestsException/);
    expect(cognito.calls.length).toBeGreaterThanOrEqual(1);
    expect(cognito.calls.length).toBeLessThanOrEqual(2);
  });

  test("a challenge instead of tokens is a clear failure", async () => {
    cognito.mode = "challenge";
    const result = await mint();
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("NEW_PASSWORD_REQUIRED");
  });

  test("an unknown pool: exit 1 naming the flags to check", async () => {
    const result = await runCli(
      [
        "token",
        "--user-pool-id",
        "eu-west-1_Nope",
        "--client-id",
        cognito.clientId,
        "--username",
        "alice",
        "--endpoint",
        cognito.endpoint,
        "--password-stdin",
      ],
      { env: AWS_ENV, stdin: PASSWORD },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ResourceNotFoundException");
    expect(result.stderr).toContain("--user-pool-id");
  });

  test("a hung endpoint fails within --timeout, and the password is not in the live argv", async () => {
    cognito.mode = "hang";
    const proc = Bun.spawn(cliCommand(baseArgs("--password-stdin", "--timeout", "1.5")), {
      env: { ...process.env, NO_COLOR: "1", ...AWS_ENV },
      stdin: new TextEncoder().encode(`${PASSWORD}\n`),
      stdout: "pipe",
      stderr: "pipe",
      timeout: 20_000,
    });
    // While the fake holds the request, the process is alive: read its command line.
    const started = performance.now();
    while (cognito.calls.length === 0 && performance.now() - started < 10_000) await Bun.sleep(20);
    expect(cognito.calls).toHaveLength(1);
    const cmdline = readFileSync(`/proc/${proc.pid}/cmdline`, "utf8");
    expect(cmdline).toContain("--password-stdin");
    expect(cmdline).not.toContain(PASSWORD);

    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const waited = performance.now() - started;
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe(`error: no answer from Cognito (${cognito.endpoint}) within 1.5 s\n`);
    expect(waited).toBeGreaterThanOrEqual(1_000);
    expect(waited).toBeLessThan(4_000);
    expect(cognito.calls).toHaveLength(1);
  });

  test("an unreachable endpoint: exit 1, cannot reach", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const endpoint = `http://127.0.0.1:${closed.port}`;
    await closed.stop(true);
    const result = await runCli(
      [
        "token",
        "--user-pool-id",
        cognito.userPoolId,
        "--client-id",
        cognito.clientId,
        "--username",
        "alice",
        "--endpoint",
        endpoint,
        "--password-stdin",
      ],
      { env: AWS_ENV, stdin: PASSWORD },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`error: cannot reach Cognito (${endpoint}): ECONNREFUSED\n`);
  });

  test("no AWS credentials anywhere in the chain: exit 1 saying so", async () => {
    const result = await mint([], `${PASSWORD}\n`, { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: no AWS credentials found in the standard chain/);
    expect(cognito.calls).toHaveLength(0);
  });
});

describe("adsrv token usage errors exit 2", () => {
  test("a missing required flag", async () => {
    const result = await runCli(
      ["token", "--user-pool-id", cognito.userPoolId, "--client-id", cognito.clientId, "--password-stdin"],
      { env: AWS_ENV, stdin: PASSWORD },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("required option '--username <name>' not specified");
    expect(cognito.calls).toHaveLength(0);
  });

  test("--password in argv is refused before anything is sent", async () => {
    const result = await runCli(baseArgs("--password", "hunter2"), { env: AWS_ENV });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--password is refused");
    expect(result.stderr).toContain("--password-stdin");
    expect(result.stderr).not.toContain("hunter2");
    expect(cognito.calls).toHaveLength(0);
  });

  test("no password source: not a terminal and no --password-stdin", async () => {
    const result = await runCli(baseArgs(), { env: AWS_ENV, stdin: "" });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("pipe it in with --password-stdin");
    expect(cognito.calls).toHaveLength(0);
  });

  test("--password-stdin with nothing on stdin", async () => {
    const result = await runCli(baseArgs("--password-stdin"), { env: AWS_ENV, stdin: "" });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("stdin is empty");
  });

  test.each([
    [["--flow", "USER_SRP_AUTH"], "--flow"],
    [["--endpoint", "ftp://127.0.0.1:1"], "--endpoint"],
    [["--region", "mars"], "--region"],
    [["--timeout", "0"], "--timeout"],
    [["--bogus"], "unknown option '--bogus'"],
  ])("bad flag %p", async (extra, mentions) => {
    const result = await runCli(baseArgs("--password-stdin", ...extra), { env: AWS_ENV, stdin: PASSWORD });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(mentions);
    expect(cognito.calls).toHaveLength(0);
  });

  test("--help documents the flags, the 10 s default timeout and the exit codes", async () => {
    const result = await runCli(["token", "--help"]);
    expect(result.code).toBe(0);
    for (const flag of [
      "--user-pool-id",
      "--client-id",
      "--username",
      "--password-stdin",
      "--access",
      "--json",
    ]) {
      expect(result.stdout).toContain(flag);
    }
    const help = result.stdout.replace(/\s+/g, " ");
    expect(help).toContain('(choices: "ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"');
    expect(result.stdout).toContain("(default: 10)");
    expect(result.stdout).toContain("Exit codes: 0");
    expect(result.stdout).not.toMatch(/--password </);
  });
});

describe.skipIf(!HAVE_TMUX)("adsrv token on a terminal", () => {
  test("prompts for the password without echoing it", async () => {
    const term = startTerminal();
    const dir = mkdtempSync(join(tmpdir(), "adsrv-token-"));
    const out = join(dir, "token.txt");
    try {
      term.start("t", { columns: 100, rows: 10 }, cliCommand(baseArgs()), { env: AWS_ENV, stdoutFile: out });
      await term.waitFor("t", (pane) => pane.includes("Password for alice:"), "the prompt");
      term.keys("t", "-l", PASSWORD);
      term.keys("t", "Enter");
      expect(await term.exitCode("t")).toBe(0);
      const pane = await term.waitFor("t", (text) => text.includes("EXIT=0"), "the wrapper's exit line");
      expect(pane).not.toContain(PASSWORD);
      expect(pane).toContain("TTY_RESTORED");
      const token = readFileSync(out, "utf8").trim();
      const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(cognito.jwksUrl)), {
        issuer: cognito.issuer,
        audience: cognito.clientId,
        algorithms: ["RS256"],
      });
      expect(payload.sub).toBe(cognito.subOf("alice"));
      expect(cognito.calls[0]?.body?.AuthParameters).toEqual({ USERNAME: "alice", PASSWORD });
    } finally {
      term.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A fake Amazon Cognito user pool on loopback, for `adsrv token` and for JWT tests.
 *
 * It answers the AWS JSON 1.1 protocol call `AWSCognitoIdentityProviderService.AdminInitiateAuth`
 * the way Cognito does (same request checks, same error shapes), signs ID and access tokens
 * with an RS256 key generated when it starts (claims shaped like Cognito's: `iss` is
 * `<endpoint>/<poolId>`, `token_use`, `aud` on ID tokens, `client_id` on access tokens), and
 * serves the public key at `/<poolId>/.well-known/jwks.json`.
 *
 * Modes, set with `cognito.mode = ...`:
 * - `ok`: checks pool, client, flow and password; answers with tokens
 * - `not_authorized`: every sign-in gets `NotAuthorizedException`
 * - `throttled`: every call gets `TooManyRequestsException`
 * - `hang`: never answers (until `stop()`)
 * - `challenge`: answers `NEW_PASSWORD_REQUIRED` instead of tokens
 *
 * `sign()` signs arbitrary claims with the same key, so security tests can forge expired,
 * wrong-audience or wrong-`token_use` tokens that the fake's JWKS still verifies.
 * @module
 */
import {
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWSHeaderParameters,
  type JWTPayload,
  SignJWT,
} from "jose";

export type CognitoMode = "ok" | "not_authorized" | "throttled" | "hang" | "challenge";

export const TARGET_PREFIX = "AWSCognitoIdentityProviderService.";

export interface FakeCognitoOptions {
  /** Default `eu-west-1_AdsrvTest`: the region prefix is the pool's region, as in Cognito. */
  readonly userPoolId?: string;
  readonly clientId?: string;
  /** username → password. Default `{ alice: "correct horse battery staple" }`. */
  readonly users?: Readonly<Record<string, string>>;
  /** Token lifetime. Default 3600 s. */
  readonly ttlSeconds?: number;
}

/** One call the fake received, as it arrived. */
export interface CognitoCall {
  readonly target: string | null;
  readonly contentType: string | null;
  readonly authorization: string | null;
  /** The parsed JSON body (null when not JSON). */
  readonly body: Record<string, unknown> | null;
}

export interface FakeCognito {
  /** What to pass as `--endpoint`: `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  readonly userPoolId: string;
  readonly clientId: string;
  /** `iss` of every token: `<endpoint>/<poolId>`. */
  readonly issuer: string;
  readonly jwksUrl: string;
  readonly kid: string;
  readonly publicJwk: JWK;
  mode: CognitoMode;
  /** AdminInitiateAuth (and any other POST) calls, in order. */
  readonly calls: readonly CognitoCall[];
  /** GETs of the JWKS. */
  readonly jwksFetches: number;
  /** Forgets the calls and JWKS fetches seen so far. */
  clearCalls(): void;
  /** The `sub` the fake gives a user. */
  subOf(username: string): string;
  /** Signs `payload` (plus `iat` and, unless given, `exp`) with the pool's key. */
  sign(payload: JWTPayload, header?: Partial<JWSHeaderParameters>): Promise<string>;
  /** An ID token and an access token for a user, as a sign-in would issue them. */
  tokensFor(username: string): Promise<{ idToken: string; accessToken: string }>;
  stop(): Promise<void>;
}

function awsError(type: string, message: string, status = 400): Response {
  return new Response(JSON.stringify({ __type: type, message }), {
    status,
    headers: { "Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": type },
  });
}

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), {
    headers: { "Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": crypto.randomUUID() },
  });
}

export async function startFakeCognito(options: FakeCognitoOptions = {}): Promise<FakeCognito> {
  const userPoolId = options.userPoolId ?? "eu-west-1_AdsrvTest";
  const clientId = options.clientId ?? "3n4adsrvtestclient0000000";
  const users = options.users ?? { alice: "correct horse battery staple" };
  const ttl = options.ttlSeconds ?? 3600;
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = crypto.randomUUID();
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  const subs = new Map<string, string>();
  const subOf = (username: string): string => {
    let sub = subs.get(username);
    if (sub === undefined) {
      sub = crypto.randomUUID();
      subs.set(username, sub);
    }
    return sub;
  };
  const calls: CognitoCall[] = [];
  const hanging = new Set<() => void>();
  const state = { mode: "ok" as CognitoMode, jwksFetches: 0 };
  let issuer = "";

  const sign = (payload: JWTPayload, header: Partial<JWSHeaderParameters> = {}): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iat: now, exp: now + ttl, ...payload })
      .setProtectedHeader({ alg: "RS256", kid, ...header })
      .sign(privateKey);
  };

  const tokensFor = async (username: string): Promise<{ idToken: string; accessToken: string }> => {
    const now = Math.floor(Date.now() / 1000);
    const sub = subOf(username);
    const originJti = crypto.randomUUID();
    const common = { sub, iss: issuer, auth_time: now, event_id: crypto.randomUUID(), origin_jti: originJti };
    const idToken = await sign({
      ...common,
      aud: clientId,
      token_use: "id",
      "cognito:username": username,
      email_verified: true,
      jti: crypto.randomUUID(),
    });
    const accessToken = await sign({
      ...common,
      client_id: clientId,
      token_use: "access",
      scope: "aws.cognito.signin.user.admin",
      username,
      jti: crypto.randomUUID(),
    });
    return { idToken, accessToken };
  };

  async function adminInitiateAuth(body: Record<string, unknown>): Promise<Response> {
    if (body.UserPoolId !== userPoolId) {
      return awsError("ResourceNotFoundException", `User pool ${String(body.UserPoolId)} does not exist.`);
    }
    if (body.ClientId !== clientId) {
      return awsError(
        "ResourceNotFoundException",
        `User pool client ${String(body.ClientId)} does not exist.`,
      );
    }
    if (body.AuthFlow !== "ADMIN_USER_PASSWORD_AUTH" && body.AuthFlow !== "ADMIN_NO_SRP_AUTH") {
      return awsError("InvalidParameterException", "Auth flow not enabled for this client");
    }
    const params = (body.AuthParameters ?? {}) as Record<string, unknown>;
    const username = params.USERNAME;
    const password = params.PASSWORD;
    if (typeof username !== "string" || typeof password !== "string") {
      return awsError("InvalidParameterException", "Missing required parameter USERNAME or PASSWORD");
    }
    // Cognito hides whether the user exists: unknown user and wrong password look the same.
    if (state.mode === "not_authorized" || users[username] !== password) {
      return awsError("NotAuthorizedException", "Incorrect username or password.");
    }
    if (state.mode === "challenge") {
      return json({
        ChallengeName: "NEW_PASSWORD_REQUIRED",
        Session: "fake-session",
        ChallengeParameters: { USER_ID_FOR_SRP: username, requiredAttributes: "[]", userAttributes: "{}" },
      });
    }
    const { idToken, accessToken } = await tokensFor(username);
    return json({
      AuthenticationResult: {
        AccessToken: accessToken,
        ExpiresIn: ttl,
        IdToken: idToken,
        RefreshToken: `fake-refresh.${crypto.randomUUID()}`,
        TokenType: "Bearer",
      },
      ChallengeParameters: {},
    });
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    development: false,
    async fetch(req) {
      const url = new URL(req.url);
      if (req.method === "GET") {
        if (url.pathname === `/${userPoolId}/.well-known/jwks.json`) {
          state.jwksFetches++;
          return Response.json({ keys: [publicJwk] });
        }
        return new Response("not found", { status: 404 });
      }
      if (req.method !== "POST" || url.pathname !== "/") return new Response("not found", { status: 404 });
      const text = await req.text();
      let body: Record<string, unknown> | null = null;
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
          body = parsed as Record<string, unknown>;
        }
      } catch {
        body = null;
      }
      const target = req.headers.get("x-amz-target");
      calls.push({
        target,
        contentType: req.headers.get("content-type"),
        authorization: req.headers.get("authorization"),
        body,
      });
      if (state.mode === "hang") {
        await new Promise<void>((resolve) => hanging.add(resolve));
        return awsError("ServiceUnavailableException", "stopped", 503);
      }
      if (!req.headers.get("authorization")?.startsWith("AWS4-HMAC-SHA256 Credential=")) {
        return awsError("MissingAuthenticationTokenException", "Missing Authentication Token");
      }
      if (state.mode === "throttled") return awsError("TooManyRequestsException", "Rate exceeded");
      if (target !== `${TARGET_PREFIX}AdminInitiateAuth`) {
        return awsError("UnknownOperationException", `Unknown operation ${String(target)}`);
      }
      if (body === null) return awsError("SerializationException", "body is not a JSON object");
      return adminInitiateAuth(body);
    },
  });

  const endpoint = `http://127.0.0.1:${server.port}`;
  issuer = `${endpoint}/${userPoolId}`;
  return {
    endpoint,
    userPoolId,
    clientId,
    issuer,
    jwksUrl: `${issuer}/.well-known/jwks.json`,
    kid,
    publicJwk,
    get mode() {
      return state.mode;
    },
    set mode(mode: CognitoMode) {
      state.mode = mode;
    },
    calls,
    get jwksFetches() {
      return state.jwksFetches;
    },
    clearCalls() {
      calls.length = 0;
      state.jwksFetches = 0;
    },
    subOf,
    sign,
    tokensFor,
    async stop() {
      for (const release of hanging) release();
      hanging.clear();
      await server.stop(true);
    },
  };
}

/** The access key id and scope (date/region/service) of a SigV4 `Authorization` header. */
export function sigv4Scope(
  authorization: string | null,
): { accessKeyId: string; region: string; service: string } | null {
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/.exec(
    authorization ?? "",
  );
  if (match === null) return null;
  return { accessKeyId: match[1] ?? "", region: match[2] ?? "", service: match[3] ?? "" };
}

/**
 * Bearer JWT verification (RFC 8725 practices) with jose, against one issuer's JWKS.
 *
 * - Algorithms come from configuration (default RS256 and ES256), never from the token; `none`
 *   and HMAC algorithms are refused at configuration time, so HS256-with-the-public-key fails.
 * - `issuer` is checked, `exp` and `iat` are required, `nbf`/`exp`/`iat` allow `clockToleranceSec`
 *   (30 s) of skew; `sub` must be a non-empty string (rate limits key on it).
 * - Audience, AWS Cognito style: an ID token (`token_use: "id"`) and a token without `token_use`
 *   must carry one of the configured audiences in `aud`; an access token (`token_use: "access"`)
 *   has no `aud`, so its `client_id` must be one of them. Any other `token_use` is refused.
 * - Keys come only from the configured JWKS (see ./jwks.ts): `kid` selects a key of that set;
 *   `jku`, `x5u`, `jwk`, `x5c` headers are ignored, never fetched nor used.
 * - Outcomes are values: 401 for anything wrong with the credentials, 503 when no key set was ever
 *   loaded. Details are fixed strings: they never echo the token or its claims.
 * @module
 */
import type { JWTPayload } from "jose";
import { errors, jwtVerify } from "jose";
import type { Logger } from "../telemetry/log.ts";
import { createJwksStore, type JwksStore, type JwksStoreOptions, JwksUnavailableError } from "./jwks.ts";

export type TokenUse = "id" | "access";

/** Why a token was refused, stable for metrics and tests. */
export type JwtFailureReason =
  | "missing"
  | "malformed"
  | "algorithm"
  | "unknown_key"
  | "signature"
  | "issuer"
  | "audience"
  | "token_use"
  | "expired"
  | "not_yet_valid"
  | "claims"
  | "keys_unavailable";

export interface JwtSuccess {
  readonly ok: true;
  readonly subject: string;
  /** Cognito's `token_use`, or null for tokens without it. */
  readonly tokenUse: TokenUse | null;
  readonly claims: JWTPayload;
}

export interface JwtFailure {
  readonly ok: false;
  readonly status: 401 | 503;
  readonly error: "invalid_request" | "invalid_token";
  /** Safe to show the caller: a fixed sentence, never the token nor a claim value. */
  readonly detail: string;
  readonly reason: JwtFailureReason;
  /** On 503: seconds until keys may be fetched again. */
  readonly retryAfterSec?: number;
}

export type JwtResult = JwtSuccess | JwtFailure;

export interface JwtVerifierOptions {
  readonly jwksUrl: string;
  readonly issuer: string;
  /** Accepted `aud` values (ID tokens, plain JWTs) and `client_id` values (Cognito access tokens). */
  readonly audience: string | readonly string[];
  /** Accepted `alg` values (default RS256, ES256). Asymmetric only. */
  readonly algorithms?: readonly string[];
  /** Leeway for `exp`, `nbf` and `iat`, seconds (default 30). */
  readonly clockToleranceSec?: number;
  /** Accepted Cognito token kinds (default both). Tokens without `token_use` are always audience-checked. */
  readonly tokenUses?: readonly TokenUse[];
  /** Longest token accepted, characters (default 8192). */
  readonly maxTokenLength?: number;
  /** Clock, ms since the epoch (default `Date.now`); drives claim checks and the JWKS refetch limit. */
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Key store tuning (refresh interval, refetch limit, timeout, size cap). */
  readonly jwks?: Omit<JwksStoreOptions, "url" | "now" | "logger">;
  /** Use this store instead of creating one; `stop()` then leaves it running. */
  readonly store?: JwksStore;
}

export interface JwtVerifier {
  verify(authorization: string | null | undefined): Promise<JwtResult>;
  readonly store: JwksStore;
  stop(): void;
}

export const DEFAULT_ALGORITHMS = ["RS256", "ES256"] as const;
export const JWT_REALM = "adsrv";

/** Asymmetric JWS algorithms jose can verify with a JWKS key (also what the config accepts). */
export const ASYMMETRIC: ReadonlySet<string> = new Set([
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
]);

const DEFAULT_MAX_TOKEN = 8192;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const BEARER = /^bearer +(\S+)$/i;

/** Validates the configuration; throws a plain Error naming the bad setting. */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  const algorithms = [...(options.algorithms ?? DEFAULT_ALGORITHMS)];
  if (algorithms.length === 0) throw new Error("JWT algorithms: at least one is required");
  for (const alg of algorithms) {
    if (!ASYMMETRIC.has(alg))
      throw new Error(`JWT algorithm ${alg} is not accepted (asymmetric algorithms only)`);
  }
  if (options.issuer.trim() === "") throw new Error("JWT issuer must not be empty");
  const audiences = typeof options.audience === "string" ? [options.audience] : [...options.audience];
  if (audiences.length === 0 || audiences.some((a) => a.trim() === "")) {
    throw new Error("JWT audience: at least one non-empty value is required");
  }
  const tolerance = options.clockToleranceSec ?? 30;
  if (!(tolerance >= 0 && Number.isFinite(tolerance))) throw new Error("JWT clock tolerance must be >= 0");
  const tokenUses = new Set<string>(options.tokenUses ?? ["id", "access"]);
  const maxTokenLength = options.maxTokenLength ?? DEFAULT_MAX_TOKEN;
  const now = options.now ?? Date.now;
  const unknownKidIntervalMs = options.jwks?.unknownKidIntervalMs ?? 10_000;

  const ownStore = options.store === undefined;
  const storeOptions: JwksStoreOptions = {
    ...options.jwks,
    url: options.jwksUrl,
    now,
    ...(options.logger ? { logger: options.logger } : {}),
  };
  const store = options.store ?? createJwksStore(storeOptions);
  const audienceSet = new Set(audiences);
  const verifyOptions = {
    algorithms,
    issuer: options.issuer,
    clockTolerance: tolerance,
    requiredClaims: ["exp", "iat"],
  };

  async function verify(authorization: string | null | undefined): Promise<JwtResult> {
    const token = extractToken(authorization);
    if (typeof token !== "string") return token;
    if (token.length > maxTokenLength) return fail("malformed", "token is too long");
    if (!JWT_SHAPE.test(token)) return fail("malformed", "token is not a compact JWS");

    const clock = now();
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, store.getKey, {
        ...verifyOptions,
        currentDate: new Date(clock),
      }));
    } catch (error) {
      if (error instanceof JwksUnavailableError) {
        return {
          ok: false,
          status: 503,
          error: "invalid_token",
          reason: "keys_unavailable",
          detail: "signing keys are not available yet",
          retryAfterSec: Math.ceil(unknownKidIntervalMs / 1000),
        };
      }
      return classify(error);
    }

    const subject = claims.sub;
    if (typeof subject !== "string" || subject === "")
      return fail("claims", 'claim "sub" is missing or invalid');
    if (typeof claims.iat === "number" && claims.iat > clock / 1000 + tolerance) {
      return fail("claims", 'claim "iat" is in the future');
    }
    const use = claims.token_use;
    if (use === undefined) {
      if (!audienceMatches(claims.aud, audienceSet))
        return fail("audience", "token audience is not accepted");
      return { ok: true, subject, tokenUse: null, claims };
    }
    if (typeof use !== "string" || !tokenUses.has(use)) return fail("token_use", "token_use is not accepted");
    if (use === "access") {
      const clientId = claims.client_id;
      if (typeof clientId !== "string" || !audienceSet.has(clientId)) {
        return fail("audience", "token client_id is not accepted");
      }
      return { ok: true, subject, tokenUse: "access", claims };
    }
    if (!audienceMatches(claims.aud, audienceSet)) return fail("audience", "token audience is not accepted");
    return { ok: true, subject, tokenUse: "id", claims };
  }

  return {
    verify,
    store,
    stop() {
      if (ownStore) store.stop();
    },
  };
}

/** Reads `Authorization: Bearer TOKEN` or a bare token; a failure value otherwise. */
function extractToken(authorization: string | null | undefined): string | JwtFailure {
  const value = authorization?.trim() ?? "";
  if (value === "") {
    return {
      ok: false,
      status: 401,
      error: "invalid_request",
      reason: "missing",
      detail: "bearer token required",
    };
  }
  const bearer = BEARER.exec(value);
  if (bearer?.[1] !== undefined) return bearer[1];
  if (!/\s/.test(value) && value.includes(".")) return value;
  return {
    ok: false,
    status: 401,
    error: "invalid_request",
    reason: "malformed",
    detail: "Authorization must be 'Bearer <token>'",
  };
}

function fail(reason: JwtFailureReason, detail: string): JwtFailure {
  return { ok: false, status: 401, error: "invalid_token", reason, detail };
}

function audienceMatches(aud: unknown, accepted: ReadonlySet<string>): boolean {
  if (typeof aud === "string") return accepted.has(aud);
  if (Array.isArray(aud)) return aud.some((a) => typeof a === "string" && accepted.has(a));
  return false;
}

/** Maps a jose error to a fixed-text failure (jose messages are not passed through). */
function classify(error: unknown): JwtFailure {
  if (error instanceof errors.JWTExpired) {
    return error.claim === "exp" ? fail("expired", "token has expired") : fail("expired", "token is too old");
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "iss":
        return fail(
          "issuer",
          error.reason === "missing" ? 'claim "iss" is missing' : "token issuer is not accepted",
        );
      case "nbf":
        return fail(
          "not_yet_valid",
          error.reason === "check_failed" ? "token is not valid yet" : 'claim "nbf" is invalid',
        );
      case "exp":
        return fail(
          "claims",
          error.reason === "missing" ? 'claim "exp" is missing' : 'claim "exp" is invalid',
        );
      case "iat":
        return fail(
          "claims",
          error.reason === "missing" ? 'claim "iat" is missing' : 'claim "iat" is invalid',
        );
      default:
        return fail("claims", "token claims are invalid");
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return fail("algorithm", "token algorithm is not accepted");
  // The allow-list above runs first, so this is an unrecognized `crit` extension or key type.
  if (error instanceof errors.JOSENotSupported) return fail("malformed", "token uses an unsupported feature");
  if (error instanceof errors.JWKSNoMatchingKey)
    return fail("unknown_key", "no signing key matches the token");
  if (error instanceof errors.JWKSMultipleMatchingKeys)
    return fail("unknown_key", "token must name its key (kid)");
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return fail("signature", "token signature is invalid");
  return fail("malformed", "token is malformed");
}

/**
 * The `WWW-Authenticate` value for a failure (RFC 6750 §3). No error code when credentials were
 * simply missing, or when the failure is ours (503).
 */
export function wwwAuthenticate(result: JwtFailure): string {
  if (result.reason === "missing" || result.status === 503) return `Bearer realm="${JWT_REALM}"`;
  return `Bearer realm="${JWT_REALM}", error="${result.error}", error_description="${quotable(result.detail)}"`;
}

/** RFC 6750 error_description: %x20-21 / %x23-5B / %x5D-7E. */
function quotable(text: string): string {
  return text.replace(/[^\x20\x21\x23-\x5B\x5D-\x7E]/g, "").slice(0, 200);
}

/**
 * Who is calling: API key (`X-Api-Key`) or JWT (`Authorization`), whichever is configured and
 * presented. Synchronous for keys; only the JWT branch awaits. Secrets never leave this module:
 * results carry the client name or a hash of the JWT subject, never a key or a token.
 * @module
 */
import type { KeyStore } from "./apikey.ts";
import { type JwtVerifier, wwwAuthenticate } from "./jwt.ts";

export type Principal =
  | { readonly kind: "key"; readonly id: string; readonly rateLimit?: number }
  | { readonly kind: "jwt"; readonly id: string }
  | { readonly kind: "anonymous" };

export interface AuthFailure {
  readonly ok: false;
  readonly status: 401 | 503;
  readonly detail: string;
  /** A short stable reason for logs and metrics (never a secret). */
  readonly reason: string;
  readonly headers: Readonly<Record<string, string>>;
}

export type AuthOutcome = { readonly ok: true; readonly principal: Principal } | AuthFailure;

const ANONYMOUS: AuthOutcome = Object.freeze({ ok: true, principal: Object.freeze({ kind: "anonymous" }) });
const REALM = 'realm="adsrv"';

export class Gate {
  private readonly challenge: string;

  constructor(
    private readonly keys: KeyStore | null,
    private readonly jwt: JwtVerifier | null,
  ) {
    const schemes: string[] = [];
    if (jwt !== null) schemes.push(`Bearer ${REALM}`);
    if (keys !== null) schemes.push(`ApiKey ${REALM}, header="X-Api-Key"`);
    this.challenge = schemes.join(", ");
  }

  /** Whether any authentication is configured; without it every caller is anonymous. */
  get enabled(): boolean {
    return this.keys !== null || this.jwt !== null;
  }

  check(req: Request): AuthOutcome | Promise<AuthOutcome> {
    if (!this.enabled) return ANONYMOUS;
    const key = this.keys === null ? null : req.headers.get("x-api-key");
    if (this.keys !== null && key !== null) {
      const result = this.keys.authenticate(key);
      if (result.ok) {
        const { name, rateLimit } = result.client;
        return {
          ok: true,
          principal:
            rateLimit === undefined ? { kind: "key", id: name } : { kind: "key", id: name, rateLimit },
        };
      }
      return this.fail(401, "the API key is not valid", `api_key_${result.reason}`, this.challenge);
    }
    const authorization = this.jwt === null ? null : req.headers.get("authorization");
    if (this.jwt !== null && authorization !== null) return this.checkJwt(this.jwt, authorization);
    const wanted = [
      this.jwt ? "a bearer token in Authorization" : null,
      this.keys ? "an X-Api-Key header" : null,
    ]
      .filter((x) => x !== null)
      .join(" or ");
    return this.fail(401, `credentials are required: send ${wanted}`, "missing", this.challenge);
  }

  private async checkJwt(jwt: JwtVerifier, authorization: string): Promise<AuthOutcome> {
    const result = await jwt.verify(authorization);
    if (result.ok) return { ok: true, principal: { kind: "jwt", id: result.subject } };
    const challenge = [
      wwwAuthenticate(result),
      ...(this.keys ? [`ApiKey ${REALM}, header="X-Api-Key"`] : []),
    ].join(", ");
    if (result.status === 503) {
      return {
        ok: false,
        status: 503,
        detail: result.detail,
        reason: `jwt_${result.reason}`,
        headers: { "WWW-Authenticate": challenge, "Retry-After": String(result.retryAfterSec ?? 10) },
      };
    }
    return this.fail(401, result.detail, `jwt_${result.reason}`, challenge);
  }

  private fail(status: 401, detail: string, reason: string, challenge: string): AuthFailure {
    return { ok: false, status, detail, reason, headers: { "WWW-Authenticate": challenge } };
  }

  stop(): void {
    this.keys?.close();
    this.jwt?.stop();
  }
}

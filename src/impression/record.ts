/**
 * The `/impression` route's logic and the impression URL in decisions, as pure pieces the HTTP
 * layer wires (issue 7).
 *
 * - `createImpressionUrls(publicBaseUrl)`: the URL a decision carries, and the JSON decision
 *   body with `impression_url` appended to the ad's body head without re-serializing it (the
 *   token is base64url and the base is escaped once).
 * - `tokenFromSearch(search)`: the `t` parameter of a query string, strictly.
 * - `recordImpression(deps, token, nowMs)`: verify → ledger (once only) → stats; the outcome
 *   maps to 204 (counted, replay), 400 (`invalid-param`, param `t`, reason malformed or
 *   bad_signature) or 410 (`impression-expired`).
 * @module
 */
import { utcHour } from "../decision/hours.ts";
import type { ServedStats } from "../stats/served.ts";
import type { ImpressionLedger, LedgerResult } from "./ledger.ts";
import type { ImpressionSigner, VerifiedImpression } from "./token.ts";

export interface ImpressionUrls {
  /** `<base>/impression?t=<token>`. */
  url(token: string): string;
  /**
   * A JSON object's text from `head` (the object without its closing `}`, e.g. `{"id":"a"`) with
   * `"impression_url":"<url>"` added as its last member.
   */
  withImpressionUrl(head: string, token: string): string;
}

/**
 * `publicBaseUrl` is how players reach this server (e.g. `https://ads.example.com` or with a
 * path prefix): absolute http(s), no query or fragment; a trailing `/` is dropped. Take it from
 * configuration, not from the request's Host header.
 */
export function createImpressionUrls(publicBaseUrl: string): ImpressionUrls {
  let parsed: URL;
  try {
    parsed = new URL(publicBaseUrl);
  } catch {
    throw new RangeError("the public base URL must be an absolute http(s) URL");
  }
  if (
    (parsed.protocol !== "http:" && parsed.protocol !== "https:") ||
    parsed.search !== "" ||
    parsed.hash !== ""
  ) {
    throw new RangeError("the public base URL must be an absolute http(s) URL without query or fragment");
  }
  const base = `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
  const prefix = `${base}/impression?t=`;
  // `"impression_url":"<prefix>` with the prefix JSON-escaped once, closing quote left open.
  const member = `,"impression_url":${JSON.stringify(prefix).slice(0, -1)}`;
  return {
    url: (token) => `${prefix}${token}`,
    withImpressionUrl: (head, token) => `${head}${member}${token}"}`,
  };
}

/** Longest `t` accepted before any other work (tokens are about 100 characters). */
const MAX_T = 1024;

export type TokenParam =
  | { readonly ok: true; readonly token: string }
  | { readonly ok: false; readonly detail: string };

/** The `t` parameter of a query string (after `?`): required, once. Other parameters are ignored. */
export function tokenFromSearch(search: string): TokenParam {
  let token: string | undefined;
  for (const part of search.split("&")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (key !== "t") continue;
    if (token !== undefined) return { ok: false, detail: "t is given more than once" };
    token = eq < 0 ? "" : part.slice(eq + 1);
  }
  if (token === undefined || token === "")
    return { ok: false, detail: "t (the impression token) is required" };
  if (token.length > MAX_T) return { ok: false, detail: "t is too long to be an impression token" };
  if (token.includes("%")) {
    try {
      token = decodeURIComponent(token);
    } catch {
      return { ok: false, detail: "malformed percent-encoding" };
    }
  }
  return { ok: true, token };
}

export interface RecordDeps {
  readonly signer: ImpressionSigner;
  readonly ledger: ImpressionLedger;
  readonly stats: ServedStats;
}

export type ImpressionOutcome =
  | { readonly kind: "counted" | "replay"; readonly claims: VerifiedImpression }
  | { readonly kind: "invalid"; readonly reason: "malformed" | "bad_signature" }
  | { readonly kind: "expired" };

/** Country and language when a token has none (older tokens, or minted without them). */
export const UNKNOWN = "unknown";

const EXPIRED: ImpressionOutcome = Object.freeze({ kind: "expired" });

/**
 * Verifies the token, counts it once in the ledger and, when counted, in the stats (in the UTC
 * hour of the decision). Synchronous when the ledger is.
 */
export function recordImpression(
  deps: RecordDeps,
  token: string,
  nowMs: number,
): ImpressionOutcome | Promise<ImpressionOutcome> {
  const verified = deps.signer.verify(token, nowMs);
  if (!verified.ok) {
    return verified.reason === "expired" ? EXPIRED : { kind: "invalid", reason: verified.reason };
  }
  const { claims } = verified;
  const finish = (result: LedgerResult): ImpressionOutcome => {
    if (result === "counted") {
      deps.stats.impression(
        claims.adId,
        claims.country ?? UNKNOWN,
        claims.lang ?? UNKNOWN,
        utcHour(claims.decidedAtMs),
      );
    }
    return { kind: result, claims };
  };
  const result = deps.ledger.record(claims.tokenId, claims.expiresAtMs, nowMs);
  return result instanceof Promise ? result.then(finish) : finish(result);
}

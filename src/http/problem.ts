/**
 * The one error table for HTTP answers, rendered as RFC 9457 problem+json.
 * Every code here is documented in docs/errors.md (a test keeps the two in step).
 * @module
 */
import { SECURITY_HEADERS } from "./headers.ts";

export const PROBLEMS = {
  "invalid-param": { status: 400, title: "Invalid request parameter" },
  "invalid-request": { status: 400, title: "Invalid request" },
  unauthorized: { status: 401, title: "Authentication required" },
  "not-found": { status: 404, title: "Not found" },
  "no-fill": { status: 404, title: "No ad available" },
  "method-not-allowed": { status: 405, title: "Method not allowed" },
  "impression-expired": { status: 410, title: "Impression token expired" },
  "uri-too-long": { status: 414, title: "Request target too long" },
  "rate-limited": { status: 429, title: "Too many requests" },
  "no-catalog": { status: 503, title: "No catalog loaded yet" },
  overloaded: { status: 503, title: "Server overloaded" },
  "auth-unavailable": { status: 503, title: "Authentication temporarily unavailable" },
  "store-unavailable": { status: 503, title: "Player history temporarily unavailable" },
  "shutting-down": { status: 503, title: "Server is shutting down" },
  internal: { status: 500, title: "Internal server error" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof PROBLEMS;

/** The `type` URI of a problem: a stable name documented in docs/errors.md. */
export function problemType(code: ProblemCode): string {
  return `urn:adsrv:problem:${code}`;
}

/** The problem document, as an object (before serialization). */
export function problemBody(
  code: ProblemCode,
  detail: string,
  extra: Readonly<Record<string, string>> = {},
): Record<string, string | number> {
  const { status, title } = PROBLEMS[code];
  return { type: problemType(code), title, status, detail, ...extra };
}

/** A problem+json response. `extra` adds members (e.g. `reason`, `param`) to the body. */
export function problem(
  code: ProblemCode,
  detail: string,
  extra: Readonly<Record<string, string>> = {},
  headers: Readonly<Record<string, string>> = {},
): Response {
  return new Response(JSON.stringify(problemBody(code, detail, extra)), {
    status: PROBLEMS[code].status,
    headers: { ...SECURITY_HEADERS, "Content-Type": "application/problem+json", ...headers },
  });
}

/** A fixed problem whose body is serialized once; each call returns a fresh Response. */
export function prebuiltProblem(
  code: ProblemCode,
  detail: string,
  extra: Readonly<Record<string, string>> = {},
  headers: Readonly<Record<string, string>> = {},
): (requestId: string) => Response {
  const body = JSON.stringify(problemBody(code, detail, extra));
  const status = PROBLEMS[code].status;
  const fixed = { ...SECURITY_HEADERS, "Content-Type": "application/problem+json", ...headers };
  return (requestId) => new Response(body, { status, headers: { ...fixed, "X-Request-Id": requestId } });
}

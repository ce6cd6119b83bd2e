/**
 * The HTTP application as plain functions: `Bun.serve` only wires them (see server.ts).
 *
 * `/ad_request` stages, in this order (each may answer early):
 *   1. request id      X-Request-Id from the caller if well formed, else generated
 *   2. shed            more than `maxPending` requests in flight → 503 overloaded
 *   3. size            target over MAX_TARGET → 414; a body on GET → 400
 *   4. authenticate    API key or JWT when configured → 401 / 503 (failures per IP → 429)
 *   5. rate limit      token bucket per client (key name, JWT subject, or IP) → 429
 *   6. parse query     strict → 400 naming the parameter
 *   7. decide          snapshot read once → eligible → choose → prebuilt body
 * Only the JWT branch of stage 4 awaits (raced against `requestTimeoutMs`); the rest is synchronous.
 * @module
 */
import type { Server } from "bun";
import type { AuthOutcome, Gate, Principal } from "../auth/gate.ts";
import type { Snapshot } from "../catalog/snapshot.ts";
import { choose, eligible } from "../decision/decide.ts";
import { utcHour } from "../decision/hours.ts";
import type { CatalogHolder } from "../sync/holder.ts";
import type { Logger } from "../telemetry/log.ts";
import {
  AuthFailure,
  Decision,
  type Metrics,
  RateLimit,
  Route,
  routeOfPath,
  timed,
} from "../telemetry/metrics.ts";
import { hasBody, MAX_TARGET } from "./edge.ts";
import { SECURITY_HEADERS } from "./headers.ts";
import { prebuiltProblem, problem } from "./problem.ts";
import { parseAdQuery, searchOf } from "./query.ts";
import { makePolicy, type RateLimiter, type RatePolicy, rateLimitHeaders } from "./ratelimit.ts";

export interface RouteDeps {
  readonly holder: CatalogHolder;
  /** Epoch milliseconds; injected so tests can move the clock. */
  readonly now: () => number;
  /** Seconds a client should wait before retrying a 503. */
  readonly retryAfterSeconds: number;
  /** True once shutdown began: readiness turns 503 so balancers stop sending. */
  readonly draining: () => boolean;
  readonly gate: Gate;
  /** Per-client token buckets, or null for no rate limit. */
  readonly limiter: RateLimiter | null;
  /** Per-IP buckets of failed authentications, or null. */
  readonly authFailures: RateLimiter | null;
  readonly requestId: (req: Request) => string;
  readonly clientAddress: (req: Request, peer: string | null) => string;
  /** Requests in flight above which new ones are shed with 503. */
  readonly maxPending: number;
  /** Deadline for the awaited (JWT) branch, ms. */
  readonly requestTimeoutMs: number;
  readonly log: Logger;
  readonly metrics: Metrics;
}

function authFailureKind(reason: string): AuthFailure {
  if (reason.endsWith("missing")) return AuthFailure.missing;
  if (reason === "api_key_unknown") return AuthFailure.invalid_key;
  if (reason === "jwt_keys_unavailable") return AuthFailure.keys_unavailable;
  return AuthFailure.invalid_token;
}

type Handler = (req: Request, server: Server<undefined>) => Response | Promise<Response>;

/** Paths and the methods they answer (HEAD is derived from GET by Bun). */
export const ALLOWED: Readonly<Record<string, string>> = {
  "/ad_request": "GET, HEAD",
  "/healthz": "GET, HEAD",
  "/readyz": "GET, HEAD",
};

const TEXT_HEADERS = Object.freeze({ ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8" });

export function makeRoutes(deps: RouteDeps): {
  readonly routes: Readonly<Record<string, { GET: Handler }>>;
  readonly fallback: Handler;
} {
  const { log, metrics } = deps;
  const retry = { "Retry-After": String(deps.retryAfterSeconds) };
  const noCatalog = prebuiltProblem("no-catalog", "no catalog has been loaded yet; retry later", {}, retry);
  const shuttingDown = prebuiltProblem("shutting-down", "this instance is draining", {}, retry);
  const overloaded = prebuiltProblem(
    "overloaded",
    "the server is at capacity; retry shortly",
    {},
    { "Retry-After": "1" },
  );
  const tooLong = prebuiltProblem("uri-too-long", `the request target is over ${MAX_TARGET} characters`);
  const bodyOnGet = prebuiltProblem("invalid-request", "GET requests must not carry a body");
  const keyInQuery = prebuiltProblem(
    "invalid-request",
    "send API keys in the X-Api-Key header, never in the URL",
  );
  const noAdForKey = prebuiltProblem("no-fill", "no ad targets this country and language", {
    reason: "no_ad_for_country_lang",
  });
  const outsideHours = prebuiltProblem(
    "no-fill",
    "no ad for this country and language runs at this hour (UTC)",
    {
      reason: "outside_hours",
    },
  );
  const notFound = prebuiltProblem("not-found", "no such route");

  /** Policies of API-key clients with their own rate, built once per distinct rate. */
  const policies = new Map<number, RatePolicy>();
  const policyFor = (principal: Principal): RatePolicy | undefined => {
    if (principal.kind !== "key" || principal.rateLimit === undefined) return undefined;
    let policy = policies.get(principal.rateLimit);
    if (policy === undefined) {
      policy = makePolicy(principal.rateLimit);
      policies.set(principal.rateLimit, policy);
    }
    return policy;
  };

  const limitKey = (principal: Principal, req: Request, server: Server<undefined>): string => {
    if (principal.kind === "anonymous")
      return `ip:${deps.clientAddress(req, server.requestIP(req)?.address ?? null)}`;
    return `${principal.kind}:${principal.id}`;
  };

  const decide = (req: Request, server: Server<undefined>, rid: string, principal: Principal): Response => {
    let rateHeaders: Record<string, string> | null = null;
    if (deps.limiter !== null) {
      const taken = deps.limiter.take(limitKey(principal, req, server), deps.now(), policyFor(principal));
      rateHeaders = rateLimitHeaders(taken);
      if (!taken.ok) {
        metrics.rateLimited(RateLimit.client);
        return problem(
          "rate-limited",
          "too many requests; slow down",
          {},
          { ...rateHeaders, "X-Request-Id": rid },
        );
      }
    }
    const search = searchOf(req.url);
    const parsed = parseAdQuery(search);
    if (!parsed.ok) {
      if (search.includes("api_key=")) return keyInQuery(rid);
      return problem(
        "invalid-param",
        parsed.error.detail,
        { param: parsed.error.param },
        { "X-Request-Id": rid },
      );
    }
    const snapshot: Snapshot | null = deps.holder.current;
    if (snapshot === null) return noCatalog(rid);
    const { country, lang } = parsed.query;
    const started = performance.now();
    const found = eligible(snapshot, country, lang, utcHour(deps.now()));
    if (found.kind === "nofill") {
      const outside = found.reason === "outside_hours";
      metrics.decision(
        outside ? Decision.outside_hours : Decision.no_ad_for_country_lang,
        (performance.now() - started) / 1000,
      );
      return outside ? outsideHours(rid) : noAdForKey(rid);
    }
    const tick = snapshot.rotation[found.slot] ?? 0;
    snapshot.rotation[found.slot] = tick + 1;
    const chosen = choose(found.ads, tick);
    metrics.decision(Decision.fill, (performance.now() - started) / 1000);
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
      "X-Frame-Options": "DENY",
      "Content-Security-Policy": "frame-ancestors 'none'",
      "X-Request-Id": rid,
    };
    if (rateHeaders !== null) Object.assign(headers, rateHeaders);
    return new Response(chosen.body, { headers });
  };

  const afterAuth = (req: Request, server: Server<undefined>, rid: string, auth: AuthOutcome): Response => {
    if (auth.ok) return decide(req, server, rid, auth.principal);
    const ip = deps.clientAddress(req, server.requestIP(req)?.address ?? null);
    log.warn("authentication failed", { request_id: rid, reason: auth.reason, client: ip });
    metrics.authFailure(authFailureKind(auth.reason));
    if (deps.authFailures !== null) {
      const taken = deps.authFailures.take(`ip:${ip}`, deps.now());
      if (!taken.ok) {
        metrics.rateLimited(RateLimit.auth_failures);
        return problem(
          "rate-limited",
          "too many failed authentications from this address",
          {},
          {
            ...rateLimitHeaders(taken, "auth-failures"),
            "X-Request-Id": rid,
          },
        );
      }
    }
    const code = auth.status === 503 ? "auth-unavailable" : "unauthorized";
    return problem(code, auth.detail, {}, { ...auth.headers, "X-Request-Id": rid });
  };

  const withDeadline = (pending: Promise<Response>, rid: string): Promise<Response> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<Response>((resolve) => {
      timer = setTimeout(() => resolve(overloaded(rid)), deps.requestTimeoutMs);
    });
    return Promise.race([pending, late]).finally(() => clearTimeout(timer));
  };

  const adRequest: Handler = (req, server) => {
    const rid = deps.requestId(req);
    if (server.pendingRequests > deps.maxPending) {
      metrics.shed();
      return overloaded(rid);
    }
    if (req.url.length > MAX_TARGET + 512 || searchOf(req.url).length > MAX_TARGET) return tooLong(rid);
    if (hasBody(req)) return bodyOnGet(rid);
    const auth = deps.gate.check(req);
    if (auth instanceof Promise)
      return withDeadline(
        auth.then((a) => afterAuth(req, server, rid, a)),
        rid,
      );
    return afterAuth(req, server, rid, auth);
  };

  const healthz: Handler = (req) =>
    new Response("ok\n", { headers: { ...TEXT_HEADERS, "X-Request-Id": deps.requestId(req) } });

  const readyz: Handler = (req) => {
    const rid = deps.requestId(req);
    if (deps.draining()) return shuttingDown(rid);
    const snapshot = deps.holder.current;
    if (snapshot === null) return noCatalog(rid);
    const body = JSON.stringify({
      status: "ready",
      catalog_version: snapshot.version,
      ads: snapshot.ads.length,
    });
    return new Response(body, {
      headers: { ...SECURITY_HEADERS, "Content-Type": "application/json", "X-Request-Id": rid },
    });
  };

  const fallback: Handler = (req) => {
    const started = performance.now();
    const rid = deps.requestId(req);
    const q = req.url.indexOf("?");
    const pathStart = req.url.indexOf("/", req.url.indexOf("//") + 2);
    const path = req.url.slice(pathStart, q < 0 ? undefined : q);
    const allow = ALLOWED[path];
    const res =
      allow === undefined
        ? notFound(rid)
        : problem(
            "method-not-allowed",
            `this route answers ${allow} only`,
            {},
            { Allow: allow, "X-Request-Id": rid },
          );
    metrics.request(routeOfPath(path), res.status, (performance.now() - started) / 1000);
    return res;
  };

  /** One log line per request at debug level (with its id); nothing is added when debug is off. */
  const logged = (route: string, handler: Handler): Handler => {
    if (!log.enabled("debug")) return handler;
    const line = (req: Request, res: Response) =>
      log.debug("request", {
        request_id: res.headers.get("x-request-id"),
        route,
        method: req.method,
        status: res.status,
      });
    return (req, server) => {
      const out = handler(req, server);
      if (out instanceof Response) {
        line(req, out);
        return out;
      }
      return out.then((res) => {
        line(req, res);
        return res;
      });
    };
  };
  const wire = (route: Route, name: string, handler: Handler) => ({
    GET: logged(name, timed(metrics, route, handler)),
  });

  return {
    routes: {
      "/ad_request": wire(Route.ad_request, "ad_request", adRequest),
      "/healthz": wire(Route.healthz, "healthz", healthz),
      "/readyz": wire(Route.readyz, "readyz", readyz),
    },
    fallback: logged("fallback", fallback),
  };
}

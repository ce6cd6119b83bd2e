/**
 * The HTTP application as plain functions: `Bun.serve` only wires them (see server.ts).
 *
 * `/ad_request` stages, in order: query parse → snapshot read (once) → eligible → choose →
 * prebuilt body. No await, no I/O.
 * @module
 */
import type { Snapshot } from "../catalog/snapshot.ts";
import { choose, eligible } from "../decision/decide.ts";
import { utcHour } from "../decision/hours.ts";
import type { CatalogHolder } from "../sync/holder.ts";
import { JSON_HEADERS, SECURITY_HEADERS } from "./headers.ts";
import { prebuiltProblem, problem } from "./problem.ts";
import { parseAdQuery, searchOf } from "./query.ts";

export interface RouteDeps {
  readonly holder: CatalogHolder;
  /** Epoch milliseconds; injected so tests can move the clock. */
  readonly now: () => number;
  /** Seconds a client should wait before retrying a 503. */
  readonly retryAfterSeconds: number;
  /** True once shutdown began: readiness turns 503 so balancers stop sending. */
  readonly draining: () => boolean;
}

type Handler = (req: Request) => Response;

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
  const retry = { "Retry-After": String(deps.retryAfterSeconds) };
  const noCatalog = prebuiltProblem("no-catalog", "no catalog has been loaded yet; retry later", {}, retry);
  const shuttingDown = prebuiltProblem("shutting-down", "this instance is draining", {}, retry);
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

  const adRequest: Handler = (req) => {
    const parsed = parseAdQuery(searchOf(req.url));
    if (!parsed.ok) {
      return problem("invalid-param", parsed.error.detail, { param: parsed.error.param });
    }
    const snapshot: Snapshot | null = deps.holder.current;
    if (snapshot === null) return noCatalog();
    const { country, lang } = parsed.query;
    const found = eligible(snapshot, country, lang, utcHour(deps.now()));
    if (found.kind === "nofill") {
      return found.reason === "outside_hours" ? outsideHours() : noAdForKey();
    }
    const tick = snapshot.rotation[found.slot] ?? 0;
    snapshot.rotation[found.slot] = tick + 1;
    return new Response(choose(found.ads, tick).body, { headers: JSON_HEADERS });
  };

  const healthz: Handler = () => new Response("ok\n", { headers: TEXT_HEADERS });

  const readyz: Handler = () => {
    if (deps.draining()) return shuttingDown();
    const snapshot = deps.holder.current;
    if (snapshot === null) return noCatalog();
    const body = JSON.stringify({
      status: "ready",
      catalog_version: snapshot.version,
      ads: snapshot.ads.length,
    });
    return new Response(body, { headers: JSON_HEADERS });
  };

  const fallback: Handler = (req) => {
    const q = req.url.indexOf("?");
    const pathStart = req.url.indexOf("/", req.url.indexOf("//") + 2);
    const path = req.url.slice(pathStart, q < 0 ? undefined : q);
    const allow = ALLOWED[path];
    if (allow !== undefined) {
      return problem("method-not-allowed", `this route answers ${allow} only`, {}, { Allow: allow });
    }
    return notFound();
  };

  return {
    routes: { "/ad_request": { GET: adRequest }, "/healthz": { GET: healthz }, "/readyz": { GET: readyz } },
    fallback,
  };
}

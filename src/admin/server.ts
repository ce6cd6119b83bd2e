/**
 * The admin listener (issue 7): what is not for games, on its own port, bound to loopback by
 * default (ENGINEERING.md §5). Never on the public port.
 *
 *   GET /metrics          Prometheus text format 0.0.4
 *   GET /dashboard        the live page (dashboard.ts)
 *   GET /dashboard/data   JSON behind the page: metrics summary, last sync, catalog, served counts
 *   GET /catalog          JSON: version, loaded_at, ads (`q` filters, `limit` caps the list)
 *   GET /debug/decide     JSON: the decision for country+lang at an hour, and why each ad is or
 *                         is not eligible (explain.ts)
 *
 * Only GET and HEAD; other methods get 405 with `Allow`, other paths a 404 problem.
 * @module
 */
import type { Ad } from "../catalog/types.ts";
import { utcHour } from "../decision/hours.ts";
import { JSON_HEADERS, SECURITY_HEADERS } from "../http/headers.ts";
import { problem } from "../http/problem.ts";
import { parseAdQuery, searchOf, shown } from "../http/query.ts";
import type { CatalogHolder } from "../sync/holder.ts";
import type { Logger } from "../telemetry/log.ts";
import type { LastSync, Metrics } from "../telemetry/metrics.ts";
import { DASHBOARD_CSP, DASHBOARD_HTML } from "./dashboard.ts";
import { explain, explainForPlayer, type PlayerView, windowText } from "./explain.ts";
import type { ServedStats } from "./types.ts";

export interface AdminServerOptions {
  readonly listen: { readonly host: string; readonly port: number };
  readonly metrics: Metrics;
  readonly holder: CatalogHolder;
  /** Epoch milliseconds. */
  readonly now: () => number;
  /** The last sync attempt; defaults to the last one recorded with `metrics.sync()`. */
  readonly lastSync?: () => LastSync | null;
  /** Served and impression counts, or null where they are not kept. */
  readonly served?: () => ServedStats | null;
  readonly log: Logger;
  /**
   * For `/debug/decide?player_id=`: the player's history for the eligible ads (read only), with
   * the caps that apply. Absent: player_id is ignored.
   */
  readonly playerView?: (
    playerId: string,
    country: string,
    lang: string,
    hour: number,
  ) => Promise<PlayerView | null>;
}

export interface AdminServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Paths the admin server answers, all `GET, HEAD`. */
export const ADMIN_PATHS = [
  "/metrics",
  "/dashboard",
  "/dashboard/data",
  "/catalog",
  "/debug/decide",
] as const;

const ALLOW = "GET, HEAD";
const METRICS_HEADERS = Object.freeze({
  ...SECURITY_HEADERS,
  "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
});
const HTML_HEADERS = Object.freeze({
  ...SECURITY_HEADERS,
  "Content-Type": "text/html; charset=utf-8",
  "Content-Security-Policy": DASHBOARD_CSP,
  "Referrer-Policy": "no-referrer",
});

/** `/catalog` caps: the default list size, and the most a `limit` may ask for. */
export const CATALOG_DEFAULT_LIMIT = 10_000;
export const CATALOG_MAX_LIMIT = 1_000_000;

const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });

/** The values of one query parameter (percent-decoded), or null on malformed encoding. */
function params(search: string, name: string): string[] | null {
  const values: string[] = [];
  for (const part of search.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    try {
      const key = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replaceAll("+", " "));
      if (key !== name) continue;
      values.push(eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1).replaceAll("+", " ")));
    } catch {
      return null;
    }
  }
  return values;
}

type One = { ok: true; value: string | null } | { ok: false; response: Response };

/** At most one value of `name`: null when absent; a 400 when repeated or badly encoded. */
function oneParam(search: string, name: string): One {
  const values = params(search, name);
  if (values === null) {
    return {
      ok: false,
      response: problem("invalid-param", "malformed percent-encoding in the query", { param: name }),
    };
  }
  if (values.length > 1) {
    return {
      ok: false,
      response: problem("invalid-param", `${name} is given more than once`, { param: name }),
    };
  }
  return { ok: true, value: values[0] ?? null };
}

function adRow(ad: Ad) {
  return {
    id: ad.id,
    video_url: ad.video_url,
    country: ad.country,
    lang: ad.lang,
    start_hour: ad.start_hour,
    end_hour: ad.end_hour,
    runs: windowText(ad.start_hour, ad.end_hour),
  };
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

export function startAdminServer(options: AdminServerOptions): AdminServer {
  const { metrics, holder, now, log } = options;
  const lastSync = options.lastSync ?? (() => metrics.lastSync());
  const served = options.served ?? (() => null);

  const noCatalog = () => problem("no-catalog", "no catalog has been loaded yet", {}, { "Retry-After": "5" });

  /** Catalog gauges come from the holder at scrape time, so nothing else has to keep them. */
  const refreshCatalogGauges = (): void => {
    const snapshot = holder.current;
    if (snapshot !== null) metrics.catalog(snapshot.version, snapshot.ads.length);
  };

  const metricsRoute = (): Response => {
    refreshCatalogGauges();
    return new Response(metrics.render(now()), { headers: METRICS_HEADERS });
  };

  const dashboard = (): Response => new Response(DASHBOARD_HTML, { headers: HTML_HEADERS });

  const dashboardData = (): Response => {
    refreshCatalogGauges();
    const at = now();
    const snapshot = holder.current;
    const sync = lastSync();
    return json({
      now: at,
      metrics: metrics.summary(at),
      sync: sync === null ? null : { ...sync, age_seconds: Math.max(0, at - sync.at) / 1000 },
      catalog:
        snapshot === null
          ? null
          : {
              version: snapshot.version,
              ads: snapshot.ads.length,
              loaded_at: new Date(snapshot.loadedAt).toISOString(),
              age_seconds: Math.max(0, at - snapshot.loadedAt) / 1000,
            },
      served: served(),
    });
  };

  const catalog = (req: Request): Response => {
    const search = searchOf(req.url);
    const q = oneParam(search, "q");
    if (!q.ok) return q.response;
    const limitParam = oneParam(search, "limit");
    if (!limitParam.ok) return limitParam.response;
    let limit = CATALOG_DEFAULT_LIMIT;
    if (limitParam.value !== null) {
      if (!/^\d{1,7}$/.test(limitParam.value) || Number(limitParam.value) > CATALOG_MAX_LIMIT) {
        return problem(
          "invalid-param",
          `limit must be an integer from 0 to ${CATALOG_MAX_LIMIT}, got ${shown(limitParam.value)}`,
          { param: "limit" },
        );
      }
      limit = Number(limitParam.value);
    }
    const snapshot = holder.current;
    if (snapshot === null) return noCatalog();
    const needle = (q.value ?? "").trim().toLowerCase();
    const table = snapshot.ads;
    const matches: number[] = [];
    for (let i = 0; i < table.length; i++) {
      if (
        needle === "" ||
        `${table.id(i)} ${table.country(i)} ${table.lang(i)} ${table.videoUrl(i)}`
          .toLowerCase()
          .includes(needle)
      )
        matches.push(i);
    }
    return json({
      version: snapshot.version,
      loaded_at: new Date(snapshot.loadedAt).toISOString(),
      total: table.length,
      matched: matches.length,
      ads: matches.slice(0, limit).map((i) => adRow(table.at(i))),
    });
  };

  const decide = (req: Request): Response | Promise<Response> => {
    const search = searchOf(req.url);
    const parsed = parseAdQuery(search);
    if (!parsed.ok) return problem("invalid-param", parsed.error.detail, { param: parsed.error.param });
    const hourParam = oneParam(search, "hour");
    if (!hourParam.ok) return hourParam.response;
    let hour = utcHour(now());
    if (hourParam.value !== null) {
      if (!/^\d{1,2}$/.test(hourParam.value) || Number(hourParam.value) > 23) {
        return problem(
          "invalid-param",
          `hour must be an integer from 0 to 23, got ${shown(hourParam.value)}`,
          {
            param: "hour",
          },
        );
      }
      hour = Number(hourParam.value);
    }
    const snapshot = holder.current;
    if (snapshot === null) return noCatalog();
    const { country, lang, playerId } = parsed.query;
    if (playerId === null || options.playerView === undefined)
      return json(explain(snapshot, country, lang, hour));
    return options.playerView(playerId, country, lang, hour).then(
      (view) =>
        json(
          view === null
            ? explain(snapshot, country, lang, hour)
            : explainForPlayer(snapshot, country, lang, hour, view),
        ),
      () =>
        problem(
          "store-unavailable",
          "player history is unavailable; retry shortly",
          {},
          { "Retry-After": "1" },
        ),
    );
  };

  const fallback = (req: Request): Response => {
    const path = new URL(req.url).pathname;
    if ((ADMIN_PATHS as readonly string[]).includes(path)) {
      return problem("method-not-allowed", `this route answers ${ALLOW} only`, {}, { Allow: ALLOW });
    }
    return problem("not-found", "no such admin route");
  };

  if (!isLoopback(options.listen.host)) {
    log.warn("the admin listener is not on loopback: metrics, catalog and debug routes are exposed", {
      host: options.listen.host,
    });
  }

  const server = Bun.serve({
    hostname: options.listen.host,
    port: options.listen.port,
    // Never the development error page: it would show source and paths.
    development: false,
    idleTimeout: 30,
    routes: {
      "/metrics": { GET: metricsRoute },
      "/dashboard": { GET: dashboard },
      "/dashboard/data": { GET: dashboardData },
      "/catalog": { GET: catalog },
      "/debug/decide": { GET: decide },
    },
    fetch: fallback,
    error(error) {
      log.error("unhandled error in an admin handler", { error: String(error).slice(0, 200) });
      return problem("internal", "the admin server could not answer this request");
    },
  });

  const port = server.port ?? options.listen.port;
  const host = options.listen.host.includes(":") ? `[${options.listen.host}]` : options.listen.host;
  const url = `http://${host}:${port}`;
  log.info("admin listening", { url });

  let stopping: Promise<void> | null = null;
  return {
    url,
    port,
    stop: () => {
      stopping ??= server.stop(true).then(() => {});
      return stopping;
    },
  };
}

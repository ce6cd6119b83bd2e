/**
 * The catalog build off the serving thread: a `Worker` entry (started by offthread.ts). It
 * parses and validates a catalog text, hashes its version, packs the ads and indexes them. The columns and the index are typed arrays and a few strings,
 * posted back with their buffers transferred, so the serving thread receives a snapshot's data
 * without a million objects to copy or to collect (docs/performance.md, "Fourth session").
 *
 * The protocol (`BuildRequest` → `BuildReply`) is in offthread.ts.
 * @module
 */
import type { BuildReply, BuildRequest } from "./offthread.ts";
import { catalogVersion, indexOf } from "./snapshot.ts";
import { packAds } from "./table.ts";
import { parseCatalog } from "./validate.ts";

/** Skipped entries sent back to be logged one by one (the rest are counted). */
const ISSUES_SENT = 100;

declare const self: Worker;

function build(request: BuildRequest): { reply: BuildReply; transfer: ArrayBuffer[] } {
  const text = typeof request.text === "string" ? request.text : new TextDecoder().decode(request.text);
  const result = parseCatalog(text);
  const issues = result.issues.slice(0, ISSUES_SENT);
  const skipped = result.issues.length;
  if (!result.ok) {
    return {
      reply: {
        id: request.id,
        kind: "rejected",
        code: result.code,
        message: result.message,
        issues,
        skipped,
      },
      transfer: [],
    };
  }
  const version = catalogVersion(result.ads);
  const ads = result.ads.length;
  const columns = packAds(result.ads).columns;
  const index = indexOf(columns);
  const canonical = request.canonical ? new TextEncoder().encode(JSON.stringify({ ads: result.ads })) : null;
  const buffers = [
    columns.country,
    columns.lang,
    columns.hours,
    columns.plain,
    columns.pos,
    columns.extra,
    index.pool,
    index.ranges,
    canonical,
  ].flatMap((a) => (a === null ? [] : [a.buffer as ArrayBuffer]));
  return {
    reply: { id: request.id, kind: "built", version, ads, issues, skipped, columns, index, canonical },
    transfer: buffers,
  };
}

self.onmessage = (event: MessageEvent<BuildRequest>) => {
  const request = event.data;
  try {
    const { reply, transfer } = build(request);
    self.postMessage(reply, transfer);
  } catch (error) {
    const reply: BuildReply = { id: request.id, kind: "error", message: String(error).slice(0, 200) };
    self.postMessage(reply);
  }
};

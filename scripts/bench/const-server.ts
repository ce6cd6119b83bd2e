/**
 * The runtime's own ceiling: a minimal `Bun.serve` answering `/ad_request` with a constant ad
 * body and the same headers adsrv sends (a handler runs per request, as in adsrv, but makes no
 * decision). Compiled by the bench suite with `bun build --compile`.
 *
 *   bun-const <port>
 * @module
 */
import { JSON_HEADERS } from "../../src/http/headers.ts";

export const CONSTANT_BODY = JSON.stringify({
  id: "59d4fb16",
  video_url: "https://cdn.example-ads.com/v/us/space-racer-15s-59d4fb16.mp4",
});

if (import.meta.main) {
  const port = Number(process.argv[2] ?? "0");
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    development: false,
    routes: { "/ad_request": { GET: () => new Response(CONSTANT_BODY, { headers: JSON_HEADERS }) } },
    fetch: () => new Response("not found\n", { status: 404 }),
  });
  console.log(`bun-const listening on ${server.port}`);
}

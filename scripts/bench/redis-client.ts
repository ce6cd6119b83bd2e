/**
 * What one call through Bun's `RedisClient` costs the calling process, without HTTP: the
 * player-keyed decision script with 20 candidates as adsrv sends it (28 arguments), the same
 * script with three arguments per candidate (64, the layout before `encodeCandidates`), the
 * decision's 28 values to a no-op script as 28 arguments and packed in one (what an argument
 * costs), and PING.
 * 64 calls in flight, like the player bench's 64 connections.
 *
 *   node_modules/.bin/bun scripts/bench/redis-client.ts [--calls N]
 *
 * Starts a private redis-server on a free loopback port (test/fakes/redis.ts; never 6379).
 * Prints calls per second and client CPU (user + system) per call for each.
 * @module
 */
import { RedisClient } from "bun";
import { DECIDE_SCRIPT, encodeCandidates, LAST_STAMP_FIELD } from "../../src/store/players.ts";
import { startRedis } from "../../test/fakes/redis.ts";

const i = process.argv.indexOf("--calls");
const CALLS = i >= 0 ? Number(process.argv[i + 1]) : 100_000;
const IN_FLIGHT = 64;

const redis = await startRedis({ transport: "tcp" });
const client = new RedisClient(redis.url);
try {
  await client.connect();
  const sha = (await client.send("SCRIPT", ["LOAD", DECIDE_SCRIPT.text])) as string;
  const candidates = Array.from({ length: 20 }, (_, k) => ({ id: `ad-${k}`, cap: 3, windowMs: 86_400_000 }));
  const encoded = encodeCandidates(candidates, 30 * 86_400_000);
  const packed = (player: number) => [
    sha,
    "1",
    `adsrv:{p:${player}}`,
    String(Date.now()),
    encoded.keepMs,
    encoded.count,
    LAST_STAMP_FIELD,
    ...encoded.tail,
  ];
  // The old layout's argument count, sent to a script that ignores them (client cost only).
  const noop = (await client.send("SCRIPT", ["LOAD", "return 0"])) as string;
  const wide = [noop, "1", "adsrv:{p:x}", String(Date.now()), "0", "20"];
  for (const c of candidates) wide.push(c.id, String(c.cap), String(c.windowMs));

  const run = async (label: string, call: (k: number) => Promise<unknown>): Promise<void> => {
    let next = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const worker = async () => {
      while (next < CALLS) await call(next++);
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const cpu = process.cpuUsage(cpu0);
    const seconds = (performance.now() - t0) / 1000;
    const perCall = (cpu.user + cpu.system) / CALLS;
    console.log(
      `${label.padEnd(40)} ${Math.round(CALLS / seconds)
        .toLocaleString("en-US")
        .padStart(8)} calls/s  ${perCall.toFixed(1)} µs client CPU per call`,
    );
  };
  // What an argument costs the client: the decision's 28 values to a no-op script, as 28
  // arguments and packed into one.
  const spread = [noop, ...packed(0).slice(1)];
  const single = [noop, "1", "adsrv:{p:0}", packed(0).slice(3).join(",")];
  for (let round = 0; round < 2; round++) {
    await run("decision script, 28 arguments", (k) => client.send("EVALSHA", packed(k % 50_000)));
    await run("no-op script, 64 arguments", () => client.send("EVALSHA", wide));
    await run("no-op script, the 28 arguments", () => client.send("EVALSHA", spread));
    await run("no-op script, the 28 values in 1 argument", () => client.send("EVALSHA", single));
    await run("PING", () => client.send("PING", []));
  }
} finally {
  client.close();
  await redis.stop();
}

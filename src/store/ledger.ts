/**
 * The impression ledger in Redis: a token is counted once across the fleet with one
 * `SET key 1 NX PXAT <expiry>` (the key expires with the token). On a store failure the
 * in-process ledger counts instead (degraded: exact per instance only), never a 5xx.
 * @module
 */
import type { ImpressionLedger, LedgerResult } from "../impression/ledger.ts";
import type { StoreConnection } from "./redis.ts";
import { StoreError } from "./redis.ts";

/** `adsrv:{i:<token id>}`: one key per token; the hash tag spreads tokens across cluster slots. */
export function impressionKey(tokenId: string): string {
  return `adsrv:{i:${tokenId}}`;
}

export function redisLedger(
  conn: StoreConnection,
  fallback: ImpressionLedger,
  onError: (error: StoreError) => void,
): ImpressionLedger {
  return {
    async record(tokenId, expiresAtMs, nowMs): Promise<LedgerResult> {
      try {
        const reply = await conn.call("SET", [
          impressionKey(tokenId),
          "1",
          "NX",
          "PXAT",
          String(expiresAtMs),
        ]);
        return reply === null ? "replay" : "counted";
      } catch (error) {
        if (!(error instanceof StoreError)) throw error;
        onError(error);
        return fallback.record(tokenId, expiresAtMs, nowMs);
      }
    },
  };
}

/**
 * Per-player history for player-aware decisions: least-recently-served rotation and rolling
 * frequency caps. `decide()` checks and records in one atomic step, so a cap holds exactly even
 * when many instances serve the same player at once.
 *
 * - `memoryPlayerStore`: in-process, bounded (least recently active players evicted), expiring.
 * - `redisPlayerStore`: one Lua script per decision (one round trip, one cluster slot: every key
 *   carries the player's hash tag `{p:<hash>}`, and every key the script touches is in KEYS).
 *
 * Both stores keep, per player:
 * - the last-served stamp of each ad: `max(now, previous stamp + 1)`, so stamps are strictly
 *   increasing per player even when instances' clocks disagree by a few ms (the rotation order
 *   is the serve order, whatever the skew);
 * - for capped ads only, the times of the serves within the ad's rolling window (a serve at `t`
 *   counts while `t > now - windowMs`).
 *
 * Player ids are stored hashed only: SHA-256 (or HMAC-SHA-256 with a pepper shared by the
 * fleet), first 16 bytes in hex.
 * @module
 */
import {
  CAPPED,
  choosePlayerAd,
  type PlayerCandidate,
  type PlayerChoice,
  type PlayerHistory,
} from "../decision/player.ts";
import { defineScript, type StoreConnection, StoreError } from "./redis.ts";

export type { PlayerCandidate, PlayerChoice } from "../decision/player.ts";

export interface PlayerStore {
  /**
   * Picks among `candidates` (eligible ads in catalog order) for this player and records the
   * serve, atomically. The Redis store rejects with `StoreError` when Redis fails.
   */
  decide(playerId: string, candidates: readonly PlayerCandidate[], nowMs: number): Promise<PlayerChoice>;
  /** The player's history for these candidates, read only (for /debug/decide). */
  peek(playerId: string, candidates: readonly PlayerCandidate[], nowMs: number): Promise<PlayerHistory[]>;
}

/** How long a player's last-served stamps live after the last serve (default 30 days). */
export const DEFAULT_LAST_SERVED_TTL_MS = 30 * 24 * 3_600_000;

const PLAYER_ID = /^[\x21-\x7e]{1,128}$/;

/** 1 to 128 printable ASCII characters (0x21-0x7e), as `player_id` must be. */
export function isValidPlayerId(s: string): boolean {
  return PLAYER_ID.test(s);
}

/** The stored form of a player id: 32 hex digits of SHA-256 (HMAC-SHA-256 with a pepper). */
export function hashPlayerId(playerId: string, pepper?: string): string {
  const hasher =
    pepper === undefined || pepper === ""
      ? new Bun.CryptoHasher("sha256")
      : new Bun.CryptoHasher("sha256", pepper);
  return hasher.update(playerId).digest("hex").slice(0, 32);
}

/** Key prefix of one player: `adsrv:{p:<hash>}`, the braces being the cluster hash tag. */
export function playerKeyPrefix(hash: string): string {
  return `adsrv:{p:${hash}}`;
}

/** The player's hash of last-served stamps (field per ad id, plus `LAST_STAMP_FIELD`). */
export function lastServedKey(hash: string): string {
  return `${playerKeyPrefix(hash)}:last`;
}

/** The player's sorted set of serve times of one capped ad. */
export function windowKey(hash: string, adId: string): string {
  return `${playerKeyPrefix(hash)}:w:${adId}`;
}

/** Field holding the player's latest stamp; a space never occurs in an ad id. */
export const LAST_STAMP_FIELD = " t";

function checkCandidates(candidates: readonly PlayerCandidate[]): void {
  for (const c of candidates) {
    if (!Number.isSafeInteger(c.cap) || c.cap < 0) throw new RangeError(`bad cap for ad ${c.id}`);
    if (!Number.isSafeInteger(c.windowMs) || c.windowMs < 1)
      throw new RangeError(`bad window for ad ${c.id}`);
  }
}

function checkPlayer(playerId: string): void {
  if (!isValidPlayerId(playerId)) throw new TypeError("invalid player id");
}

// --- in memory ----------------------------------------------------------------------------------

export interface MemoryPlayerStoreOptions {
  /** Players kept; the least recently served is evicted beyond this. */
  readonly maxPlayers: number;
  readonly lastServedTtlMs?: number;
}

interface MemoryPlayer {
  readonly last: Map<string, number>;
  /** Serve times per capped ad, ascending. */
  readonly serves: Map<string, number[]>;
  stamp: number;
  /** Last serve (real time), and how long after it this player's history matters. */
  servedAt: number;
  keepMs: number;
}

export interface MemoryPlayerStore extends PlayerStore {
  /** `decide` without the promise, for the in-process path (no I/O). */
  decideNow(playerId: string, candidates: readonly PlayerCandidate[], nowMs: number): PlayerChoice;
  /** Players held now (for tests and metrics). */
  size(): number;
}

export function memoryPlayerStore(options: MemoryPlayerStoreOptions): MemoryPlayerStore {
  const maxPlayers = options.maxPlayers;
  if (!Number.isSafeInteger(maxPlayers) || maxPlayers < 1) throw new RangeError("maxPlayers must be ≥ 1");
  const ttl = options.lastServedTtlMs ?? DEFAULT_LAST_SERVED_TTL_MS;
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new RangeError("lastServedTtlMs must be ≥ 1 ms");
  // Insertion order = least recently served first (re-inserted on every serve).
  const players = new Map<string, MemoryPlayer>();

  const expired = (p: MemoryPlayer, now: number): boolean => now - p.servedAt >= p.keepMs;

  const sweep = (now: number): void => {
    for (const [key, p] of players) {
      if (players.size > maxPlayers || expired(p, now)) players.delete(key);
      else break;
    }
  };

  const decideNow = (
    playerId: string,
    candidates: readonly PlayerCandidate[],
    nowMs: number,
  ): PlayerChoice => {
    checkPlayer(playerId);
    checkCandidates(candidates);
    const key = hashPlayerId(playerId);
    let player = players.get(key);
    if (player !== undefined && expired(player, nowMs)) {
      players.delete(key);
      player = undefined;
    }
    const history = candidates.map((c) => {
      let inWindow = 0;
      if (c.cap > 0 && player !== undefined) {
        const times = player.serves.get(c.id);
        if (times !== undefined) {
          const kept = times.filter((t) => t > nowMs - c.windowMs);
          if (kept.length === 0) player.serves.delete(c.id);
          else player.serves.set(c.id, kept);
          inWindow = kept.length;
        }
      }
      return { lastServedMs: player?.last.get(c.id) ?? null, servedInWindow: inWindow };
    });
    const choice = choosePlayerAd(candidates, history);
    if (choice.kind === "capped") return choice;
    const chosen = candidates[choice.index] as PlayerCandidate;
    if (player === undefined) {
      player = { last: new Map(), serves: new Map(), stamp: -Infinity, servedAt: nowMs, keepMs: ttl };
    }
    player.stamp = player.stamp >= nowMs ? player.stamp + 1 : nowMs;
    player.last.set(chosen.id, player.stamp);
    if (chosen.cap > 0) {
      const times = player.serves.get(chosen.id);
      if (times === undefined) player.serves.set(chosen.id, [nowMs]);
      else times.push(nowMs);
      if (chosen.windowMs > player.keepMs) player.keepMs = chosen.windowMs;
    }
    player.servedAt = nowMs;
    players.delete(key);
    players.set(key, player);
    sweep(nowMs);
    return choice;
  };

  const peekNow = (
    playerId: string,
    candidates: readonly PlayerCandidate[],
    nowMs: number,
  ): PlayerHistory[] => {
    const player = players.get(hashPlayerId(playerId));
    const live = player !== undefined && !expired(player, nowMs) ? player : undefined;
    return candidates.map((c) => ({
      lastServedMs: live?.last.get(c.id) ?? null,
      servedInWindow: (live?.serves.get(c.id) ?? []).filter((t) => t > nowMs - c.windowMs).length,
    }));
  };

  return {
    size: () => players.size,
    decideNow,
    decide: async (playerId, candidates, nowMs) => decideNow(playerId, candidates, nowMs),
    peek: async (playerId, candidates, nowMs) => peekNow(playerId, candidates, nowMs),
  };
}

// --- in Redis -----------------------------------------------------------------------------------

/**
 * Check and record in one step. Same rule as `choosePlayerAd` (src/decision/player.ts).
 * KEYS[1]: the player's last-served hash; KEYS[1 + i]: the window set of candidate i.
 * ARGV: now, last-served TTL (ms), n, then per candidate: id, cap, window (ms).
 * Returns the 0-based index chosen, or -1 when every candidate is capped.
 */
export const DECIDE_SCRIPT = defineScript(`
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local lastKey = KEYS[1]
local lasts = {}
-- HMGET in slices: unpack() has a stack limit of a few thousand values.
for from = 1, n + 1, 1000 do
  local fields = {}
  for i = from, math.min(from + 999, n + 1) do
    if i <= n then fields[#fields + 1] = ARGV[1 + i * 3] else fields[#fields + 1] = ${JSON.stringify(LAST_STAMP_FIELD)} end
  end
  local got = redis.call('HMGET', lastKey, unpack(fields))
  for j = 1, #fields do lasts[from + j - 1] = got[j] end
end
local best, bestLast = 0, 0
for i = 1, n do
  local a = 1 + i * 3
  local cap = tonumber(ARGV[a + 1])
  local open = true
  if cap > 0 then
    local wk = KEYS[1 + i]
    redis.call('ZREMRANGEBYSCORE', wk, '-inf', now - tonumber(ARGV[a + 2]))
    open = redis.call('ZCARD', wk) < cap
  end
  if open then
    local last = lasts[i]
    if not last then
      best = i
      break
    end
    last = tonumber(last)
    if best == 0 or last < bestLast then
      best, bestLast = i, last
    end
  end
end
if best == 0 then return -1 end
local stamp = now
local prev = lasts[n + 1]
if prev then
  prev = tonumber(prev)
  if prev >= stamp then stamp = prev + 1 end
end
local s = string.format('%.0f', stamp)
local a = 1 + best * 3
redis.call('HSET', lastKey, ARGV[a], s, ${JSON.stringify(LAST_STAMP_FIELD)}, s)
redis.call('PEXPIRE', lastKey, ARGV[2])
if tonumber(ARGV[a + 1]) > 0 then
  local wk = KEYS[1 + best]
  redis.call('ZADD', wk, ARGV[1], s)
  redis.call('PEXPIRE', wk, ARGV[a + 2])
end
return best - 1
`);

/**
 * Read-only: the last-served stamps and the serves inside each window.
 * KEYS[1]: last-served hash; KEYS[1 + i]: window set of candidate i. ARGV: now, then per
 * candidate: id, window (ms). Returns a flat list: last (or false), count, per candidate.
 */
const PEEK_SCRIPT = defineScript(`
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS - 1 do
  local a = i * 2
  out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[a]) or ''
  out[#out + 1] = redis.call('ZCOUNT', KEYS[1 + i], '(' .. (now - tonumber(ARGV[a + 1])), '+inf')
end
return out
`);

export interface RedisPlayerStoreOptions {
  /** Default 30 days; keep it at least the largest frequency window. */
  readonly lastServedTtlMs?: number;
  /** Secret shared by the fleet: player ids are then hashed with HMAC-SHA-256. */
  readonly pepper?: string;
  /** Deadline of the decision's round trip (default: the connection's). */
  readonly timeoutMs?: number;
}

export function redisPlayerStore(conn: StoreConnection, options: RedisPlayerStoreOptions = {}): PlayerStore {
  const ttl = options.lastServedTtlMs ?? DEFAULT_LAST_SERVED_TTL_MS;
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new RangeError("lastServedTtlMs must be ≥ 1 ms");
  const callOptions = options.timeoutMs === undefined ? undefined : { timeoutMs: options.timeoutMs };
  return {
    async decide(playerId, candidates, nowMs) {
      checkPlayer(playerId);
      checkCandidates(candidates);
      if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError("nowMs must be a whole ms count");
      if (candidates.length === 0) return CAPPED;
      const hash = hashPlayerId(playerId, options.pepper);
      const keys: string[] = [lastServedKey(hash)];
      const args: string[] = [String(nowMs), "", String(candidates.length)];
      let keepMs = ttl;
      for (const c of candidates) {
        keys.push(windowKey(hash, c.id));
        args.push(c.id, String(c.cap), String(c.windowMs));
        if (c.cap > 0 && c.windowMs > keepMs) keepMs = c.windowMs;
      }
      // The last-served hash outlives every window it may be needed with.
      args[1] = String(keepMs);
      const reply = await conn.eval(DECIDE_SCRIPT, keys, args, callOptions);
      if (reply === -1) return CAPPED;
      if (typeof reply !== "number" || !Number.isInteger(reply) || reply < 0 || reply >= candidates.length) {
        throw new StoreError("reply", "unexpected reply from the decision script");
      }
      return { kind: "chosen", index: reply };
    },
    async peek(playerId, candidates, nowMs) {
      checkPlayer(playerId);
      const hash = hashPlayerId(playerId, options.pepper);
      const keys = [lastServedKey(hash), ...candidates.map((c) => windowKey(hash, c.id))];
      const args = [String(nowMs), ...candidates.flatMap((c) => [c.id, String(c.windowMs)])];
      const reply = (await conn.eval(PEEK_SCRIPT, keys, args, callOptions)) as unknown[];
      return candidates.map((_, i) => {
        const last = reply[i * 2];
        return {
          lastServedMs: typeof last === "string" && last !== "" ? Number(last) : null,
          servedInWindow: Number(reply[i * 2 + 1] ?? 0),
        };
      });
    },
  };
}

/**
 * Per-player history for player-aware decisions: least-recently-served rotation and rolling
 * frequency caps. `decide()` checks and records in one atomic step, so a cap holds exactly even
 * when many instances serve the same player at once.
 *
 * - `memoryPlayerStore`: in-process, bounded (least recently active players evicted), expiring.
 * - `redisPlayerStore`: one Lua script per decision (one round trip) on one key per player, a
 *   hash named with the player's cluster hash tag `{p:<hash>}` (see `playerKey`).
 *
 * Both stores keep, per player:
 * - the last-served stamp of each ad: `max(now, previous stamp + 1)`, so stamps are strictly
 *   increasing per player even when instances' clocks disagree by a few ms (the rotation order
 *   is the serve order, whatever the skew);
 * - for capped ads only, the times of the serves within the ad's rolling window (a serve at `t`
 *   counts while `t > now - windowMs`); Redis keeps the latest `cap` of them, which is all the
 *   check needs.
 *
 * Player ids are stored hashed only: SHA-256 (or HMAC-SHA-256 with a pepper shared by the
 * fleet), first 16 bytes in hex.
 * @module
 */

import { HmacSha256 } from "../crypto/hmac.ts";
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
  if (pepper === undefined || pepper === "") return Bun.SHA256.hash(playerId, "hex").slice(0, 32);
  let hmac = peppered.get(pepper);
  if (hmac === undefined) {
    hmac = new HmacSha256(pepper);
    if (peppered.size < 4) peppered.set(pepper, hmac);
  }
  return hmac.digest(playerId).toString("hex", 0, 16);
}

/** Keyed hashers by pepper (one per fleet; a few for tests). */
const peppered = new Map<string, HmacSha256>();

/**
 * The one key of a player: `adsrv:{p:<hash>}`, a hash (the braces are the cluster hash tag).
 * A field per served ad, named by its id: the last stamp, and for a capped ad `|` and its latest
 * serve times (epoch ms, comma-separated, at most its cap): `1764400000123|1764390000000,…`.
 * Plus `LAST_STAMP_FIELD`, the player's latest stamp.
 */
export function playerKey(hash: string): string {
  return `adsrv:{p:${hash}}`;
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
 * KEYS[1]: the player's hash (see `playerKey`). ARGV (see `encodeCandidates`): now, the hash's
 * TTL (ms), n, the latest-stamp field, the n candidate ids (in one run, so HMGET takes them as
 * they are), the candidates' policy codes, the code width, then cap and window (ms) of each
 * distinct policy. Returns the 0-based index chosen, or -1 when every candidate is capped.
 * At most four calls whatever the number of candidates (HLEN; HGETALL or HMGET unless the
 * player is new, HMGET in slices past 999 candidates; HSET; PEXPIRE, with GT on an existing hash
 * so the expiry only grows), numbers parsed only where needed: a sorted set per capped ad (two
 * calls per candidate) and `tonumber` on every argument measured 40 µs of Redis time per
 * decision with 20 candidates, and three arguments per candidate cost adsrv 3 µs per decision
 * in the client (scripts/bench/redis-client.ts).
 */
export const DECIDE_SCRIPT = defineScript(`
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local key = KEYS[1]
local codes, width = ARGV[5 + n], tonumber(ARGV[6 + n])
-- Candidate i's policy: 0 when uncapped, else k, whose cap and window are ARGV[5 + n + 2k] and
-- ARGV[6 + n + 2k]. Codes are \`width\` characters per candidate, base 94 from '!'.
local function policy(i)
  local at, k = (i - 1) * width, 0
  for b = 1, width do k = k * 94 + string.byte(codes, at + b) - 33 end
  return k
end
-- got[1]: the latest stamp; got[1 + i]: candidate i's "stamp" or "stamp|t1,t2,..." (nil or
-- false when never served). Read the cheapest way for the hash's size: nothing for a new
-- player, the whole (small) hash, or HMGET of the fields (in slices: unpack() has a stack
-- limit of a few thousand values). Each value crossing into Lua costs about 0.25 µs.
local got = {}
local size = redis.call('HLEN', key)
if size > 0 and size <= (n + 1) / 2 then
  local all = redis.call('HGETALL', key)
  local map = {}
  for j = 1, #all, 2 do map[all[j]] = all[j + 1] end
  for i = 0, n do got[1 + i] = map[ARGV[4 + i]] end
elseif size > 0 then
  for from = 4, 4 + n, 1000 do
    local part = redis.call('HMGET', key, unpack(ARGV, from, math.min(from + 999, 4 + n)))
    for j = 1, #part do got[from - 4 + j] = part[j] end
  end
end
-- Least recently served first. A never-served candidate is the oldest (the first in catalog
-- order wins, and none of its serves can count against a cap). Else the served ones by last
-- stamp, ties in catalog order, the first not capped: usually the oldest, so serve times are
-- parsed for one candidate, not all of them (and stamps only when every candidate was served).
local lasts, best = {}, 0
for i = 1, n do
  if not got[1 + i] then
    best = i
    break
  end
end
if best == 0 then
  for i = 1, n do
    local v = got[1 + i]
    local bar = string.find(v, '|', 1, true)
    lasts[i] = tonumber(bar and string.sub(v, 1, bar - 1) or v)
  end
end
-- Whether candidate i is under its cap, and its serve times inside the window (nil: uncapped).
local function check(i)
  local k = policy(i)
  if k == 0 then return true, nil end
  local recent = {}
  local v = got[1 + i]
  local bar = v and string.find(v, '|', 1, true)
  if bar then
    -- A serve at t counts while t > now - window.
    local from = now - tonumber(ARGV[6 + n + 2 * k])
    for t in string.gmatch(string.sub(v, bar + 1), '%d+') do
      if tonumber(t) > from then recent[#recent + 1] = t end
    end
  end
  return #recent < tonumber(ARGV[5 + n + 2 * k]), recent
end
local bestRecent = nil
if best > 0 then
  local _, recent = check(best)
  bestRecent = recent
else
  local oldest = 1
  for i = 2, n do
    if lasts[i] < lasts[oldest] then oldest = i end
  end
  local open, recent = check(oldest)
  if open then
    best, bestRecent = oldest, recent
  else
    local order = {}
    for i = 1, n do order[i] = i end
    table.sort(order, function(a, b)
      if lasts[a] ~= lasts[b] then return lasts[a] < lasts[b] end
      return a < b
    end)
    for _, i in ipairs(order) do
      open, recent = check(i)
      if open then
        best, bestRecent = i, recent
        break
      end
    end
  end
end
if best == 0 then return -1 end
local stamp = now
local prev = got[1]
if prev then
  prev = tonumber(prev)
  if prev >= stamp then stamp = prev + 1 end
end
local s = stamp == now and ARGV[1] or string.format('%.0f', stamp)
local value = s
local k = policy(best)
if k > 0 then
  -- Only the latest cap serves matter: older ones cannot tip the count.
  local recent = bestRecent or {}
  recent[#recent + 1] = ARGV[1]
  value = s .. '|' .. table.concat(recent, ',', math.max(1, #recent - tonumber(ARGV[5 + n + 2 * k]) + 1))
else
  -- Uncapped now: serve times recorded while it was capped stay, should its cap come back.
  local old = got[1 + best]
  local bar = old and string.find(old, '|', 1, true)
  if bar then value = s .. string.sub(old, bar) end
end
redis.call('HSET', key, ARGV[4 + best], value, ARGV[4], s)
-- The expiry only grows: a decision without a long-window ad must not cut short the history
-- another list's long window still needs. An existing hash always has an expiry (every write
-- sets one), so GT (Redis 7.0+) moves it only forward, in one call instead of PTTL + PEXPIRE.
if size > 0 then redis.call('PEXPIRE', key, ARGV[2], 'GT') else redis.call('PEXPIRE', key, ARGV[2]) end
return best - 1
`);

/**
 * Read-only: the last-served stamps and the serves inside each window.
 * KEYS[1]: the player's hash. ARGV: now, then per candidate: id, window (ms). Returns a flat
 * list: last (or ''), count, per candidate.
 */
const PEEK_SCRIPT = defineScript(`
local now = tonumber(ARGV[1])
local out = {}
for i = 1, (#ARGV - 1) / 2 do
  local a = i * 2
  local v = redis.call('HGET', KEYS[1], ARGV[a])
  local last, count = '', 0
  if v then
    local bar = string.find(v, '|', 1, true)
    last = bar and string.sub(v, 1, bar - 1) or v
    if bar then
      local from = now - tonumber(ARGV[a + 1])
      for t in string.gmatch(string.sub(v, bar + 1), '%d+') do
        if tonumber(t) > from then count = count + 1 end
      end
    end
  end
  out[#out + 1] = last
  out[#out + 1] = count
end
return out
`);

/** The candidates' part of the decision script's arguments. */
export interface EncodedCandidates {
  /** The player's hash TTL: the last-served TTL, or the largest window of a capped candidate. */
  readonly keepMs: string;
  readonly count: string;
  /** ids, policy codes, code width, then cap and window of each distinct policy. */
  readonly tail: readonly string[];
}

const CODE_BASE = 94;
const CODE_ZERO = 33; // "!"

/**
 * Candidates as few arguments: each argument costs the client about 0.1 µs, so the caps and
 * windows (usually one or two distinct pairs) go as a policy table plus one code per candidate
 * (policy 0 = uncapped; base 94 in printable ASCII, as wide as the table needs). Checks the
 * candidates. Candidates are immutable: the store caches this per candidates array.
 */
export function encodeCandidates(
  candidates: readonly PlayerCandidate[],
  lastServedTtlMs: number,
): EncodedCandidates {
  checkCandidates(candidates);
  const policies = new Map<string, number>();
  const table: string[] = [];
  const ids: string[] = [];
  const index: number[] = [];
  let keepMs = lastServedTtlMs;
  for (const c of candidates) {
    ids.push(c.id);
    if (c.cap === 0) {
      index.push(0);
      continue;
    }
    const key = `${c.cap}:${c.windowMs}`;
    let k = policies.get(key);
    if (k === undefined) {
      k = policies.size + 1;
      policies.set(key, k);
      table.push(String(c.cap), String(c.windowMs));
    }
    index.push(k);
    if (c.windowMs > keepMs) keepMs = c.windowMs;
  }
  let width = 1;
  while (CODE_BASE ** width <= policies.size) width++;
  let codes = "";
  for (const k of index) {
    let code = "";
    for (let b = 0, rest = k; b < width; b++, rest = Math.floor(rest / CODE_BASE)) {
      code = String.fromCharCode(CODE_ZERO + (rest % CODE_BASE)) + code;
    }
    codes += code;
  }
  return {
    keepMs: String(keepMs),
    count: String(candidates.length),
    tail: [...ids, codes, String(width), ...table],
  };
}

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
  // The router passes the same candidates array for the same eligible ads (see routes.ts).
  const encodedOf = new WeakMap<readonly PlayerCandidate[], EncodedCandidates>();
  return {
    async decide(playerId, candidates, nowMs) {
      checkPlayer(playerId);
      if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError("nowMs must be a whole ms count");
      if (candidates.length === 0) return CAPPED;
      const keys = [playerKey(hashPlayerId(playerId, options.pepper))];
      let encoded = encodedOf.get(candidates);
      if (encoded === undefined) {
        encoded = encodeCandidates(candidates, ttl);
        encodedOf.set(candidates, encoded);
      }
      const args = [String(nowMs), encoded.keepMs, encoded.count, LAST_STAMP_FIELD, ...encoded.tail];
      const reply = await conn.eval(DECIDE_SCRIPT, keys, args, callOptions);
      if (reply === -1) return CAPPED;
      if (typeof reply !== "number" || !Number.isInteger(reply) || reply < 0 || reply >= candidates.length) {
        throw new StoreError("reply", "unexpected reply from the decision script");
      }
      return { kind: "chosen", index: reply };
    },
    async peek(playerId, candidates, nowMs) {
      checkPlayer(playerId);
      const keys = [playerKey(hashPlayerId(playerId, options.pepper))];
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

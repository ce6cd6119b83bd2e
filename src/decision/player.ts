/**
 * The player-aware choice: pure, synchronous, no clock and no I/O. The stores gather each
 * candidate's history for one player (src/store/players.ts) and apply this rule; the Redis
 * store's Lua script implements the very same rule (a test runs both on the same histories).
 *
 * Rule: among the candidates the player has not capped (cap 0 = no cap; capped when
 * `servedInWindow >= cap`), the one served least recently; never served counts as oldest;
 * ties go to the earlier candidate (catalog order).
 * @module
 */

export interface PlayerCandidate {
  readonly id: string;
  /** Serves allowed per rolling window; 0 = no cap. */
  readonly cap: number;
  /** The rolling window in ms (≥ 1). */
  readonly windowMs: number;
}

export interface PlayerHistory {
  /** When the player was last served this ad (any monotonic per-player stamp), or null if never. */
  readonly lastServedMs: number | null;
  /** Serves of this ad to this player within the window ending now. */
  readonly servedInWindow: number;
}

export type PlayerChoice = { readonly kind: "chosen"; readonly index: number } | { readonly kind: "capped" };

export const CAPPED: PlayerChoice = Object.freeze({ kind: "capped" });

/** Whether a candidate with this cap and history may be served again now. */
export function isCapped(cap: number, servedInWindow: number): boolean {
  return cap > 0 && servedInWindow >= cap;
}

/**
 * Picks the candidate to serve. `history[i]` belongs to `candidates[i]`; a missing entry counts
 * as never served. Returns `capped` when every candidate is capped (or there is none).
 */
export function choosePlayerAd(
  candidates: readonly PlayerCandidate[],
  history: readonly PlayerHistory[],
): PlayerChoice {
  let best = -1;
  let bestLast = 0;
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i] as PlayerCandidate;
    const h = history[i];
    if (h !== undefined && isCapped(candidate.cap, h.servedInWindow)) continue;
    const last = h?.lastServedMs ?? null;
    // Never served is the oldest possible; the first such candidate wins outright.
    if (last === null) return { kind: "chosen", index: i };
    if (best === -1 || last < bestLast) {
      best = i;
      bestLast = last;
    }
  }
  return best === -1 ? CAPPED : { kind: "chosen", index: best };
}

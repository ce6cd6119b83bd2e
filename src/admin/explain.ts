/**
 * `/debug/decide`: the decision a request would get, and for every ad of the country and
 * language why it is or is not eligible at that hour. Pure: the caller passes the snapshot and
 * the hour; the rotation counter is read, never advanced.
 * @module
 */
import { bucketAds, type Snapshot } from "../catalog/snapshot.ts";
import { choose, eligible, type NoFillReason } from "../decision/decide.ts";
import { hourMask, isAvailable } from "../decision/hours.ts";
import { choosePlayerAd, isCapped, type PlayerCandidate, type PlayerHistory } from "../decision/player.ts";

export type EligibilityReason = "outside_hours" | "capped" | "chosen" | "eligible";

export interface AdExplanation {
  readonly id: string;
  readonly eligible: boolean;
  readonly reason: EligibilityReason;
  /** The UTC window the ad runs in, e.g. `18:00–01:59 UTC`. */
  readonly runs: string;
  readonly start_hour: number;
  readonly end_hour: number;
  readonly video_url: string;
  /** With a player: serves in the ad's cap window, the cap (0 = none), and the last serve. */
  readonly player?: {
    readonly served_in_window: number;
    readonly cap: number;
    readonly last_served: string | null;
  };
}

export type ExplainedDecision =
  | { readonly outcome: "fill"; readonly id: string; readonly video_url: string }
  | { readonly outcome: "nofill"; readonly reason: NoFillReason | "frequency_capped" };

export interface Explanation {
  readonly country: string;
  readonly lang: string;
  readonly hour: number;
  readonly catalog_version: string;
  readonly decision: ExplainedDecision;
  /** Every ad of this country and language, in catalog order. */
  readonly ads: readonly AdExplanation[];
}

const pad = (h: number): string => String(h).padStart(2, "0");

/** The hours an ad with this window runs, as text: `06:00–13:59 UTC`, `all day`, `never`. */
export function windowText(start: number, end: number): string {
  const mask = hourMask(start, end);
  if (mask === 0) return "never";
  if (mask === 0xffffff) return "all day (00:00–23:59 UTC)";
  // A window is one run of hours modulo 24: it begins at an hour whose predecessor is off.
  let first = 0;
  while (!(mask & (1 << first) && !(mask & (1 << ((first + 23) % 24))))) first++;
  let last = first;
  while (mask & (1 << ((last + 1) % 24))) last = (last + 1) % 24;
  return `${pad(first)}:00–${pad(last)}:59 UTC`;
}

export function explain(snapshot: Snapshot, country: string, lang: string, hour: number): Explanation {
  const found = eligible(snapshot, country, lang, hour);
  let chosenId: string | null = null;
  let decision: ExplainedDecision;
  const bucket = snapshot.index.get(country)?.get(lang);
  const ads = bucket === undefined ? [] : bucketAds(bucket).map((i) => snapshot.ads.at(i));
  if (found.kind === "ads") {
    const chosen = choose(found.ads, snapshot.rotation[found.slot] ?? 0);
    chosenId = snapshot.ads.id(chosen);
    decision = { outcome: "fill", id: chosenId, video_url: snapshot.ads.videoUrl(chosen) };
  } else {
    decision = { outcome: "nofill", reason: found.reason };
  }
  return {
    country,
    lang,
    hour,
    catalog_version: snapshot.version,
    decision,
    ads: ads.map((ad) => {
      const on = isAvailable(ad.start_hour, ad.end_hour, hour);
      return {
        id: ad.id,
        eligible: on,
        reason: !on ? "outside_hours" : ad.id === chosenId ? "chosen" : "eligible",
        runs: windowText(ad.start_hour, ad.end_hour),
        start_hour: ad.start_hour,
        end_hour: ad.end_hour,
        video_url: ad.video_url,
      };
    }),
  };
}

/** A player's view of the eligible ads: caps and last serves, from the player store. */
export interface PlayerView {
  readonly candidates: readonly PlayerCandidate[];
  readonly history: readonly PlayerHistory[];
}

/**
 * `explain` for a player: the eligible ads are those of `view.candidates` (in catalog order),
 * the decision is `choosePlayerAd` over their history, and capped ads say so.
 */
export function explainForPlayer(
  snapshot: Snapshot,
  country: string,
  lang: string,
  hour: number,
  view: PlayerView,
): Explanation {
  const base = explain(snapshot, country, lang, hour);
  if (view.candidates.length === 0) return base;
  const choice = choosePlayerAd(view.candidates, view.history);
  const byId = new Map(view.candidates.map((c, i) => [c.id, { c, h: view.history[i] }]));
  const chosenId = choice.kind === "chosen" ? view.candidates[choice.index]?.id : undefined;
  const ads = base.ads.map((ad): AdExplanation => {
    const seen = byId.get(ad.id);
    if (seen === undefined || seen.h === undefined) return ad;
    const capped = isCapped(seen.c.cap, seen.h.servedInWindow);
    const player = {
      served_in_window: seen.h.servedInWindow,
      cap: seen.c.cap,
      last_served: seen.h.lastServedMs === null ? null : new Date(seen.h.lastServedMs).toISOString(),
    };
    const reason: EligibilityReason = capped ? "capped" : ad.id === chosenId ? "chosen" : "eligible";
    return { ...ad, eligible: !capped, reason, player };
  });
  const chosen = ads.find((a) => a.id === chosenId);
  const decision: ExplainedDecision =
    chosen === undefined
      ? { outcome: "nofill", reason: "frequency_capped" }
      : { outcome: "fill", id: chosen.id, video_url: chosen.video_url };
  return { ...base, decision, ads };
}

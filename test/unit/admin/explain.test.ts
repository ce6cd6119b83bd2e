import { describe, expect, test } from "bun:test";
import { explain, windowText } from "../../../src/admin/explain.ts";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import type { Ad } from "../../../src/catalog/types.ts";
import { eligible } from "../../../src/decision/decide.ts";
import { isAvailable } from "../../../src/decision/hours.ts";

const ad = (id: string, country: string, lang: string, start: number, end: number): Ad => ({
  id,
  video_url: `https://cdn.example.com/${id}.mp4`,
  country,
  lang,
  start_hour: start,
  end_hour: end,
});

/** The hours a window text names, read back. */
function hoursOf(text: string): Set<number> {
  if (text === "never") return new Set();
  if (text.startsWith("all day")) return new Set(Array.from({ length: 24 }, (_, h) => h));
  const m = /^(\d\d):00–(\d\d):59 UTC$/.exec(text);
  if (m === null) throw new Error(`unexpected window text ${text}`);
  const out = new Set<number>();
  for (let h = Number(m[1]); ; h = (h + 1) % 24) {
    out.add(h);
    if (h === Number(m[2])) break;
  }
  return out;
}

describe("windowText", () => {
  test("names exactly the hours isAvailable admits, for every start and end", () => {
    for (let start = 0; start <= 24; start++) {
      for (let end = 0; end <= 24; end++) {
        const hours = hoursOf(windowText(start, end));
        for (let h = 0; h < 24; h++)
          expect([start, end, h, hours.has(h)]).toEqual([start, end, h, isAvailable(start, end, h)]);
      }
    }
  });

  test("reads like an operator expects", () => {
    expect(windowText(6, 12)).toBe("06:00–11:59 UTC");
    expect(windowText(22, 3)).toBe("22:00–02:59 UTC");
    expect(windowText(18, 0)).toBe("18:00–23:59 UTC");
    expect(windowText(0, 0)).toBe("all day (00:00–23:59 UTC)");
    expect(windowText(5, 5)).toBe("all day (00:00–23:59 UTC)");
    expect(windowText(0, 1)).toBe("00:00–00:59 UTC");
  });
});

describe("explain", () => {
  const snapshot = buildSnapshot(
    [
      ad("a", "us", "eng", 0, 0),
      ad("b", "us", "eng", 6, 12),
      ad("c", "us", "eng", 22, 3),
      ad("d", "fr", "fra", 8, 18),
    ],
    0,
  );

  test("agrees with the decision functions at every hour", () => {
    for (let hour = 0; hour < 24; hour++) {
      const e = explain(snapshot, "us", "eng", hour);
      const found = eligible(snapshot, "us", "eng", hour);
      const live = e.ads.filter((x) => x.eligible).map((x) => x.id);
      expect(live).toEqual(found.kind === "ads" ? Array.from(found.ads, (i) => snapshot.ads.id(i)) : []);
      const chosen = e.ads.filter((x) => x.reason === "chosen");
      if (e.decision.outcome === "fill") expect(chosen.map((x) => x.id)).toEqual([e.decision.id]);
      else expect(chosen).toEqual([]);
    }
  });

  test("reads the rotation counter without advancing it", () => {
    const s = buildSnapshot([ad("a", "us", "eng", 0, 0), ad("c", "us", "eng", 22, 3)], 0);
    const first = explain(s, "us", "eng", 23);
    expect(first.decision).toEqual({ outcome: "fill", id: "a", video_url: "https://cdn.example.com/a.mp4" });
    expect(explain(s, "us", "eng", 23).decision).toEqual(first.decision);
    s.rotation[0] = 1;
    expect(explain(s, "us", "eng", 23).decision).toMatchObject({ outcome: "fill", id: "c" });
  });

  test("no ad for the key, and every ad outside its hours", () => {
    expect(explain(snapshot, "de", "deu", 10)).toEqual({
      country: "de",
      lang: "deu",
      hour: 10,
      catalog_version: snapshot.version,
      decision: { outcome: "nofill", reason: "no_ad_for_country_lang" },
      ads: [],
    });
    const e = explain(snapshot, "fr", "fra", 20);
    expect(e.decision).toEqual({ outcome: "nofill", reason: "outside_hours" });
    expect(e.ads).toEqual([
      {
        id: "d",
        eligible: false,
        reason: "outside_hours",
        runs: "08:00–17:59 UTC",
        start_hour: 8,
        end_hour: 18,
        video_url: "https://cdn.example.com/d.mp4",
      },
    ]);
  });
});

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  buildSnapshot,
  buildSnapshotChunked,
  catalogVersion,
  type Snapshot,
  versionChunked,
} from "../../../src/catalog/snapshot.ts";
import { packAds } from "../../../src/catalog/table.ts";
import type { Ad } from "../../../src/catalog/types.ts";
import { choose, eligible } from "../../../src/decision/decide.ts";
import { isAvailable } from "../../../src/decision/hours.ts";
import { fuzz } from "../../fuzz.ts";

const ad = (id: string, country: string, lang: string, start: number, end: number): Ad => ({
  id,
  video_url: `https://cdn.example.com/${id}.mp4`,
  country,
  lang,
  start_hour: start,
  end_hour: end,
});

/** The ids of a list of ad numbers. */
const ids = (snap: Snapshot, list: Int32Array): string[] => Array.from(list, (i) => snap.ads.id(i));

describe("eligible + choose", () => {
  const ads = [
    ad("a", "us", "eng", 0, 0),
    ad("b", "us", "eng", 1, 14),
    ad("c", "us", "eng", 22, 3),
    ad("d", "fr", "fra", 8, 18),
  ];
  const snap = buildSnapshot(ads, 0);

  test("returns the ads live at the hour, in catalog order", () => {
    const at = (h: number) => {
      const e = eligible(snap, "us", "eng", h);
      return e.kind === "ads" ? ids(snap, e.ads) : e.reason;
    };
    expect(at(0)).toEqual(["a", "c"]);
    expect(at(1)).toEqual(["a", "b", "c"]);
    expect(at(13)).toEqual(["a", "b"]);
    expect(at(14)).toEqual(["a"]);
    expect(at(22)).toEqual(["a", "c"]);
  });

  test("a decision allocates nothing: every call returns the object built with the index", () => {
    for (let h = 0; h < 24; h++) {
      const first = eligible(snap, "us", "eng", h);
      expect(eligible(snap, "us", "eng", h)).toBe(first);
      if (first.kind === "ads") expect(first.ads).toBe(snap.index.get("us")?.get("eng")?.hours[h] as never);
    }
    // Hours with the same ads share one answer (here 1 and 2: a, b, c).
    expect(eligible(snap, "us", "eng", 1)).toBe(eligible(snap, "us", "eng", 2));
    expect(eligible(snap, "fr", "fra", 3)).toBe(eligible(snap, "fr", "fra", 4)); // no fill: constants too
  });

  test("no ad for the key, and outside hours, are told apart", () => {
    expect(eligible(snap, "us", "fra", 3)).toEqual({ kind: "nofill", reason: "no_ad_for_country_lang" });
    expect(eligible(snap, "de", "deu", 3)).toEqual({ kind: "nofill", reason: "no_ad_for_country_lang" });
    expect(eligible(snap, "fr", "fra", 3)).toEqual({ kind: "nofill", reason: "outside_hours" });
    expect(eligible(snap, "fr", "fra", 8).kind).toBe("ads");
  });

  test("bodies hold exactly id and video_url", () => {
    const e = eligible(snap, "fr", "fra", 9);
    if (e.kind !== "ads") throw new Error("expected ads");
    expect(JSON.parse(`${snap.ads.bodyHead(e.ads[0] as number)}}`)).toEqual({
      id: "d",
      video_url: "https://cdn.example.com/d.mp4",
    });
  });

  test("property: a body is JSON.stringify({ id, video_url }) byte for byte, escapes included", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), fc.string({ maxLength: 60 }), (id, tail) => {
        const a = { ...ad("x", "us", "eng", 0, 0), id, video_url: `https://cdn.example.com/${tail}` };
        expect(`${packAds([a]).bodyHead(0)}}`).toBe(JSON.stringify({ id, video_url: a.video_url }));
      }),
      { numRuns: 500, seed: 3 },
    );
  });

  test("round-robin: k·n ticks serve each of n ads exactly k times, in catalog order", () => {
    const e = eligible(snap, "us", "eng", 1);
    if (e.kind !== "ads") throw new Error("expected ads");
    const counts = new Map<string, number>();
    const order: string[] = [];
    for (let tick = 0; tick < 3 * 7; tick++) {
      const chosen = snap.ads.id(choose(e.ads, tick));
      counts.set(chosen, (counts.get(chosen) ?? 0) + 1);
      if (tick < 6) order.push(chosen);
    }
    expect(order).toEqual(["a", "b", "c", "a", "b", "c"]);
    expect([...counts.values()]).toEqual([7, 7, 7]);
  });

  test("property: the index agrees with a scan of the catalog for every key and hour", () => {
    const countries = ["us", "fr", "de"];
    const langs = ["eng", "fra"];
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.constantFrom(...countries),
            fc.constantFrom(...langs),
            fc.integer({ min: 0, max: 23 }),
            fc.integer({ min: 0, max: 24 }),
          ),
          { maxLength: 30 },
        ),
        (rows) => {
          const list = rows.map(([c, l, s, e], i) => ad(`ad${i}`, c, l, s, e));
          const s = buildSnapshot(list, 0);
          for (const c of countries) {
            for (const l of langs) {
              for (let h = 0; h < 24; h++) {
                const scan = list.filter(
                  (x) => x.country === c && x.lang === l && isAvailable(x.start_hour, x.end_hour, h),
                );
                const e = eligible(s, c, l, h);
                if (e.kind === "ads") expect(ids(s, e.ads)).toEqual(scan.map((x) => x.id));
                else expect(scan).toEqual([]);
              }
            }
          }
        },
      ),
      fuzz(200),
    );
  });
});

test("catalogVersion depends on content only", () => {
  const a = [ad("a", "us", "eng", 0, 0)];
  expect(catalogVersion(a)).toBe(catalogVersion([ad("a", "us", "eng", 0, 0)]));
  expect(catalogVersion(a)).not.toBe(catalogVersion([ad("a", "us", "eng", 0, 1)]));
  expect(buildSnapshot(a, 1).version).toBe(catalogVersion(a));
});

test("catalogVersion changes with every field, the order and the split between id and URL", () => {
  const base: Ad[] = Array.from({ length: 1_200 }, (_, i) => ad(`ad-${i}`, "us", "eng", i % 24, 24));
  const version = catalogVersion(base);
  const changed = (i: number, change: Partial<Ad>): string =>
    catalogVersion(base.map((x, j) => (j === i ? { ...x, ...change } : x)));
  // Ads 0, 511/512 (either side of a text chunk's end) and the last one.
  for (const i of [0, 511, 512, 1_199]) {
    const x = base[i] as Ad;
    const variants: Partial<Ad>[] = [
      { id: `${x.id}x` },
      { video_url: `${x.video_url}x` },
      // The same text, split elsewhere between the id and the URL.
      { id: `${x.id}h`, video_url: x.video_url.slice(1) },
      { country: "fr" },
      { lang: "fra" },
      { start_hour: (x.start_hour + 1) % 24 },
      { end_hour: 23 },
      { frequency_cap: 3 },
      { duration: 15 },
    ];
    for (const v of variants) expect(changed(i, v)).not.toBe(version);
  }
  expect(catalogVersion([...base].reverse())).not.toBe(version);
  expect(catalogVersion(base.slice(0, -1))).not.toBe(version);
  expect(catalogVersion(base.map((x) => ({ ...x })))).toBe(version);
  // JSON allows -0; JSON.stringify writes 0: the canonical document must keep the version.
  expect(catalogVersion([{ ...(base[0] as Ad), frequency_cap: -0 }])).toBe(
    catalogVersion([{ ...(base[0] as Ad), frequency_cap: 0 }]),
  );
});

describe("in slices", () => {
  const many: Ad[] = Array.from({ length: 3_000 }, (_, i) =>
    ad(`ad-${i}`, ["us", "fr", "de"][i % 3] as string, ["eng", "fra"][i % 2] as string, i % 24, (i * 7) % 25),
  );

  /** A pause that counts how often the computation yielded. */
  const counting = () => {
    const state = { pauses: 0 };
    return { state, pause: () => Promise.resolve().then(() => void state.pauses++) };
  };

  test("versionChunked and buildSnapshotChunked give what the one-go functions give, pausing between slices", async () => {
    const v = counting();
    // A slice of 0 ms: a pause after every step.
    const { columns, version } = await versionChunked(many, v.pause, 0);
    expect(version).toBe(catalogVersion(many));
    expect(v.state.pauses).toBeGreaterThan(5);
    const b = counting();
    const sliced = await buildSnapshotChunked(columns, version, 7, b.pause, 0);
    expect(b.state.pauses).toBeGreaterThan(5);
    const whole = buildSnapshot(many, 7);
    expect(sliced.version).toBe(whole.version);
    expect(sliced.rotation.length).toBe(whole.rotation.length);
    for (const [country, langs] of whole.index) {
      for (const [lang] of langs) {
        for (let h = 0; h < 24; h++) {
          const a = eligible(sliced, country, lang, h);
          const w = eligible(whole, country, lang, h);
          expect(a.kind === "ads" ? ids(sliced, a.ads) : a.reason).toEqual(
            w.kind === "ads" ? ids(whole, w.ads) : w.reason,
          );
        }
      }
    }
  });
});

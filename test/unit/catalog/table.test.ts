import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { AdTable, packAds, packSteps, TEXT_CHUNK_BITS, textsAsBytes } from "../../../src/catalog/table.ts";
import type { Ad } from "../../../src/catalog/types.ts";
import { fuzz } from "../../fuzz.ts";
import { sampleAd } from "../../rig.ts";

const optional = {
  frequency_cap: fc.integer({ min: 0, max: 1000 }),
  frequency_window: fc.double({ min: 0.5, max: 86_400, noNaN: true }),
  duration: fc.double({ min: 0.5, max: 600, noNaN: true }),
  mime_type: fc.constantFrom("video/mp4", "video/webm", "application/x-mpegurl"),
  width: fc.integer({ min: 1, max: 7680 }),
  height: fc.integer({ min: 1, max: 4320 }),
};

const anAd: fc.Arbitrary<Ad> = fc
  .record(
    {
      id: fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
      video_url: fc.string({ unit: "grapheme", maxLength: 30 }).map((t) => `https://cdn.example.com/${t}`),
      country: fc.constantFrom("us", "fr", "jp"),
      lang: fc.constantFrom("eng", "fra", "jpn"),
      start_hour: fc.integer({ min: 0, max: 23 }),
      end_hour: fc.integer({ min: 0, max: 24 }),
      ...optional,
    },
    { requiredKeys: ["id", "video_url", "country", "lang", "start_hour", "end_hour"] },
  )
  // The order validation writes the fields in (media, then the cap): `at` gives it back.
  .map(({ frequency_cap, frequency_window, ...rest }) => ({
    ...rest,
    ...(frequency_cap === undefined ? {} : { frequency_cap }),
    ...(frequency_window === undefined ? {} : { frequency_window }),
  }));

describe("packAds", () => {
  test("property: every ad reads back as it went in, field for field and in order", () => {
    fc.assert(
      fc.property(fc.array(anAd, { maxLength: 40 }), (ads) => {
        const table = packAds(ads);
        expect(table.length).toBe(ads.length);
        const back = table.toArray();
        expect(back).toEqual(ads);
        for (let i = 0; i < ads.length; i++) {
          expect(Object.keys(back[i] as Ad)).toEqual(Object.keys(ads[i] as Ad));
          expect(`${table.bodyHead(i)}}`).toBe(
            JSON.stringify({ id: ads[i]?.id, video_url: ads[i]?.video_url }),
          );
        }
      }),
      fuzz(300),
    );
  });

  test("property: as the worker sends them (text chunks as UTF-8 bytes), the ads read back the same", () => {
    const odd = fc.constantFrom("\ud800", "\udfff", "😀", "é", "\ufeff", "");
    fc.assert(
      fc.property(fc.array(fc.tuple(anAd, odd), { maxLength: 30 }), (rows) => {
        const ads = rows.map(([a, extra]) => ({ ...a, video_url: `${a.video_url}${extra}` }));
        const sent = textsAsBytes(packAds(ads).columns);
        // One chunk here: bytes unless it holds a surrogate (then it stays a string, lone or not).
        const surrogate = ads.some((a) => /[\ud800-\udfff]/.test(a.id + a.video_url));
        expect(sent.texts.every((t) => typeof t !== "string")).toBe(!surrogate);
        expect(new AdTable(sent).toArray()).toEqual(ads);
      }),
      fuzz(300),
    );
  });

  test("ads across several text chunks, the last one partial, read back", () => {
    const n = 2 * (1 << TEXT_CHUNK_BITS) + 17;
    const ads: Ad[] = Array.from({ length: n }, (_, i) => ({
      id: `ad-${i}`,
      video_url: `https://cdn.example.com/${"x".repeat(i % 7)}${i}.mp4`,
      country: "us",
      lang: "eng",
      start_hour: i % 24,
      end_hour: (i * 5) % 25,
    }));
    const table = packAds(ads);
    expect(table.columns.texts.length).toBe(3);
    expect(table.columns.extra).toBeNull(); // no optional field: no column for them
    const chunk = 1 << TEXT_CHUNK_BITS;
    for (const i of [0, chunk - 1, chunk, 2 * chunk - 1, 2 * chunk, n - 1])
      expect(table.at(i)).toEqual(ads[i] as Ad);
    expect(table.toArray()).toEqual(ads);
    // As the worker sends it: every chunk as bytes, each decoded on first use.
    const sent = textsAsBytes(table.columns);
    expect(sent.texts.every((t) => t instanceof Uint8Array)).toBe(true);
    expect(new AdTable(sent).toArray()).toEqual(ads);
  });

  test("a chunk that starts with U+FEFF keeps it through bytes (the offsets stay right)", () => {
    const ads = ["\ufeffa", "b"].map((id) => sampleAd(id) as unknown as Ad);
    expect(new AdTable(textsAsBytes(packAds(ads).columns)).toArray()).toEqual(ads);
  });

  test("the packing yields between steps, and gives what the one-go packing gives", () => {
    const ads: Ad[] = Array.from({ length: 1000 }, (_, i) => ({
      id: `a${i}`,
      video_url: `https://cdn.example.com/${i}.mp4`,
      country: "fr",
      lang: "fra",
      start_hour: 0,
      end_hour: 0,
    }));
    const steps = packSteps(ads);
    let yields = 0;
    let next = steps.next();
    while (!next.done) {
      yields++;
      next = steps.next();
    }
    expect(yields).toBeGreaterThan(1);
    expect(next.value.texts).toEqual(packAds(ads).columns.texts);
  });
});

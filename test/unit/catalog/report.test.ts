import { describe, expect, test } from "bun:test";
import {
  countCells,
  FULL_DAY,
  hourCells,
  hourHeader,
  markerLine,
  previewGroups,
  rotationAt,
  summarize,
  windowLabel,
} from "../../../src/catalog/report.ts";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import type { Ad } from "../../../src/catalog/types.ts";
import { parseCatalog, validateCatalog } from "../../../src/catalog/validate.ts";
import { choose, eligible } from "../../../src/decision/decide.ts";
import { hourMask, isAvailable } from "../../../src/decision/hours.ts";

const raw = (id: string, country: string, lang: string, start: number, end: number) => ({
  id,
  video_url: `https://cdn.example.com/${id}.mp4`,
  country,
  lang,
  start_hour: start,
  end_hour: end,
});

const ad = (id: string, country: string, lang: string, start: number, end: number): Ad =>
  raw(id, country, lang, start, end);

describe("summarize", () => {
  test("counts valid and invalid entries, reasons by frequency, canonical coverage", () => {
    const result = validateCatalog({
      ads: [
        raw("a", "US", "en", 0, 0),
        raw("b", "zz", "eng", 0, 0),
        raw("c", "fr", "fre", 8, 18),
        raw("a", "us", "eng", 1, 2),
        {
          id: "h",
          video_url: "https://x.example/h",
          country: "gb",
          lang: "eng",
          start_hour: 24,
          end_hour: 1,
        },
        raw("d", "qq", "eng", 0, 0),
        raw("e", "us", "fr-CA", 3, 4),
      ],
    });
    const s = summarize(result);
    expect(s.ok).toBe(false);
    expect(s.accepted).toBe(true);
    expect(s.rejected).toBeNull();
    expect(s.entries).toBe(7);
    expect(s.valid).toBe(3);
    expect(s.invalid).toBe(4);
    expect(s.byReason).toEqual([
      { code: "unknown_country", count: 2 },
      { code: "duplicate_id", count: 1 },
      { code: "invalid_hour", count: 1 },
    ]);
    expect(s.countries).toEqual(["fr", "us"]);
    expect(s.languages).toEqual(["eng", "fra"]);
    expect(s.pairs).toEqual([
      { country: "fr", lang: "fra", ads: 1 },
      { country: "us", lang: "eng", ads: 1 },
      { country: "us", lang: "fra", ads: 1 },
    ]);
    expect(s.issues.map((i) => [i.index, i.id, i.code])).toEqual([
      [1, "b", "unknown_country"],
      [3, "a", "duplicate_id"],
      [4, "h", "invalid_hour"],
      [5, "d", "unknown_country"],
    ]);
    expect(s.version).toMatch(/^[0-9a-f]{16}$/);
  });

  test("an all-valid catalog is ok; its version is the snapshot's", () => {
    const result = validateCatalog({ ads: [raw("a", "us", "eng", 0, 0)] });
    if (!result.ok) throw new Error("expected ok");
    const s = summarize(result);
    expect(s.ok).toBe(true);
    expect(s.byReason).toEqual([]);
    expect(s.version).toBe(buildSnapshot(result.ads, 0).version);
  });

  test("an empty catalog is ok with nothing covered", () => {
    const s = summarize(validateCatalog({ ads: [] }));
    expect(s).toMatchObject({ ok: true, accepted: true, entries: 0, valid: 0, countries: [], pairs: [] });
  });

  test("rejected documents: malformed JSON has no entry count, all-invalid lists its entries", () => {
    const malformed = summarize(parseCatalog('{"ads": ['));
    expect(malformed).toMatchObject({ ok: false, accepted: false, entries: null, valid: 0, invalid: 0 });
    expect(malformed.rejected?.code).toBe("malformed_json");
    expect(malformed.version).toBeNull();

    const shape = summarize(parseCatalog('{"campaigns": []}'));
    expect(shape.rejected?.code).toBe("wrong_shape");

    const all = summarize(validateCatalog({ ads: [{ id: "x" }, raw("y", "zz", "eng", 0, 0)] }));
    expect(all.rejected?.code).toBe("all_invalid");
    expect(all.entries).toBe(2);
    expect(all.invalid).toBe(2);
    expect(all.byReason).toEqual([
      { code: "missing_field", count: 1 },
      { code: "unknown_country", count: 1 },
    ]);
    expect(all.countries).toEqual([]);
  });
});

describe("previewGroups", () => {
  const ads = [
    ad("a", "us", "eng", 0, 0),
    ad("b", "us", "eng", 1, 14),
    ad("z", "de", "deu", 9, 17),
    ad("c", "us", "eng", 22, 3),
    ad("s", "us", "spa", 12, 24),
    ad("f", "fr", "fra", 8, 18),
  ];
  const snap = buildSnapshot(ads, 0);

  test("groups sorted by country then language, ads in catalog order", () => {
    const groups = previewGroups(snap, { country: null, lang: null });
    expect(groups.map((g) => `${g.country}/${g.lang}:${g.ads.map((a) => a.id).join(",")}`)).toEqual([
      "de/deu:z",
      "fr/fra:f",
      "us/eng:a,b,c",
      "us/spa:s",
    ]);
  });

  test("each ad's hours agree with the availability rule, and live counts with eligible()", () => {
    for (const group of previewGroups(snap, { country: null, lang: null })) {
      for (const row of group.ads) {
        expect(row.mask).toBe(hourMask(row.start_hour, row.end_hour));
        for (let h = 0; h < 24; h++) {
          expect(Boolean(row.mask & (1 << h))).toBe(isAvailable(row.start_hour, row.end_hour, h));
        }
      }
      for (let h = 0; h < 24; h++) {
        const e = eligible(snap, group.country, group.lang, h);
        expect(group.live[h]).toBe(e.kind === "ads" ? e.ads.length : 0);
      }
    }
  });

  test("filters by canonical country and language", () => {
    expect(previewGroups(snap, { country: "us", lang: null }).map((g) => g.lang)).toEqual(["eng", "spa"]);
    expect(previewGroups(snap, { country: null, lang: "eng" }).map((g) => g.country)).toEqual(["us"]);
    expect(previewGroups(snap, { country: "us", lang: "fra" })).toEqual([]);
    expect(previewGroups(snap, { country: "jp", lang: null })).toEqual([]);
  });
});

describe("rotationAt", () => {
  const snap = buildSnapshot(
    [
      ad("a", "us", "eng", 0, 0),
      ad("b", "us", "eng", 1, 14),
      ad("c", "us", "eng", 22, 3),
      ad("f", "fr", "fra", 8, 18),
    ],
    0,
  );

  test("is the order choose() walks from tick 0", () => {
    for (let h = 0; h < 24; h++) {
      const r = rotationAt(snap, "us", "eng", h);
      const e = eligible(snap, "us", "eng", h);
      if (r.kind !== "ads" || e.kind !== "ads") throw new Error("us/eng has an all-day ad");
      expect(r.ids).toEqual(r.ids.map((_, tick) => snap.ads.id(choose(e.ads, tick))));
    }
    expect(rotationAt(snap, "us", "eng", 1)).toEqual({ kind: "ads", ids: ["a", "b", "c"] });
    expect(rotationAt(snap, "us", "eng", 23)).toEqual({ kind: "ads", ids: ["a", "c"] });
  });

  test("tells no ad for the key from outside hours", () => {
    expect(rotationAt(snap, "fr", "fra", 3)).toEqual({ kind: "nofill", reason: "outside_hours" });
    expect(rotationAt(snap, "de", "deu", 3)).toEqual({ kind: "nofill", reason: "no_ad_for_country_lang" });
  });
});

describe("grid cells and labels", () => {
  test("hourCells marks exactly the mask's hours", () => {
    expect(hourCells(hourMask(1, 14))).toBe(`·${"█".repeat(13)}${"·".repeat(10)}`);
    expect(hourCells(hourMask(22, 3), "#", ".")).toBe(`###${".".repeat(19)}##`);
    expect(hourCells(FULL_DAY, "#", ".")).toBe("#".repeat(24));
    expect(hourCells(0, "#", ".")).toBe(".".repeat(24));
  });

  test("countCells: dot for none, digits, + above 9", () => {
    const live = Array.from({ length: 24 }, (_, h) => (h < 12 ? h : 0));
    expect(countCells(live)).toBe(`·123456789++${"·".repeat(12)}`);
  });

  test("header and marker line up with the cells", () => {
    const [tens, units] = hourHeader();
    expect(tens).toBe("000000000011111111112222");
    expect(units).toBe("012345678901234567890123");
    expect(markerLine(14).indexOf("^")).toBe(14);
    expect(markerLine(0, "v now")).toBe("v now");
  });

  test("windowLabel", () => {
    expect(windowLabel(1, 14)).toBe("01:00-14:00");
    expect(windowLabel(22, 3)).toBe("22:00-03:00");
    expect(windowLabel(12, 0)).toBe("12:00-24:00");
    expect(windowLabel(12, 24)).toBe("12:00-24:00");
    expect(windowLabel(6, 6)).toBe("all day");
    expect(windowLabel(0, 24)).toBe("all day");
    expect(windowLabel(0, 0)).toBe("all day");
  });
});

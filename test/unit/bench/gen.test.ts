import { describe, expect, test } from "bun:test";
import { generateCatalog, pairs, requestPaths } from "../../../scripts/bench/gen.ts";
import { validateCatalog } from "../../../src/catalog/validate.ts";
import { normalizeCountry, normalizeLang } from "../../../src/codes/normalize.ts";

describe("bench catalog generator", () => {
  test("is deterministic for a seed and differs between seeds", () => {
    expect(JSON.stringify(generateCatalog(500, 7))).toBe(JSON.stringify(generateCatalog(500, 7)));
    expect(JSON.stringify(generateCatalog(500, 7))).not.toBe(JSON.stringify(generateCatalog(500, 8)));
  });

  test("every entry validates, ids are unique, and the mix has the edge cases", () => {
    const doc = generateCatalog(5000, 1);
    const result = validateCatalog(doc);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.issues).toEqual([]);
    expect(result.ads).toHaveLength(5000);
    expect(new Set(doc.ads.map((a) => a.id)).size).toBe(5000);
    expect(new Set(result.ads.map((a) => a.country)).size).toBeGreaterThan(40);
    expect(doc.ads.some((a) => a.start_hour > a.end_hour && a.end_hour !== 0)).toBe(true); // wraps
    expect(doc.ads.some((a) => a.end_hour === 0)).toBe(true);
    expect(doc.ads.some((a) => a.lang === "fre")).toBe(true);
    expect(doc.ads.some((a) => a.country !== a.country.toLowerCase())).toBe(true);
  });

  test("every pair's first ad runs all day, so the request mix fills at any hour", () => {
    const doc = generateCatalog(pairs().length, 3);
    for (const ad of doc.ads) expect(ad.start_hour === ad.end_hour % 24).toBe(true);
  });

  test("request paths use valid codes of pairs present in the catalog", () => {
    const present = new Set(
      generateCatalog(2000, 1).ads.map((a) => `${normalizeCountry(a.country)}/${normalizeLang(a.lang)}`),
    );
    for (const path of requestPaths(2000, 1, 300)) {
      const m = /^\/ad_request\?country=([a-z]{2})&lang=([A-Za-z-]+)$/.exec(path);
      expect(m).not.toBeNull();
      expect(present.has(`${normalizeCountry(m?.[1] ?? "")}/${normalizeLang(m?.[2] ?? "")}`)).toBe(true);
    }
  });
});

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseAdQuery, searchOf } from "../../../src/http/query.ts";
import { fuzz } from "../../fuzz.ts";

describe("parseAdQuery", () => {
  test.each([
    ["country=us&lang=eng", "us", "eng"],
    ["lang=fr-CA&country=CA", "ca", "fra"],
    ["country=us&lang=en_US&player=1&x", "us", "eng"],
    ["country=%75s&lang=eng", "us", "eng"],
    ["&&country=us&&lang=eng&", "us", "eng"],
    ["country=us&lang=eng&Country=fr", "us", "eng"], // names are case-sensitive; unknown ones ignored
  ])("%s → %s/%s", (search, country, lang) => {
    expect(parseAdQuery(search)).toEqual({ ok: true, query: { country, lang, playerId: null } });
  });

  test("player_id: optional, opaque, once, 1-128 printable ASCII", () => {
    expect(parseAdQuery("country=us&lang=eng&player_id=p-42%2Fx")).toEqual({
      ok: true,
      query: { country: "us", lang: "eng", playerId: "p-42/x" },
    });
    const long = "p".repeat(128);
    expect(parseAdQuery(`country=us&lang=eng&player_id=${long}`)).toMatchObject({ ok: true });
    for (const bad of [`${long}p`, "a%20b", "", "%C3%A9", "a%00"]) {
      const r = parseAdQuery(`country=us&lang=eng&player_id=${bad}`);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.param).toBe("player_id");
    }
    const twice = parseAdQuery("country=us&lang=eng&player_id=a&player_id=b");
    expect(twice.ok ? null : twice.error.detail).toContain("more than once");
  });

  test.each([
    ["", "country", "required"],
    ["lang=eng", "country", "required"],
    ["country=us", "lang", "required"],
    ["country=&lang=eng", "country", "required"],
    ["country&lang=eng", "country", "required"],
    ["country=us&lang=", "lang", "required"],
    ["country=us&country=us&lang=eng", "country", "more than once"],
    ["country=us&lang=eng&lang=fra", "lang", "more than once"],
    ["country=zz&lang=eng", "country", "not an ISO 3166-1"],
    ["country=usa&lang=eng", "country", "not an ISO 3166-1"],
    ["country=+us&lang=eng", "country", "not an ISO 3166-1"], // '+' is a space: not trimmed
    ["country=us%20&lang=eng", "country", "not an ISO 3166-1"],
    ["country=us&lang=xyz", "lang", "not an ISO 639"],
    ["country=us&lang=%ZZ", "lang", "percent-encoding"],
    ["country=%E0%A4%A&lang=eng", "country", "percent-encoding"],
    ["country=us&lang=en%00", "lang", "not an ISO 639"],
    ["country=%C4%B0s&lang=eng", "country", "not an ISO 3166-1"], // İ must not fold to i
  ])("%s → 400 on %s", (search, param, fragment) => {
    const result = parseAdQuery(search);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.param).toBe(param);
    expect(result.error.detail).toContain(fragment);
  });

  test("user input in the detail is escaped and bounded", () => {
    const result = parseAdQuery(`country=us&lang=${encodeURIComponent(`"\n${"x".repeat(500)}`)}`);
    if (result.ok) throw new Error("expected an error");
    expect(result.error.detail).not.toContain("\n");
    expect(result.error.detail.length).toBeLessThan(160);
  });

  test("property: never throws; a success always yields codes in canonical form", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 60 }),
        fc.string({ maxLength: 12 }),
        fc.string({ maxLength: 12 }),
        (noise, c, l) => {
          for (const search of [
            noise,
            `country=${c}&lang=${l}&${noise}`,
            `country=${encodeURIComponent(c)}&lang=${l}`,
          ]) {
            const r = parseAdQuery(search);
            if (r.ok) {
              expect(r.query.country).toMatch(/^[a-z]{2}$/);
              expect(r.query.lang).toMatch(/^[a-z]{3}$/);
            } else {
              expect(["country", "lang"].includes(r.error.param) || r.error.detail.includes("percent")).toBe(
                true,
              );
            }
          }
        },
      ),
      fuzz(2000),
    );
  });
});

test("searchOf takes the part between ? and #", () => {
  expect(searchOf("http://h/ad_request?country=us&lang=en#frag")).toBe("country=us&lang=en");
  expect(searchOf("http://h/ad_request")).toBe("");
  expect(searchOf("http://h/ad_request?")).toBe("");
});

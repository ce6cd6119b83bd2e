import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import fc from "fast-check";
import { render } from "../../../scripts/gen-codes.ts";
import { codeCounts, normalizeCountry, normalizeLang } from "../../../src/codes/normalize.ts";
import { COUNTRY_CODES, LANGUAGE_ROWS } from "../../../src/codes/tables.ts";
import { fuzz } from "../../fuzz.ts";

describe("normalizeCountry", () => {
  test.each([
    ["us", "us"],
    ["US", "us"],
    ["Fr", "fr"],
    ["aq", "aq"],
  ])("%s → %s", (raw, expected) => expect(normalizeCountry(raw)).toBe(expected));

  test.each(["zz", "xx", "usa", "u", "", " us", "us ", "u s", "İs", "ＵＳ", "u\u0000", "12"])(
    "%p is rejected",
    (raw) => {
      expect(normalizeCountry(raw)).toBeNull();
    },
  );
});

describe("normalizeLang", () => {
  test.each([
    ["fre", "fra"],
    ["fra", "fra"],
    ["fr", "fra"],
    ["FR", "fra"],
    ["fr-CA", "fra"],
    ["fr_ca", "fra"],
    ["en", "eng"],
    ["eng", "eng"],
    ["en-US", "eng"],
    ["en_US", "eng"],
    ["ger", "deu"],
    ["de", "deu"],
    ["chi", "zho"],
    ["zh-Hant-TW", "zho"],
    ["haw", "haw"],
  ])("%s → %s", (raw, expected) => expect(normalizeLang(raw)).toBe(expected));

  test.each([
    "",
    "e",
    "xx",
    "xyz",
    "english",
    " en",
    "en ",
    "en-",
    "en--US",
    "en-US!",
    "ｅｎ",
    "qaa-qtz",
    "é",
  ])("%p is rejected", (raw) => expect(normalizeLang(raw)).toBeNull());

  test("every 639-1, 639-2/B and 639-2/T form of a language maps to the same code", () => {
    for (const row of LANGUAGE_ROWS.split(" ")) {
      const [canonical, ...aliases] = row.split(":");
      for (const form of [canonical, ...aliases])
        expect(normalizeLang(form as string)).toBe(canonical as string);
    }
  });

  test("property: a known code with any case and any valid region subtag keeps its canonical form", () => {
    const rows = LANGUAGE_ROWS.split(" ").map((r) => r.split(":"));
    fc.assert(
      fc.property(
        fc.constantFrom(...rows),
        fc.nat(),
        fc.stringMatching(/^[A-Za-z0-9]{1,8}$/),
        fc.constantFrom("-", "_"),
        fc.boolean(),
        (row, pick, region, sep, upper) => {
          const form = row[pick % row.length] as string;
          const cased = upper ? form.toUpperCase() : form;
          expect(normalizeLang(`${cased}${sep}${region}`)).toBe(row[0] as string);
        },
      ),
      fuzz(100),
    );
  });

  test("property: never throws, and any accepted input is pure ASCII", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (raw) => {
        const out = normalizeLang(raw);
        if (out !== null) expect(/^[\x20-\x7e]*$/.test(raw)).toBe(true);
        const country = normalizeCountry(raw);
        if (country !== null) expect(/^[A-Za-z]{2}$/.test(raw)).toBe(true);
      }),
      fuzz(100),
    );
  });
});

describe("generated tables", () => {
  test("cover ISO 3166-1 and ISO 639-2", () => {
    expect(codeCounts.countries).toBe(249);
    expect(codeCounts.languages).toBeGreaterThan(450);
    expect(COUNTRY_CODES.split(" ")).toContain("us");
  });

  const dir = "/usr/share/iso-codes/json";
  test.skipIf(!existsSync(dir))("match Debian's iso-codes data (regenerate with npm run gen:codes)", () => {
    const countries = JSON.parse(readFileSync(`${dir}/iso_3166-1.json`, "utf8"))["3166-1"];
    const languages = JSON.parse(readFileSync(`${dir}/iso_639-2.json`, "utf8"))["639-2"];
    const committed = readFileSync(`${import.meta.dir}/../../../src/codes/tables.ts`, "utf8");
    expect(render(countries, languages)).toBe(committed);
  });
});

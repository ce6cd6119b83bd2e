import { describe, expect, spyOn, test } from "bun:test";
import fc from "fast-check";
import sample from "../../../src/catalog/sample-catalog.json";
import {
  parseCatalog,
  parseCatalogBytes,
  parseCatalogChunked,
  validateCatalog,
} from "../../../src/catalog/validate.ts";
import { fuzz } from "../../fuzz.ts";

const good = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  video_url: `https://cdn.example.com/${id}.mp4`,
  country: "us",
  lang: "eng",
  start_hour: 1,
  end_hour: 14,
  ...extra,
});

describe("validateCatalog", () => {
  test("a valid entry comes back with canonical codes", () => {
    const result = validateCatalog({ ads: [good("a", { country: "US", lang: "fre" })] });
    expect(result).toEqual({
      ok: true,
      ads: [
        {
          id: "a",
          video_url: "https://cdn.example.com/a.mp4",
          country: "us",
          lang: "fra",
          start_hour: 1,
          end_hour: 14,
        },
      ],
      issues: [],
    });
  });

  test("an empty ads list is a valid catalog", () => {
    expect(validateCatalog({ ads: [] })).toEqual({ ok: true, ads: [], issues: [] });
  });

  test.each([
    ["not an object", 42, "not_object", null],
    ["null entry", null, "not_object", null],
    [
      "missing id",
      (() => {
        const { id: _, ...rest } = good("x");
        return rest;
      })(),
      "missing_field",
      "id",
    ],
    ["numeric id", good("x", { id: 7 }), "wrong_type", "id"],
    ["empty id", good("x", { id: "" }), "invalid_id", "id"],
    ["id with space", good("x", { id: "a b" }), "invalid_id", "id"],
    [
      "missing video_url",
      (() => {
        const { video_url: _, ...rest } = good("x");
        return rest;
      })(),
      "missing_field",
      "video_url",
    ],
    ["relative url", good("x", { video_url: "/v.mp4" }), "invalid_video_url", "video_url"],
    ["ftp url", good("x", { video_url: "ftp://x.example/v.mp4" }), "invalid_video_url", "video_url"],
    ["javascript url", good("x", { video_url: "javascript:alert(1)" }), "invalid_video_url", "video_url"],
    [
      "url with space",
      good("x", { video_url: "https://x.example/a b.mp4" }),
      "invalid_video_url",
      "video_url",
    ],
    ["unassigned country", good("x", { country: "zz" }), "unknown_country", "country"],
    ["country with whitespace", good("x", { country: " us" }), "unknown_country", "country"],
    ["numeric country", good("x", { country: 1 }), "wrong_type", "country"],
    ["unknown lang", good("x", { lang: "xyz" }), "unknown_lang", "lang"],
    ["lang with whitespace", good("x", { lang: "eng " }), "unknown_lang", "lang"],
    ["string hour", good("x", { start_hour: "1" }), "wrong_type", "start_hour"],
    ["start 24", good("x", { start_hour: 24 }), "invalid_hour", "start_hour"],
    ["end 25", good("x", { end_hour: 25 }), "invalid_hour", "end_hour"],
    ["negative hour", good("x", { start_hour: -1 }), "invalid_hour", "start_hour"],
    ["fractional hour", good("x", { end_hour: 2.5 }), "invalid_hour", "end_hour"],
  ])("%s is skipped with reason %s", (_name, entry, code, field) => {
    const result = validateCatalog({ ads: [good("ok"), entry] });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.ads.map((a) => a.id)).toEqual(["ok"]);
    expect(result.issues).toHaveLength(1);
    expect(result.issues[0]).toMatchObject({ index: 1, code, field });
  });

  test("a duplicate id invalidates the later entries, not the first", () => {
    const result = validateCatalog({ ads: [good("a"), good("b"), good("a", { country: "fr" }), good("a")] });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.ads.map((a) => `${a.id}/${a.country}`)).toEqual(["a/us", "b/us"]);
    expect(result.issues.map((i) => [i.index, i.id, i.code])).toEqual([
      [2, "a", "duplicate_id"],
      [3, "a", "duplicate_id"],
    ]);
  });

  test("property: duplicates and other issues are those of a one-set reference, in entry order", () => {
    /** The rule, entry by entry: the first valid entry of an id stays, later valid ones are issues. */
    const reference = (entries: readonly Record<string, unknown>[]) => {
      const seen = new Set<string>();
      const kept: string[] = [];
      const issues: (number | string)[][] = [];
      entries.forEach((e, index) => {
        if (e.country === "zz") issues.push([index, "unknown_country"]);
        else if (seen.has(e.id as string)) issues.push([index, "duplicate_id"]);
        else {
          seen.add(e.id as string);
          kept.push(`${e.id}@${index}`);
        }
      });
      return { kept, issues };
    };
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.stringMatching(/^[a-e]{1,3}$/), fc.boolean()), { maxLength: 200 }),
        (pairs) => {
          const entries = pairs.map(([id, bad], index) =>
            good(id, { country: bad ? "zz" : "us", duration: index + 1 }),
          );
          const result = validateCatalog({ ads: entries });
          const want = reference(entries);
          const issues: (number | string)[][] = result.issues.map((i) => [i.index, i.code]);
          expect(issues).toEqual(want.issues);
          if (!result.ok) expect(want.kept).toEqual([]);
          else expect(result.ads.map((a) => `${a.id}@${(a.duration as number) - 1}`)).toEqual(want.kept);
        },
      ),
      fuzz(300),
    );
  });

  test("ids of equal hash are told apart: only the same id is a duplicate", () => {
    // Pairs with the same 32-bit FNV-1a hash (the duplicate search's), found by a brute-force
    // search over `ad-<n>`.
    const colliding = [
      ["ad-869268", "ad-1184856"],
      ["ad-869269", "ad-1184857"],
    ];
    const ids = [...colliding.flat(), "ad-869268", "ad-1184857", "other"];
    const result = validateCatalog({ ads: ids.map((id) => good(id)) });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.ads.map((a) => a.id)).toEqual([...colliding.flat(), "other"]);
    expect(result.issues.map((i) => [i.index, i.id, i.code])).toEqual([
      [4, "ad-869268", "duplicate_id"],
      [5, "ad-1184857", "duplicate_id"],
    ]);
  });

  test("one id 10,000 times (a bucket over the sorted size): the first stays, every later one is an issue", () => {
    const ads = Array.from({ length: 10_000 }, (_, i) => good(i % 1_000 === 0 ? `u-${i}` : "same"));
    const result = validateCatalog({ ads });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.ads.map((a) => a.id)).toEqual([
      "u-0",
      "same",
      ...Array.from({ length: 9 }, (_, k) => `u-${(k + 1) * 1_000}`),
    ]);
    expect(result.issues.length).toBe(10_000 - 11);
    expect(result.issues.every((x) => x.code === "duplicate_id" && x.id === "same")).toBe(true);
    expect(result.issues.map((x) => x.index)).toEqual(
      Array.from({ length: 10_000 }, (_, i) => i).filter((i) => i > 1 && i % 1_000 !== 0),
    );
  });

  test("200,000 distinct ids: none is a duplicate", () => {
    const ads = Array.from({ length: 200_000 }, (_, i) => good(`ad-${i.toString(36)}`));
    const result = validateCatalog({ ads });
    expect(result.issues).toEqual([]);
    expect(result.ok && result.ads.length).toBe(200_000);
  });

  test.each([
    ["an array", [good("a")], "wrong_shape"],
    ["null", null, "wrong_shape"],
    ["no ads key", { campaigns: [] }, "wrong_shape"],
    ["ads not an array", { ads: { a: 1 } }, "wrong_shape"],
    ["every entry invalid", { ads: [{ id: "a" }, 3] }, "all_invalid"],
  ])("%s is rejected whole (%s)", (_name, doc, code) => {
    const result = validateCatalog(doc);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toBe(code as "wrong_shape");
  });

  test("malformed JSON is rejected", () => {
    const result = parseCatalog('{"ads": [');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toBe("malformed_json");
  });

  test("the sample catalog is valid, has dozens of ads, several countries and languages and the edge cases", () => {
    const result = validateCatalog(sample);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.issues).toEqual([]);
    expect(result.ads.length).toBeGreaterThanOrEqual(24);
    expect(new Set(result.ads.map((a) => a.country)).size).toBeGreaterThan(5);
    expect(new Set(result.ads.map((a) => a.lang)).size).toBeGreaterThan(5);
    expect(result.ads.some((a) => a.start_hour > a.end_hour && a.end_hour !== 0)).toBe(true); // wraps
    expect(result.ads.some((a) => a.end_hour === 0)).toBe(true);
    expect(sample.ads.some((a) => a.lang === "fre")).toBe(true);
    expect(
      result.ads.some((a) => a.country === "us" && a.lang === "eng" && a.start_hour === a.end_hour % 24),
    ).toBe(true);
  });

  test("property: never throws on arbitrary JSON, and ads + issues account for every entry", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.jsonValue(),
            fc.record({
              id: fc.string(),
              country: fc.string(),
              lang: fc.string(),
              video_url: fc.webUrl(),
              start_hour: fc.integer({ min: -2, max: 26 }),
              end_hour: fc.integer({ min: -2, max: 26 }),
            }),
          ),
        ),
        (entries) => {
          const result = validateCatalog({ ads: entries });
          if (result.ok) expect(result.ads.length + result.issues.length).toBe(entries.length);
          else expect(result.code).toBe("all_invalid");
        },
      ),
      fuzz(100),
    );
  });
});

describe("video_url verdicts in a catalog (memoized by authority)", () => {
  /** URLs from a few pieces, so that authorities repeat, extend one another and end in every delimiter. */
  const url = fc
    .tuple(
      fc.constantFrom("https://", "http://", "HTTP://", "https:", "ftp://"),
      fc.constantFrom(
        "",
        "cdn.example",
        "cdn.example.com",
        "cdn.example.com:8080",
        "u@cdn.example",
        "[::1]",
        "/",
        "\\",
        "a b",
      ),
      fc.constantFrom("", ".com", ":99999", ":80", "-x"),
      fc.constantFrom("", "/", "/v.mp4", "?q=1", "#f", "\\v", "/a b"),
    )
    .map((parts) => parts.join(""));

  test("property: each entry's verdict is the rule's, whatever came before it", () => {
    // The rule, without any memo: printable ASCII after http(s)://, and WHATWG parses it with a host.
    const invalidAlone = (u: string): boolean => {
      if (u.length > 2048 || !/^https?:\/\/[\x21-\x7e]+$/i.test(u)) return true;
      try {
        const parsed = new URL(u);
        return !((parsed.protocol === "http:" || parsed.protocol === "https:") && parsed.hostname !== "");
      } catch {
        return true;
      }
    };
    fc.assert(
      fc.property(fc.array(url, { minLength: 1, maxLength: 40 }), (urls) => {
        const result = validateCatalog({ ads: urls.map((u, i) => good(`ad-${i}`, { video_url: u })) });
        const invalid = new Set(result.ok ? [] : urls.map((_, i) => i));
        for (const issue of result.issues) if (issue.code === "invalid_video_url") invalid.add(issue.index);
        expect(urls.map((u, i) => [u, invalid.has(i)])).toEqual(urls.map((u) => [u, invalidAlone(u)]));
      }),
      fuzz(300),
    );
  });

  test("an empty authority is not taken for the next URL's (cases the property found)", () => {
    // `https://` then `#`: an empty authority, which must not answer for `https:///…` after it.
    for (const urls of [
      ["https://#f", "https:///v.mp4"],
      ["https://?q=1", "https://\\v"],
      ["https://cdn.example", "https://cdn.example/v.mp4", "https://cdn.example.com/v.mp4"],
    ]) {
      const result = validateCatalog({ ads: urls.map((u, i) => good(`ad-${i}`, { video_url: u })) });
      const alone = urls.map((u) => {
        const one = validateCatalog({ ads: [good("x", { video_url: u })] });
        return !one.ok;
      });
      const invalid = urls.map((_, i) => !result.ok || result.issues.some((x) => x.index === i));
      expect(invalid).toEqual(alone);
    }
  });
});

describe("parseCatalogChunked", () => {
  const entry = (i: number) => ({
    id: `ad-${i}`,
    video_url: `https://cdn.example.com/v/${i}.mp4`,
    country: i % 5 === 0 ? "US" : "fr",
    lang: i % 2 === 0 ? "en" : "fre",
    start_hour: i % 24,
    end_hour: (i * 5) % 25,
  });
  const texts: Record<string, string> = {
    "a big plain list": JSON.stringify({
      ads: Array.from({ length: 4_000 }, (_, i) => entry(i)),
    }),
    "with invalid entries and a duplicate": JSON.stringify({
      ads: [...Array.from({ length: 2_000 }, (_, i) => entry(i)), { id: "x", country: "zz" }, entry(7)],
    }),
    "with a backslash (the whole text at once)": JSON.stringify({
      ads: [...Array.from({ length: 500 }, (_, i) => entry(i)), { ...entry(9_999), id: 'quo"te' }],
    }),
    // Pieces parse until the last, which does not: the whole text then goes to JSON.parse.
    "malformed at the end": `{"ads":[${Array.from({ length: 3_000 }, (_, i) => JSON.stringify(entry(i))).join(",")},{"id":}]}`,
  };
  for (const [name, text] of Object.entries(texts)) {
    test(`parseCatalogBytes: same result as parseCatalog of the decoded text: ${name}`, () => {
      const bytes = new TextEncoder().encode(text);
      const parse = spyOn(JSON, "parse");
      try {
        expect(parseCatalogBytes(bytes)).toEqual(parseCatalog(text));
        // A plain list is parsed in pieces from the bytes: JSON.parse never sees the whole text
        // (but for the two calls of parseCatalog's own general path, when it takes it).
        const whole = parse.mock.calls.filter(
          ([arg]) => typeof arg === "string" && arg.length >= text.length,
        );
        const plain = !text.includes("\\") && !name.startsWith("malformed");
        expect(whole.length).toBe(plain ? 0 : 2);
      } finally {
        parse.mockRestore();
      }
    });
  }

  test("parseCatalogBytes over many pieces with non-ASCII text and bad UTF-8 in them: as parseCatalog of the decoded text", () => {
    // About 400 KB: several pieces of 64 K, cut between entries wherever the bytes allow.
    const ads = Array.from({ length: 3_000 }, (_, i) => ({
      ...entry(i),
      video_url: i % 3 === 0 ? `https://cdn.example.com/é/${i}/😀.mp4` : `https://cdn.example.com/v/${i}.mp4`,
      ...(i % 5 === 0 ? { id: `ünï-${i}` } : {}),
    }));
    const bytes = new TextEncoder().encode(JSON.stringify({ ads }));
    // Every "é" (C3 A9) made bad UTF-8: a continuation byte, then a lead byte cut short by "/".
    for (let at = bytes.indexOf(0xc3); at >= 0; at = bytes.indexOf(0xc3, at + 2)) {
      if (bytes[at + 1] !== 0xa9) continue;
      bytes[at] = 0xa9;
      bytes[at + 1] = 0xc3;
    }
    const text = new TextDecoder().decode(bytes);
    expect(text).toContain("\ufffd\ufffd/");
    const parse = spyOn(JSON, "parse");
    try {
      const result = parseCatalogBytes(bytes);
      // In pieces: JSON.parse never saw the whole text.
      expect(parse.mock.calls.every(([arg]) => typeof arg !== "string" || arg.length < text.length / 2)).toBe(
        true,
      );
      expect(result).toEqual(parseCatalog(text));
      // Non-ASCII ids (every 5th) and URLs (every 3rd) are invalid entries, not parse errors.
      const valid = ads.filter((_, i) => i % 3 !== 0 && i % 5 !== 0).length;
      expect(result.ok && result.ads.length).toBe(valid);
      expect(result.issues.length).toBe(3_000 - valid);
    } finally {
      parse.mockRestore();
    }
  });

  test("property: parseCatalogBytes gives what parseCatalog gives for the decoded bytes (BOM, whitespace, non-ASCII, bad UTF-8)", () => {
    const value = fc.oneof(
      fc.string({ unit: "binary" }),
      fc.constantFrom("us", "FR", "eng", "fr-CA", "https://cdn.example.com/v.mp4", "ünï", "\u{1F600}"),
      fc.integer({ min: -1, max: 25 }),
    );
    const entry = fc.record(
      {
        id: fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,12}$/), value),
        video_url: value,
        country: value,
        lang: value,
        start_hour: value,
        end_hour: value,
      },
      { requiredKeys: [] },
    );
    const ws = fc.constantFrom("", " ", "\n", "\t ", "\r\n");
    fc.assert(
      fc.property(
        fc.array(fc.tuple(entry, ws), { maxLength: 30 }),
        fc.boolean(),
        ws,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0x80, max: 0xff })), { maxLength: 3 }),
        (entries, bom, pad, corrupt) => {
          const list = entries.map(([e, w]) => `${w}${JSON.stringify(e)}${w}`).join(",");
          const text = `${bom ? "\ufeff" : ""}${pad}{${pad}"ads"${pad}:${pad}[${list}]${pad}}${pad}`;
          const bytes = new TextEncoder().encode(text);
          // A few bytes replaced by non-ASCII ones (possibly bad UTF-8), past the BOM.
          for (const [at, byte] of corrupt) if (bytes.length > 3) bytes[3 + (at % (bytes.length - 3))] = byte;
          expect(parseCatalogBytes(bytes)).toEqual(parseCatalog(new TextDecoder().decode(bytes)));
        },
      ),
      fuzz(300),
    );
  });

  for (const [name, text] of Object.entries(texts)) {
    test(`same result as parseCatalog: ${name}`, async () => {
      let pauses = 0;
      const sliced = await parseCatalogChunked(text, () => Promise.resolve().then(() => void pauses++), 0);
      expect(sliced).toEqual(parseCatalog(text));
      expect(pauses).toBeGreaterThan(0);
    });
  }
});

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  createVastCache,
  formatDuration,
  noFillUrn,
  prepareVast,
  renderNoFill,
  renderPrepared,
  renderVast,
  type VastAd,
  type VastSource,
} from "../../../src/vast/render.ts";
import { toAnyUri } from "../../../src/vast/xml.ts";
import { schemaCheckUnavailable, validateAll } from "./xmllint.ts";

const ODD = `&<>"'`;
const ADS: readonly VastAd[] = [
  { id: "ad-1", video_url: "https://cdn.example.com/v/1.mp4" },
  {
    id: "ad-2",
    video_url: "https://cdn.example.com/v/2.webm?x=1&y=2",
    duration: 15.5,
    mime_type: "video/webm",
    width: 640,
    height: 360,
  },
  { id: `odd${ODD}]]>id`, video_url: `https://cdn.example.com/a${ODD}]]>b?q=${ODD}]]>#f#g` },
  { id: "cdata-end", video_url: "https://cdn.example.com/x]]>y.mp4?a=]]>&b=[c]" },
  { id: "long", video_url: "https://cdn.example.com/long.mp4", duration: 3600 },
  { id: "tiny", video_url: "https://[2001:db8::1]:8443/v.mp4?a=%41%zz%", duration: 0.001 },
  { id: "unicode", video_url: "https://cdn.example.com/vidéo 1.mp4?t=日本" },
];
const CTX = {
  adServingId: `serving${ODD}]]>`,
  impressionUrl: `https://adsrv.example.com/impression?t=abc.DEF_-&x=${ODD}]]>`,
};
const REASONS = ["no_ad_for_country_lang", "outside_hours", "frequency_capped", `weird ${ODD}]]>`];

const unavailable = schemaCheckUnavailable();

/** Reads values back out of a document with xmllint's XPath (one process per document). */
function xpath(doc: string, expressions: readonly string[]): string[] {
  const sep = "\u241F";
  const expr = `concat(${expressions.map((e) => `string(${e}), "${sep}"`).join(", ")})`;
  const run = Bun.spawnSync(["xmllint", "--xpath", expr, "-"], { stdin: new TextEncoder().encode(doc) });
  expect(run.exitCode).toBe(0);
  return run.stdout.toString().split(sep).slice(0, expressions.length);
}
const el = (name: string) => `//*[local-name()="${name}"]`;

describe.skipIf(unavailable !== null)("VAST documents validate against the IAB VAST 4.2 schema", () => {
  test("ads (odd characters, `]]>`, missing optional fields), with and without an error URL", () => {
    const docs = ADS.flatMap((ad) => [
      renderVast(ad, CTX),
      renderVast(ad, { ...CTX, errorUrl: "https://adsrv.example.com/vast_error?code=[ERRORCODE]&x=]]>" }),
      renderVast(ad, { ...CTX, adSystem: `sys${ODD}`, adSystemVersion: `1"2`, idRegistry: `r${ODD}` }),
    ]);
    const errors = validateAll(docs);
    expect(errors).toEqual(docs.map(() => []));
  });

  test("no fill, for each reason, with and without an error URL: VAST 4.2 holding only an Error", () => {
    const docs = REASONS.flatMap((reason) => [
      renderNoFill(reason),
      renderNoFill(reason, `https://adsrv.example.com/vast_error?reason=${reason}&code=[ERRORCODE]`),
    ]);
    expect(validateAll(docs)).toEqual(docs.map(() => []));
    for (const doc of docs) {
      const [children, errors, version] = xpath(doc, [
        `count(/*[local-name()="VAST"]/*)`,
        `count(/*[local-name()="VAST"]/*[local-name()="Error"])`,
        "/*/@version",
      ]);
      expect([children, errors, version]).toEqual(["1", "1", "4.2"]);
    }
  });

  test("a document without the VAST namespace is refused (the check can fail)", () => {
    const bad = renderNoFill("outside_hours").replace(' xmlns="http://www.iab.com/VAST"', "");
    const [errors] = validateAll([bad]);
    expect(errors?.length).toBeGreaterThan(0);
    const raw = renderVast(ADS[0] as VastAd, CTX).replace("<![CDATA[https://cdn", "<![CDATA[https://[cdn");
    expect(validateAll([raw])[0]?.length).toBeGreaterThan(0);
  });

  test("fast-check: arbitrary ids and URLs always yield valid documents", () => {
    // Characters that matter to URI syntax and XML, densely: raw, most of these strings fail.
    const uriish = fc.string({
      unit: fc.constantFrom(..."%[]#:@/?&=;+ <>\"'{}|\\^`aZ09.-_~é\u0007\uD800"),
      maxLength: 16,
    });
    const docs = fc.sample(
      fc.record({
        id: fc.string({ minLength: 1, maxLength: 40, unit: "binary" }),
        video_url: fc.oneof(
          fc.webUrl({ withQueryParameters: true, withFragments: true }),
          fc.string({ unit: "binary" }),
          uriish,
          uriish.map((s) => `https://${s}`),
        ),
        err: fc.oneof(fc.string({ unit: "binary" }), uriish),
      }),
      { numRuns: 300, seed: 7 },
    );
    const rendered = docs.map(({ id, video_url, err }) =>
      renderVast({ id, video_url }, { adServingId: id, impressionUrl: video_url, errorUrl: err }),
    );
    const errors = validateAll(rendered);
    const failures = errors.flatMap((e, i) => (e.length === 0 ? [] : [{ input: docs[i], errors: e }]));
    expect(failures).toEqual([]);
  });

  test("values read back: ids, URLs, defaults and given media fields", () => {
    for (const ad of ADS) {
      const doc = renderVast(ad, CTX);
      const [adId, title, universal, servingId, impression, media, duration, type, width, height, delivery] =
        xpath(doc, [
          `${el("Ad")}/@id`,
          el("AdTitle"),
          el("UniversalAdId"),
          el("AdServingId"),
          el("Impression"),
          el("MediaFile"),
          el("Duration"),
          `${el("MediaFile")}/@type`,
          `${el("MediaFile")}/@width`,
          `${el("MediaFile")}/@height`,
          `${el("MediaFile")}/@delivery`,
        ]);
      expect([adId, title, universal]).toEqual([ad.id, ad.id, ad.id]);
      expect(servingId).toBe(CTX.adServingId);
      expect(impression).toBe(toAnyUri(CTX.impressionUrl));
      expect(media).toBe(toAnyUri(ad.video_url));
      expect(duration).toBe(formatDuration(ad.duration ?? 30));
      expect(type).toBe(ad.mime_type ?? "video/mp4");
      expect([width, height]).toEqual([String(ad.width ?? 1280), String(ad.height ?? 720)]);
      expect(delivery).toBe("progressive");
    }
  });
});

if (unavailable !== null) test.skip(`VAST schema check skipped: ${unavailable}`, () => {});

describe("rendering", () => {
  test("a plain URL is kept verbatim in CDATA; the document is in the IAB namespace", () => {
    const doc = renderVast(ADS[0] as VastAd, {
      adServingId: "s1",
      impressionUrl: "https://a.example/i?t=x.y",
    });
    expect(doc).toContain('<VAST xmlns="http://www.iab.com/VAST" version="4.2">');
    expect(doc).toContain("<Impression><![CDATA[https://a.example/i?t=x.y]]></Impression>");
    expect(doc).toContain("<MediaFile");
    expect(doc).toContain("<![CDATA[https://cdn.example.com/v/1.mp4]]>");
    expect(doc).toContain("<Duration>00:00:30.000</Duration>");
    expect(doc).toContain('type="video/mp4" width="1280" height="720"');
    expect(doc).toContain("<AdSystem>adsrv</AdSystem>");
    expect(doc).not.toContain("<Error>");
  });

  test("prepared parts + per-request values give the same document as one-shot rendering", () => {
    for (const ad of ADS) {
      const prepared = prepareVast(ad);
      expect(renderPrepared(prepared, CTX)).toBe(renderVast(ad, CTX));
      expect(prepared.head).not.toContain(CTX.impressionUrl);
      expect(prepared.tail).not.toContain("Impression");
    }
  });

  test("odd characters are escaped in text and attributes", () => {
    const doc = renderVast(ADS[2] as VastAd, CTX);
    expect(doc).toContain(`<Ad id="odd&amp;&lt;&gt;&quot;']]&gt;id">`);
    expect(doc).toContain("<AdTitle>odd&amp;&lt;&gt;\"']]&gt;id</AdTitle>");
    expect(doc).toContain("<AdServingId>serving&amp;&lt;&gt;\"']]&gt;</AdServingId>");
  });

  test("durations: HH:MM:SS.mmm, default 30 s for missing or out-of-range values", () => {
    expect(formatDuration(undefined)).toBe("00:00:30.000");
    expect(formatDuration(15.5)).toBe("00:00:15.500");
    expect(formatDuration(3600)).toBe("01:00:00.000");
    expect(formatDuration(3599.9996)).toBe("01:00:00.000");
    expect(formatDuration(61.0404)).toBe("00:01:01.040");
    expect(formatDuration(0.0001)).toBe("00:00:00.001");
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 86_400]) {
      expect(formatDuration(bad)).toBe("00:00:30.000");
    }
  });

  test("no fill: the reason is in the URN; the same reason gives the same (memoized) document", () => {
    expect(renderNoFill("outside_hours")).toContain(
      "<Error><![CDATA[urn:adsrv:no-fill:outside_hours]]></Error>",
    );
    expect(renderNoFill("outside_hours")).toBe(renderNoFill("outside_hours"));
    expect(noFillUrn("a b/c")).toBe("urn:adsrv:no-fill:a%20b%2Fc");
    expect(renderNoFill("x", "https://e.example/err?r=x")).toContain("<![CDATA[https://e.example/err?r=x]]>");
  });

  /** What the cache reads, as a snapshot's ad table gives it. */
  const source = (list: readonly VastAd[]): VastSource => ({ at: (i) => list[i] as VastAd });

  test("the cache prepares each ad once and stays within its bound", () => {
    const cache = createVastCache({ maxEntries: 3 });
    const ads = source(ADS.slice(0, 5));
    const first = cache.get(ads, 0);
    expect(cache.get(ads, 0)).toBe(first);
    for (let i = 0; i < 5; i++) cache.get(ads, i);
    expect(cache.size).toBe(3);
    expect(cache.get(ads, 0)).not.toBe(first); // aged out, prepared again
    expect(cache.get(ads, 0).head).toBe(first.head);
    cache.clear();
    expect(cache.size).toBe(0);
  });

  test("the cache is per table: a new catalog's ad 0 is never an old catalog's ad 0", () => {
    const cache = createVastCache();
    const before = source(ADS.slice(0, 2));
    const after = source(ADS.slice(1, 3));
    expect(cache.get(before, 0).head).toBe(prepareVast(before.at(0) as VastAd).head);
    expect(cache.get(after, 0).head).toBe(prepareVast(after.at(0) as VastAd).head);
    expect(cache.get(after, 0).head).not.toBe(cache.get(before, 0).head);
  });
});

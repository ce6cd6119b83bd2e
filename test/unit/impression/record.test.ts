import { describe, expect, test } from "bun:test";
import { MemoryLedger } from "../../../src/impression/ledger.ts";
import { createImpressionUrls, recordImpression, tokenFromSearch } from "../../../src/impression/record.ts";
import { createImpressionSigner } from "../../../src/impression/token.ts";
import { ServedStats } from "../../../src/stats/served.ts";

const T0 = Date.UTC(2026, 10, 3, 14, 5);
const signer = createImpressionSigner(new Uint8Array(32).fill(3), { ttlSeconds: 60 });

function deps() {
  return {
    signer,
    ledger: new MemoryLedger({ maxEntries: 100 }),
    stats: new ServedStats({ startedAtMs: T0 }),
  };
}

describe("impression URLs", () => {
  test("url and JSON body: the member is appended to an object's head, which makes valid JSON", () => {
    const urls = createImpressionUrls("https://ads.example.com/v1/");
    const token = signer.sign({ adId: "a", decidedAtMs: T0, nonce: "n" });
    expect(urls.url(token)).toBe(`https://ads.example.com/v1/impression?t=${token}`);
    const body = JSON.stringify({ id: 'a"\\', video_url: "https://cdn.example.com/a.mp4" });
    expect(JSON.parse(urls.withImpressionUrl(body.slice(0, -1), token))).toEqual({
      id: 'a"\\',
      video_url: "https://cdn.example.com/a.mp4",
      impression_url: `https://ads.example.com/v1/impression?t=${token}`,
    });
  });

  test("a base with characters JSON must escape is escaped once", () => {
    const urls = createImpressionUrls("http://127.0.0.1:8080/a%22b");
    expect(JSON.parse(urls.withImpressionUrl('{"id":"x"', "T.t")).impression_url).toBe(
      "http://127.0.0.1:8080/a%22b/impression?t=T.t",
    );
  });

  test("bad bases are refused", () => {
    for (const bad of ["/relative", "ftp://x/", "https://x/?q=1", "https://x/#f", "nope"]) {
      expect(() => createImpressionUrls(bad)).toThrow(RangeError);
    }
  });
});

describe("tokenFromSearch", () => {
  test.each([
    ["t=abc.def", { ok: true, token: "abc.def" }],
    ["x=1&t=abc.def&y", { ok: true, token: "abc.def" }],
    ["t=abc%2Edef", { ok: true, token: "abc.def" }],
    ["", { ok: false, detail: "t (the impression token) is required" }],
    ["t=", { ok: false, detail: "t (the impression token) is required" }],
    ["tt=1", { ok: false, detail: "t (the impression token) is required" }],
    ["t=a&t=b", { ok: false, detail: "t is given more than once" }],
    ["t=%zz", { ok: false, detail: "malformed percent-encoding" }],
    [`t=${"a".repeat(1025)}`, { ok: false, detail: "t is too long to be an impression token" }],
  ])("%s", (search, expected) => {
    expect(tokenFromSearch(search)).toEqual(expected as ReturnType<typeof tokenFromSearch>);
  });
});

describe("recordImpression", () => {
  test("counted once, then replays; counted in the stats in the decision's hour", () => {
    const d = deps();
    const token = signer.sign({ adId: "ad-1", decidedAtMs: T0, nonce: "n1", country: "us", lang: "eng" });
    const first = recordImpression(d, token, T0 + 1000);
    expect(first).toMatchObject({ kind: "counted", claims: { adId: "ad-1" } });
    expect(recordImpression(d, token, T0 + 2000)).toMatchObject({ kind: "replay" });
    expect(recordImpression(d, token, T0 + 59_999)).toMatchObject({ kind: "replay" });
    expect(d.stats.snapshot(T0).rows).toEqual([
      { ad: "ad-1", country: "us", lang: "eng", hour: 14, served: 0, impressions: 1 },
    ]);
  });

  test("expired, forged and garbled tokens are not counted", () => {
    const d = deps();
    const token = signer.sign({ adId: "ad-1", decidedAtMs: T0, nonce: "n1" });
    expect(recordImpression(d, token, T0 + 60_000)).toEqual({ kind: "expired" });
    const other = createImpressionSigner(new Uint8Array(32).fill(4), { ttlSeconds: 60 });
    expect(recordImpression(d, other.sign({ adId: "ad-1", decidedAtMs: T0, nonce: "n" }), T0)).toEqual({
      kind: "invalid",
      reason: "bad_signature",
    });
    expect(recordImpression(d, "garbage", T0)).toEqual({ kind: "invalid", reason: "malformed" });
    expect(d.stats.snapshot(T0).totals.impressions).toBe(0);
  });

  test("tokens without country and language count under 'unknown'", () => {
    const d = deps();
    void recordImpression(d, signer.sign({ adId: "ad-2", decidedAtMs: T0, nonce: "n" }), T0);
    expect(d.stats.snapshot(T0).rows[0]).toMatchObject({ ad: "ad-2", country: "unknown", lang: "unknown" });
  });

  test("an asynchronous ledger (like Redis) is awaited", async () => {
    const seen = new Set<string>();
    const d = {
      ...deps(),
      ledger: {
        record: async (id: string) => {
          if (seen.has(id)) return "replay" as const;
          seen.add(id);
          return "counted" as const;
        },
      },
    };
    const token = signer.sign({ adId: "ad-3", decidedAtMs: T0, nonce: "n" });
    expect(await recordImpression(d, token, T0)).toMatchObject({ kind: "counted" });
    expect(await recordImpression(d, token, T0)).toMatchObject({ kind: "replay" });
    expect(d.stats.snapshot(T0).totals.impressions).toBe(1);
  });
});

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type AdKeys, ServedStats } from "../../../src/stats/served.ts";

const T0 = Date.UTC(2026, 10, 3, 14, 0);

function filled(): ServedStats {
  const stats = new ServedStats({ startedAtMs: T0 });
  for (let i = 0; i < 3; i++) stats.served("a1", "us", "eng", 14);
  stats.served("a2", "us", "eng", 14);
  stats.served("a3", "fr", "fra", 9);
  stats.impression("a1", "us", "eng", 14);
  stats.impression("a1", "us", "eng", 14);
  stats.noFill("us", "eng", 14, "outside_hours");
  stats.noFill("de", "deu", 3, "no_ad_for_country_lang");
  return stats;
}

describe("ServedStats", () => {
  test("snapshot: totals, per ad, per country, per reason, rows, rates", () => {
    const snap = filled().snapshot(T0 + 5000);
    expect(snap.generated_at).toBe("2026-11-03T14:00:05.000Z");
    expect(snap.since).toBe("2026-11-03T14:00:00.000Z");
    expect(snap.totals).toEqual({
      requests: 7,
      served: 5,
      no_fill: 2,
      impressions: 2,
      fill_rate: 0.714286,
      show_rate: 0.4,
    });
    // a1: 3 of the 5 requests for us/eng (3 + 1 served, 1 no fill).
    expect(snap.by_ad.a1).toEqual({
      requests: 5,
      served: 3,
      impressions: 2,
      fill_rate: 0.6,
      show_rate: 0.666667,
    });
    expect(snap.by_ad.a2).toEqual({ requests: 5, served: 1, impressions: 0, fill_rate: 0.2, show_rate: 0 });
    expect(snap.by_ad.a3).toEqual({ requests: 1, served: 1, impressions: 0, fill_rate: 1, show_rate: 0 });
    expect(snap.by_country.us).toEqual({
      requests: 5,
      served: 4,
      no_fill: 1,
      impressions: 2,
      fill_rate: 0.8,
      show_rate: 0.5,
    });
    expect(snap.by_country.de).toEqual({
      requests: 1,
      served: 0,
      no_fill: 1,
      impressions: 0,
      fill_rate: 0,
      show_rate: null,
    });
    expect(snap.no_fill_by_reason).toEqual({ no_ad_for_country_lang: 1, outside_hours: 1 });
    expect(snap.rows).toEqual([
      { ad: "a1", country: "us", lang: "eng", hour: 14, served: 3, impressions: 2 },
      { ad: "a2", country: "us", lang: "eng", hour: 14, served: 1, impressions: 0 },
      { ad: "a3", country: "fr", lang: "fra", hour: 9, served: 1, impressions: 0 },
    ]);
    expect(snap.no_fill_rows).toEqual([
      { country: "de", lang: "deu", reason: "no_ad_for_country_lang", hour: 3, count: 1 },
      { country: "us", lang: "eng", reason: "outside_hours", hour: 14, count: 1 },
    ]);
    expect(snap.dropped).toEqual({ served: 0, impressions: 0, no_fill: 0 });
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap); // plain JSON, nothing lost
    expect(filled().snapshot(T0, { includeRows: false }).rows).toEqual([]);
  });

  test("empty: rates are null", () => {
    const snap = new ServedStats({ startedAtMs: T0 }).snapshot(T0);
    expect(snap.totals).toEqual({
      requests: 0,
      served: 0,
      no_fill: 0,
      impressions: 0,
      fill_rate: null,
      show_rate: null,
    });
    expect(snap.rows).toEqual([]);
  });

  test("drain: only what grew since the previous drain; snapshots stay cumulative", () => {
    const stats = filled();
    const first = stats.drain();
    expect(first.rows).toHaveLength(3);
    expect(first.rows).toContainEqual({
      ad: "a1",
      country: "us",
      lang: "eng",
      hour: 14,
      served: 3,
      impressions: 2,
    });
    expect(first.no_fill_rows).toHaveLength(2);
    expect(stats.drain()).toEqual({ rows: [], no_fill_rows: [] });
    stats.impression("a2", "us", "eng", 14);
    stats.served("a4", "us", "eng", 15);
    stats.noFill("us", "eng", 14, "outside_hours");
    expect(stats.drain()).toEqual({
      rows: [
        { ad: "a2", country: "us", lang: "eng", hour: 14, served: 0, impressions: 1 },
        { ad: "a4", country: "us", lang: "eng", hour: 15, served: 1, impressions: 0 },
      ],
      no_fill_rows: [{ country: "us", lang: "eng", reason: "outside_hours", hour: 14, count: 1 }],
    });
    expect(stats.snapshot(T0).totals.served).toBe(6);
  });

  test("bounded: rows past maxKeys are dropped and counted; existing rows keep counting", () => {
    const stats = new ServedStats({ startedAtMs: T0, maxKeys: 48, maxNoFillKeys: 2 });
    for (let ad = 0; ad < 5; ad++) for (let h = 0; h < 24; h++) stats.served(`ad${ad}`, "us", "eng", h);
    expect(stats.size.rows).toBe(48);
    stats.served("ad0", "us", "eng", 3);
    stats.impression("ad9", "us", "eng", 3);
    for (const reason of ["a", "b", "c"]) stats.noFill("us", "eng", 1, reason);
    const snap = stats.snapshot(T0);
    expect(snap.dropped).toEqual({ served: 72, impressions: 1, no_fill: 1 });
    expect(snap.rows.find((r) => r.ad === "ad0" && r.hour === 3)?.served).toBe(2);
    expect(snap.limits).toEqual({ max_keys: 48, max_no_fill_keys: 2 });
  });

  test("servedAd past the bound: refused ads stay dropped cheaply, and count once the bound is raised", () => {
    const ids = ["a", "b", "c", "d"];
    const table: AdKeys = { length: 4, id: (i) => ids[i] as string, country: () => "us", lang: () => "eng" };
    const stats = new ServedStats({ startedAtMs: T0, maxKeys: 3 });
    for (let ad = 0; ad < 3; ad++) stats.servedAd(table, ad, 1);
    stats.servedAd(table, 3, 1);
    stats.servedAd(table, 3, 2);
    stats.servedAd(table, 0, 1);
    expect(stats.snapshot(T0).dropped.served).toBe(2);
    stats.setMaxKeys(5);
    stats.servedAd(table, 3, 1);
    stats.servedAd(table, 3, 1);
    const snap = stats.snapshot(T0);
    expect(snap.dropped.served).toBe(2);
    expect(snap.rows.find((r) => r.ad === "d" && r.hour === 1)?.served).toBe(2);
    expect(snap.rows.find((r) => r.ad === "a" && r.hour === 1)?.served).toBe(2);
  });

  test("servedAd remembers a refusal (no second lookup) and forgets remembered keys when retain frees rows", () => {
    let lookups = 0;
    const ids = ["a", "b", "c", "d"];
    const table: AdKeys = {
      length: 4,
      id: (i) => {
        lookups++;
        return ids[i] as string;
      },
      country: () => "us",
      lang: () => "eng",
    };
    const stats = new ServedStats({ startedAtMs: T0, maxKeys: 2 });
    stats.servedAd(table, 0, 0);
    stats.servedAd(table, 1, 0);
    for (let i = 0; i < 3; i++) stats.servedAd(table, 2, 0);
    expect(lookups).toBe(3); // ads 0 and 1 once each, ad 2 once: its refusal is remembered
    stats.retain((id) => id !== "a"); // frees a row: remembered keys and refusals are forgotten
    stats.servedAd(table, 2, 0); // now fits
    stats.servedAd(table, 1, 0);
    stats.servedAd(table, 0, 0); // "a" again: a new row, refused (the table is full again)
    const snap = stats.snapshot(T0);
    expect(snap.rows.map((r) => `${r.ad}:${r.served}`).sort()).toEqual(["b:2", "c:1"]);
    expect(snap.dropped.served).toBe(4);
    expect(stats.size.rows).toBe(2);
  });

  test("a retained-away ad served again gets a fresh row, not its freed key", () => {
    const ids = ["a", "b"];
    const table: AdKeys = { length: 2, id: (i) => ids[i] as string, country: () => "us", lang: () => "eng" };
    const stats = new ServedStats({ startedAtMs: T0 });
    stats.servedAd(table, 0, 0);
    stats.servedAd(table, 1, 0);
    stats.retain((id) => id !== "a");
    stats.servedAd(table, 0, 0);
    stats.servedAd(table, 0, 5);
    const rows = stats.snapshot(T0).rows.map((r) => `${r.ad}:${r.hour}:${r.served}`);
    expect(rows.sort()).toEqual(["a:0:1", "a:5:1", "b:0:1"]);
    expect(stats.size.rows).toBe(3);
  });

  test("invalid hours are dropped, never thrown", () => {
    const stats = new ServedStats({ startedAtMs: T0 });
    for (const h of [-1, 24, 1.5, Number.NaN]) {
      stats.served("a", "us", "eng", h);
      stats.noFill("us", "eng", h, "x");
    }
    expect(stats.size).toEqual({ rows: 0, noFillRows: 0 });
    expect(stats.snapshot(T0).dropped).toEqual({ served: 4, impressions: 0, no_fill: 4 });
  });

  test("retain drops ads that left the catalog and frees their rows for new ones", () => {
    const stats = new ServedStats({ startedAtMs: T0, maxKeys: 24 });
    for (let h = 0; h < 24; h++) stats.served("old", "us", "eng", h);
    stats.served("new", "us", "eng", 0);
    expect(stats.snapshot(T0).dropped.served).toBe(1);
    stats.retain((id) => id !== "old");
    expect(stats.size.rows).toBe(0);
    stats.served("new", "us", "eng", 0);
    stats.setMaxKeys(1);
    stats.served("new", "us", "eng", 1);
    const snap = stats.snapshot(T0);
    expect(snap.rows).toEqual([
      { ad: "new", country: "us", lang: "eng", hour: 0, served: 1, impressions: 0 },
    ]);
    expect(snap.by_ad.old).toBeUndefined();
    expect(snap.dropped.served).toBe(2);
    expect(() => stats.setMaxKeys(-1)).toThrow(RangeError);
  });

  test("ids are kept exactly (non-ASCII, lone surrogates, empty, 5,000 units), also after retain compacts them", () => {
    const ids = ["é-ad", "\ud800x", "", "x".repeat(5000), "🎮", "a\u0000b", "plain-1"];
    const stats = new ServedStats({ startedAtMs: T0 });
    for (const id of ids) {
      stats.served(id, "us", "eng", 2);
      stats.served(id, "fr", "fra", 2);
    }
    const served = () =>
      new Map(stats.snapshot(T0).rows.map((r) => [`${r.ad}|${r.country}|${r.lang}`, r.served] as const));
    expect(served()).toEqual(
      new Map(ids.flatMap((id) => [[`${id}|us|eng`, 1] as const, [`${id}|fr|fra`, 1] as const])),
    );
    stats.retain((id) => id !== "\ud800x" && id !== "");
    const kept = ids.filter((id) => id !== "\ud800x" && id !== "");
    for (const id of kept) stats.served(id, "us", "eng", 2);
    // New keys reuse the freed key numbers, with ids of other lengths and units.
    const added = ["\udc00", `${"y".repeat(4095)}🎮${"z".repeat(9000)}`, "ü"];
    for (const id of added) stats.served(id, "de", "deu", 2);
    expect(served()).toEqual(
      new Map([
        ...kept.flatMap((id) => [[`${id}|us|eng`, 2] as const, [`${id}|fr|fra`, 1] as const]),
        ...added.map((id) => [`${id}|de|deu`, 1] as const),
      ]),
    );
    expect(stats.size.rows).toBe(2 * kept.length + added.length);
  });

  test("ad ids like __proto__ are ordinary keys in the JSON", () => {
    const stats = new ServedStats({ startedAtMs: T0 });
    stats.served("__proto__", "us", "eng", 0);
    const json = JSON.parse(JSON.stringify(stats.snapshot(T0)));
    expect(Object.keys(json.by_ad)).toEqual(["__proto__"]);
  });

  test("thousands of keys: the key index grows and finds every row again; retain relinks the rest", () => {
    const stats = new ServedStats({ startedAtMs: 0 });
    const ids = Array.from({ length: 3_000 }, (_, i) => `ad-${i}`);
    // Two passes: the second finds every key made by the first (through several index growths).
    for (let pass = 0; pass < 2; pass++)
      for (const [i, id] of ids.entries()) stats.served(id, i % 2 ? "us" : "fr", "eng", i % 24);
    expect(stats.size.rows).toBe(3_000);
    const servedOf = () => new Map(stats.snapshot(0).rows.map((r) => [r.ad, r.served]));
    expect([...servedOf().values()].every((n) => n === 2)).toBe(true);
    stats.retain((id) => Number(id.slice(3)) % 3 !== 0); // a third leave the catalog
    expect(stats.size.rows).toBe(2_000);
    for (const [i, id] of ids.entries()) stats.served(id, i % 2 ? "us" : "fr", "eng", i % 24);
    const after = servedOf();
    expect(after.size).toBe(3_000);
    for (const [i, id] of ids.entries()) expect(after.get(id)).toBe(i % 3 === 0 ? 1 : 3);
  });

  test("fast-check: counts and drops match a reference model, and the sum of drains equals the snapshot", () => {
    const event = fc.record({
      kind: fc.constantFrom(
        "served",
        "served",
        "servedAd",
        "servedAd",
        "servedAd",
        "impression",
        "noFill",
        "drain",
        "retain",
        "setMaxKeys",
      ),
      ad: fc.constantFrom("a", "b", "c", "ad-000001", "ad-100001"),
      country: fc.constantFrom("us", "fr"),
      lang: fc.constantFrom("eng", "fre"),
      hour: fc.integer({ min: 0, max: 23 }),
      table: fc.integer({ min: 0, max: 1 }),
      n: fc.integer({ min: 0, max: 4 }), // 4: past the table's end, dropped
      max: fc.constantFrom(3, 6, 12, 1000),
    });
    // Two catalogs' ads (`servedAd` counts by ad number): the same ids, some under other markets.
    const table = (rows: readonly (readonly [string, string, string])[]): AdKeys => ({
      length: rows.length,
      id: (i) => (rows[i] as readonly string[])[0] as string,
      country: (i) => (rows[i] as readonly string[])[1] as string,
      lang: (i) => (rows[i] as readonly string[])[2] as string,
    });
    const tables = [
      table([
        ["a", "us", "eng"],
        ["b", "us", "eng"],
        ["c", "fr", "fre"],
        ["ad-000001", "us", "fre"],
      ]),
      table([
        ["a", "fr", "fre"],
        ["b", "us", "eng"],
        ["ad-100001", "us", "eng"],
        ["c", "fr", "eng"],
      ]),
    ];
    fc.assert(
      fc.property(fc.constantFrom(3, 6, 1000), fc.array(event, { maxLength: 200 }), (maxKeys, events) => {
        const stats = new ServedStats({ startedAtMs: 0, maxKeys });
        const model = new Map<string, number>();
        // Rows (ad, country, lang, hour) in use: a new one is refused while `max` are in use.
        const rows = new Set<string>();
        let max: number = maxKeys;
        const dropped = { served: 0, impressions: 0, no_fill: 0 };
        const row = (ad: string, country: string, lang: string, hour: number): boolean => {
          const key = `${ad}|${country}|${lang}|${hour}`;
          if (!rows.has(key) && rows.size >= max) return false;
          rows.add(key);
          return true;
        };
        const drained = new Map<string, number>();
        const bump = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);
        const absorb = () => {
          const d = stats.drain();
          for (const r of d.rows) {
            bump(drained, `s|${r.ad}|${r.country}|${r.lang}|${r.hour}`, r.served);
            bump(drained, `i|${r.ad}|${r.country}|${r.lang}|${r.hour}`, r.impressions);
          }
          for (const r of d.no_fill_rows) bump(drained, `n|${r.country}|${r.hour}`, r.count);
        };
        for (const e of events) {
          if (e.kind === "served") {
            stats.served(e.ad, e.country, e.lang, e.hour);
            if (row(e.ad, e.country, e.lang, e.hour))
              bump(model, `s|${e.ad}|${e.country}|${e.lang}|${e.hour}`, 1);
            else dropped.served++;
          } else if (e.kind === "servedAd") {
            const t = tables[e.table] as AdKeys;
            stats.servedAd(t, e.n, e.hour);
            if (e.n < t.length && row(t.id(e.n), t.country(e.n), t.lang(e.n), e.hour))
              bump(model, `s|${t.id(e.n)}|${t.country(e.n)}|${t.lang(e.n)}|${e.hour}`, 1);
            else dropped.served++;
          } else if (e.kind === "impression") {
            stats.impression(e.ad, e.country, e.lang, e.hour);
            if (row(e.ad, e.country, e.lang, e.hour))
              bump(model, `i|${e.ad}|${e.country}|${e.lang}|${e.hour}`, 1);
            else dropped.impressions++;
          } else if (e.kind === "setMaxKeys") {
            // A new bound: ads refused while the table was full may be counted again.
            stats.setMaxKeys(e.max);
            max = e.max;
          } else if (e.kind === "retain") {
            // The ad left the catalog: drained first (as the server does), then its rows go, and
            // the keys and slots they free are reused by later events.
            absorb();
            stats.retain((ad) => ad !== e.ad);
            for (const m of [model, drained])
              for (const k of [...m.keys()]) if (k.split("|")[1] === e.ad) m.delete(k);
            for (const k of [...rows]) if (k.split("|")[0] === e.ad) rows.delete(k);
          } else if (e.kind === "noFill") {
            stats.noFill(e.country, "eng", e.hour, "outside_hours");
            bump(model, `n|${e.country}|${e.hour}`, 1);
          } else absorb();
        }
        absorb();
        const snap = stats.snapshot(0);
        const seen = new Map<string, number>();
        for (const r of snap.rows) {
          bump(seen, `s|${r.ad}|${r.country}|${r.lang}|${r.hour}`, r.served);
          bump(seen, `i|${r.ad}|${r.country}|${r.lang}|${r.hour}`, r.impressions);
        }
        expect(stats.size.rows).toBe(snap.rows.length);
        expect(stats.size.rows).toBe(rows.size);
        expect(snap.dropped).toEqual(dropped);
        for (const r of snap.no_fill_rows) bump(seen, `n|${r.country}|${r.hour}`, r.count);
        const nonZero = (m: Map<string, number>) => new Map([...m].filter(([, v]) => v !== 0));
        expect(nonZero(seen)).toEqual(model);
        expect(nonZero(drained)).toEqual(model);
      }),
      { numRuns: 500, seed: 13 },
    );
  });
});

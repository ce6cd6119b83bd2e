/**
 * Seeded catalog generator for the benchmark suite.
 *
 *   bun scripts/bench/gen.ts <count> <out.json> [--seed N]
 *
 * The mix imitates a real campaign feed: a long tail of countries weighted like traffic
 * (Zipf-like), one to three languages per country written in the forms feeds use (`en`,
 * `eng`, `en-US`, `fre`, `fr`), and availability windows that are mostly all day, often
 * daytime, sometimes wrapping past midnight or ending at 0. The first ad of every
 * (country, language) pair runs all day, so every pair in the request mix fills at any hour.
 * The same seed and count always give the same document.
 * @module
 */

/** An entry as the campaign service sends it (raw codes, not canonicalized). */
export interface RawAd {
  readonly id: string;
  readonly video_url: string;
  readonly country: string;
  readonly lang: string;
  readonly start_hour: number;
  readonly end_hour: number;
}

/** A (country, language) pair as a player's request would send it, and its canonical lang. */
export interface Pair {
  readonly country: string;
  /** Request spellings of the language, e.g. `["en", "eng", "en-US"]`. */
  readonly langs: readonly string[];
  /** Relative traffic weight. */
  readonly weight: number;
}

/**
 * Markets in traffic order. Each language lists: the spellings a feed or a game may use
 * (ISO 639-1, 639-2/B or /T, BCP 47 tags), and its share of the country's ads.
 */
const MARKETS: readonly (readonly [string, readonly (readonly [readonly string[], number])[]])[] = [
  [
    "us",
    [
      [["eng", "en", "en-US"], 0.8],
      [["spa", "es", "es-US"], 0.2],
    ],
  ],
  ["br", [[["por", "pt", "pt-BR"], 1]]],
  [
    "de",
    [
      [["deu", "ger", "de", "de-DE"], 0.9],
      [["eng", "en"], 0.1],
    ],
  ],
  ["jp", [[["jpn", "ja", "ja-JP"], 1]]],
  ["gb", [[["eng", "en", "en-GB"], 1]]],
  ["fr", [[["fre", "fra", "fr", "fr-FR"], 1]]],
  [
    "in",
    [
      [["hin", "hi", "hi-IN"], 0.5],
      [["eng", "en", "en-IN"], 0.4],
      [["tam", "ta"], 0.1],
    ],
  ],
  ["mx", [[["spa", "es", "es-MX"], 1]]],
  ["kr", [[["kor", "ko", "ko-KR"], 1]]],
  [
    "ca",
    [
      [["eng", "en", "en-CA"], 0.7],
      [["fre", "fra", "fr-CA"], 0.3],
    ],
  ],
  ["it", [[["ita", "it", "it-IT"], 1]]],
  [
    "es",
    [
      [["spa", "es", "es-ES"], 0.85],
      [["cat", "ca"], 0.15],
    ],
  ],
  ["ru", [[["rus", "ru", "ru-RU"], 1]]],
  ["cn", [[["chi", "zho", "zh", "zh-CN"], 1]]],
  ["id", [[["ind", "id", "id-ID"], 1]]],
  ["tr", [[["tur", "tr", "tr-TR"], 1]]],
  ["au", [[["eng", "en", "en-AU"], 1]]],
  ["pl", [[["pol", "pl", "pl-PL"], 1]]],
  ["nl", [[["dut", "nld", "nl", "nl-NL"], 1]]],
  ["se", [[["swe", "sv", "sv-SE"], 1]]],
  ["ar", [[["spa", "es", "es-AR"], 1]]],
  ["sa", [[["ara", "ar", "ar-SA"], 1]]],
  [
    "ch",
    [
      [["ger", "deu", "de-CH"], 0.6],
      [["fre", "fr-CH"], 0.3],
      [["ita", "it-CH"], 0.1],
    ],
  ],
  [
    "be",
    [
      [["dut", "nl-BE"], 0.55],
      [["fre", "fr-BE"], 0.45],
    ],
  ],
  ["th", [[["tha", "th", "th-TH"], 1]]],
  ["vn", [[["vie", "vi", "vi-VN"], 1]]],
  [
    "ph",
    [
      [["fil", "tl"], 0.5],
      [["eng", "en-PH"], 0.5],
    ],
  ],
  ["eg", [[["ara", "ar-EG"], 1]]],
  [
    "za",
    [
      [["eng", "en-ZA"], 0.8],
      [["afr", "af"], 0.2],
    ],
  ],
  ["ua", [[["ukr", "uk", "uk-UA"], 1]]],
  ["cz", [[["cze", "ces", "cs"], 1]]],
  ["pt", [[["por", "pt-PT"], 1]]],
  ["gr", [[["gre", "ell", "el"], 1]]],
  ["il", [[["heb", "he"], 1]]],
  ["ir", [[["per", "fas", "fa"], 1]]],
  [
    "my",
    [
      [["may", "msa", "ms"], 0.7],
      [["eng", "en-MY"], 0.3],
    ],
  ],
  ["no", [[["nor", "nb", "no"], 1]]],
  ["fi", [[["fin", "fi"], 1]]],
  ["dk", [[["dan", "da"], 1]]],
  ["ro", [[["rum", "ron", "ro"], 1]]],
  ["hu", [[["hun", "hu"], 1]]],
  ["cl", [[["spa", "es-CL"], 1]]],
  ["co", [[["spa", "es-CO"], 1]]],
  ["nz", [[["eng", "en-NZ"], 1]]],
  [
    "ie",
    [
      [["eng", "en-IE"], 0.9],
      [["gle", "ga"], 0.1],
    ],
  ],
  ["at", [[["ger", "de-AT"], 1]]],
  [
    "sg",
    [
      [["eng", "en-SG"], 0.6],
      [["chi", "zh-SG"], 0.4],
    ],
  ],
  [
    "hk",
    [
      [["chi", "zh-HK"], 0.7],
      [["eng", "en-HK"], 0.3],
    ],
  ],
  ["tw", [[["chi", "zh-TW"], 1]]],
  [
    "ng",
    [
      [["eng", "en-NG"], 0.8],
      [["yor", "yo"], 0.2],
    ],
  ],
];

const WORDS = [
  "space-racer",
  "puzzle-quest",
  "night-owl-energy",
  "burger-barn",
  "futbol-manager",
  "dragon-forge",
  "pixel-farm",
  "speed-kart",
  "mystic-cards",
  "tower-siege",
  "ocean-drift",
  "hero-arena",
  "candy-match",
  "sky-pirates",
  "mech-legion",
  "word-garden",
  "zombie-rush",
  "royal-chess",
];

/** mulberry32: small, fast, good enough for a benchmark's mix. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pairs with their weights: country weight (Zipf, s = 1) × language share. */
export function pairs(): readonly Pair[] {
  const out: Pair[] = [];
  MARKETS.forEach(([country, langs], rank) => {
    for (const [spellings, share] of langs)
      out.push({ country, langs: spellings, weight: share / (rank + 1) });
  });
  return out;
}

function pick<T extends { readonly weight: number }>(
  items: readonly T[],
  cumulative: Float64Array,
  r: number,
): T {
  const total = cumulative[cumulative.length - 1] as number;
  const x = r * total;
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((cumulative[mid] as number) > x) hi = mid;
    else lo = mid + 1;
  }
  return items[lo] as T;
}

/** An availability window: [start, end] per the catalog's rules. */
function window(r: () => number, allDay: boolean): readonly [number, number] {
  const k = allDay ? 0 : r();
  if (k < 0.5) {
    // All day, in the three ways feeds write it.
    const form = Math.floor(r() * 3);
    if (form === 0) return [0, 24];
    if (form === 1) return [0, 0];
    const h = Math.floor(r() * 24);
    return [h, h];
  }
  if (k < 0.8) return [6 + Math.floor(r() * 7), 14 + Math.floor(r() * 10)]; // daytime, e.g. 9 → 21
  if (k < 0.95) return [18 + Math.floor(r() * 6), 1 + Math.floor(r() * 6)]; // wraps past midnight
  return [12 + Math.floor(r() * 12), 0]; // until midnight
}

/** 8 hex digits, unique for i < 2^32 (an odd multiplier is a bijection mod 2^32). */
function adId(i: number, salt: number): string {
  return ((Math.imul(i + 1, 0x9e3779b1) ^ salt) >>> 0).toString(16).padStart(8, "0");
}

/** The catalog document `{ ads: [...] }` for `count` ads and `seed`. */
export function generateCatalog(count: number, seed = 1): { ads: RawAd[] } {
  const r = rng(seed);
  const all = pairs();
  const cumulative = new Float64Array(all.length);
  let sum = 0;
  all.forEach((p, i) => {
    sum += p.weight;
    cumulative[i] = sum;
  });
  const salt = Math.floor(r() * 0x7fffffff);
  const ads: RawAd[] = [];
  const seen = new Set<Pair>();
  for (let i = 0; i < count; i++) {
    // The first ads cover every pair once (all day), then traffic-weighted picks.
    const pair = i < all.length ? (all[i] as Pair) : pick(all, cumulative, r());
    const first = !seen.has(pair);
    seen.add(pair);
    const lang = pair.langs[Math.floor(r() * pair.langs.length)] as string;
    const [start, end] = window(r, first);
    const word = WORDS[Math.floor(r() * WORDS.length)] as string;
    const seconds = [6, 15, 20, 30][Math.floor(r() * 4)] as number;
    const id = adId(i, salt);
    ads.push({
      id,
      video_url: `https://cdn.example-ads.com/v/${pair.country}/${word}-${seconds}s-${id}.mp4`,
      country: r() < 0.1 ? pair.country.toUpperCase() : pair.country,
      lang,
      start_hour: start,
      end_hour: end,
    });
  }
  return { ads };
}

/** Request paths for the load generators: pairs present in the catalog, traffic-weighted. */
export function requestPaths(count: number, seed = 1, total = 1000): string[] {
  const r = rng(seed ^ 0x5bd1e995);
  const all = count >= pairs().length ? pairs() : pairs().slice(0, count);
  const cumulative = new Float64Array(all.length);
  let sum = 0;
  all.forEach((p, i) => {
    sum += p.weight;
    cumulative[i] = sum;
  });
  const out: string[] = [];
  for (let i = 0; i < total; i++) {
    // Every pair at least once, then weighted by traffic.
    const pair = i < all.length ? (all[i] as Pair) : pick(all, cumulative, r());
    const lang = pair.langs[Math.floor(r() * pair.langs.length)] as string;
    out.push(`/ad_request?country=${pair.country}&lang=${lang}`);
  }
  return out;
}

if (import.meta.main) {
  const [countArg, out] = process.argv.slice(2);
  const seedIndex = process.argv.indexOf("--seed");
  const seed = seedIndex > 0 ? Number(process.argv[seedIndex + 1]) : 1;
  if (countArg === undefined || out === undefined) {
    console.error("usage: bun scripts/bench/gen.ts <count> <out.json> [--seed N]");
    process.exit(2);
  }
  const started = performance.now();
  const text = JSON.stringify(generateCatalog(Number(countArg), seed));
  await Bun.write(out, text);
  console.log(
    `${out}: ${countArg} ads, ${text.length} bytes in ${Math.round(performance.now() - started)} ms`,
  );
}

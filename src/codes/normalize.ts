/**
 * Country and language codes: validation and canonical forms.
 *
 * - country: ISO 3166-1 alpha-2, ASCII case-insensitive → lower case (`US` → `us`).
 * - lang: ISO 639-1, 639-2/B or 639-2/T, or a BCP 47 tag whose primary subtag is one of those
 *   (`fr-CA`, `en_US`) → the 639-2/T code (`fre`, `fr`, `fr-CA` → `fra`).
 *
 * Only ASCII letters are folded; surrounding whitespace or any other byte makes a code invalid.
 * @module
 */
import { COUNTRY_CODES, LANGUAGE_ROWS } from "./tables.ts";

const COUNTRIES: ReadonlySet<string> = new Set(COUNTRY_CODES.split(" "));

/** Every accepted primary language code (lower case) → its canonical 639-2/T code. */
const LANGUAGES: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>();
  for (const row of LANGUAGE_ROWS.split(" ")) {
    const [canonical, ...aliases] = row.split(":");
    if (canonical === undefined) continue;
    map.set(canonical, canonical);
    for (const alias of aliases) map.set(alias, canonical);
  }
  return map;
})();

/** Lower-cases ASCII letters only; returns null if any character is not an ASCII letter. */
function asciiLetters(raw: string, from: number, to: number): string | null {
  let out = "";
  for (let i = from; i < to; i++) {
    let c = raw.charCodeAt(i);
    if (c >= 65 && c <= 90) c += 32;
    else if (c < 97 || c > 122) return null;
    out += String.fromCharCode(c);
  }
  return out;
}

/** `us`, `US` → `us`; anything not an assigned ISO 3166-1 alpha-2 code → null. */
export function normalizeCountry(raw: string): string | null {
  if (raw.length !== 2) return null;
  const code = asciiLetters(raw, 0, 2);
  return code !== null && COUNTRIES.has(code) ? code : null;
}

const SUBTAG = /^[A-Za-z0-9]{1,8}$/;

/** `fre`, `fra`, `fr`, `FR`, `fr-CA`, `fr_ca` → `fra`; unknown or malformed → null. */
export function normalizeLang(raw: string): string | null {
  if (raw.length < 2 || raw.length > 64) return null;
  let end = 0;
  while (end < raw.length) {
    const c = raw.charCodeAt(end);
    if (c === 45 || c === 95) break; // '-' or '_'
    end++;
  }
  if (end < 2 || end > 3) return null;
  const primary = asciiLetters(raw, 0, end);
  if (primary === null) return null;
  const canonical = LANGUAGES.get(primary);
  if (canonical === undefined) return null;
  if (end < raw.length) {
    // BCP 47 subtags after the primary one: 1-8 alphanumerics each, separated by '-' or '_'.
    const rest = raw.slice(end + 1).split(/[-_]/);
    for (const subtag of rest) if (!SUBTAG.test(subtag)) return null;
  }
  return canonical;
}

/** Number of known codes, for summaries and tests. */
export const codeCounts = { countries: COUNTRIES.size, languages: new Set(LANGUAGES.values()).size } as const;

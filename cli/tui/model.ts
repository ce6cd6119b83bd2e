/**
 * The inspector's view-model: pure state, a reducer over key actions, and the derived rows the
 * views draw. No React, no terminal, no clock: the caller passes the starting hour.
 *
 * Rows come from one `parseCatalog` result (the server's own validator): valid ads and invalid
 * entries interleaved in catalog order, so an operator sees each problem where it sits.
 * @module
 */
import type { Key } from "ink";
import type { Ad, Issue, ValidationResult } from "../../src/catalog/types.ts";
import { normalizeCountry, normalizeLang } from "../../src/codes/normalize.ts";
import { hourMask, isAvailable } from "../../src/decision/hours.ts";

/** One catalog entry: a valid ad or an entry the validator skipped. */
export type Row =
  | { readonly kind: "ad"; readonly index: number; readonly ad: Ad }
  | { readonly kind: "invalid"; readonly index: number; readonly issue: Issue };

/** What the inspector was opened on. */
export interface Catalog {
  readonly source: string;
  readonly rows: readonly Row[];
  readonly valid: number;
  readonly invalid: number;
  /** Set when the server would refuse the whole document (every entry invalid). */
  readonly rejected: string | null;
  /** Length of the longest id shown, to size the id column. */
  readonly longestId: number;
}

/** Builds the rows from a validation result; null for a document with no entries to show. */
export function catalogFrom(source: string, result: ValidationResult): Catalog | null {
  if (!result.ok && result.code !== "all_invalid") return null;
  const ads = result.ok ? result.ads : [];
  const byIndex = new Map<number, Issue>();
  for (const issue of result.issues) byIndex.set(issue.index, issue);
  const rows: Row[] = [];
  const total = ads.length + result.issues.length;
  let next = 0;
  for (let index = 0; index < total; index++) {
    const issue = byIndex.get(index);
    if (issue !== undefined) {
      rows.push({ kind: "invalid", index, issue });
      continue;
    }
    const ad = ads[next++];
    if (ad !== undefined) rows.push({ kind: "ad", index, ad });
  }
  let longestId = 0;
  for (const row of rows) longestId = Math.max(longestId, rowId(row).length);
  return {
    source,
    rows,
    longestId,
    valid: ads.length,
    invalid: result.issues.length,
    rejected: result.ok ? null : result.message,
  };
}

/** The id shown for a row: the ad's, the invalid entry's readable one, or `#index`. */
export function rowId(row: Row): string {
  return row.kind === "ad" ? row.ad.id : (row.issue.id ?? `#${row.index}`);
}

/** Which line the keyboard is editing, if any. */
export type Mode = "browse" | "filter" | "hour";

export interface State {
  readonly catalog: Catalog;
  /** The applied filter text. */
  readonly query: string;
  /** Text being typed in "filter" or "hour" mode. */
  readonly draft: string;
  readonly mode: Mode;
  /** The UTC hour (0–23) the table judges "live" against. */
  readonly hour: number;
  /** Show only the ads live at `hour`. */
  readonly liveOnly: boolean;
  /** Show only invalid entries. */
  readonly problemsOnly: boolean;
  /** Catalog index of the selected row (kept across filter changes when still shown). */
  readonly selectedIndex: number | null;
  /** First shown row of the table, as a position in the filtered list. */
  readonly top: number;
  /** Table rows that fit on screen. */
  readonly pageSize: number;
  /** A one-line complaint about the last key (bad hour), cleared by the next one. */
  readonly notice: string | null;
  /** Set by `q`: the app unmounts. */
  readonly quit: boolean;
}

export function initialState(catalog: Catalog, hour: number, pageSize = 10): State {
  return settle({
    catalog,
    query: "",
    draft: "",
    mode: "browse",
    hour: ((Math.trunc(hour) % 24) + 24) % 24,
    liveOnly: false,
    problemsOnly: false,
    selectedIndex: catalog.rows[0]?.index ?? null,
    top: 0,
    pageSize: Math.max(1, pageSize),
    notice: null,
    quit: false,
  });
}

export type Action =
  | { readonly type: "move"; readonly by: number }
  | { readonly type: "first" }
  | { readonly type: "last" }
  | { readonly type: "page"; readonly by: 1 | -1 }
  | { readonly type: "edit-filter" }
  | { readonly type: "edit-hour" }
  | { readonly type: "type"; readonly text: string }
  | { readonly type: "erase" }
  | { readonly type: "commit" }
  | { readonly type: "cancel" }
  | { readonly type: "step-hour"; readonly by: number }
  | { readonly type: "toggle-live" }
  | { readonly type: "toggle-problems" }
  | { readonly type: "clear-filters" }
  | { readonly type: "resize"; readonly pageSize: number }
  | { readonly type: "quit" }
  | { readonly type: "key"; readonly input: string; readonly key: Partial<KeyFlags> };

/** One filter term: `country:us`, `lang:fr`, `id:abc`, or a bare word. */
type Term =
  | { readonly kind: "country"; readonly value: string | null }
  | { readonly kind: "lang"; readonly value: string | null }
  | { readonly kind: "id"; readonly value: string }
  | {
      readonly kind: "word";
      readonly value: string;
      readonly country: string | null;
      readonly lang: string | null;
    };

const KEYS: Readonly<Record<string, "country" | "lang" | "id">> = {
  c: "country",
  country: "country",
  l: "lang",
  lang: "lang",
  i: "id",
  id: "id",
};

/** Parses filter text into terms (all must match). Unknown `key:` prefixes are bare words. */
export function parseQuery(query: string): Term[] {
  const terms: Term[] = [];
  for (const token of query.trim().split(/\s+/)) {
    if (token === "") continue;
    const colon = token.indexOf(":");
    const key = colon > 0 ? KEYS[token.slice(0, colon).toLowerCase()] : undefined;
    const value = key === undefined ? token : token.slice(colon + 1);
    if (key === "country") terms.push({ kind: "country", value: normalizeCountry(value) });
    else if (key === "lang") terms.push({ kind: "lang", value: normalizeLang(value) });
    else if (key === "id") terms.push({ kind: "id", value: value.toLowerCase() });
    else
      terms.push({
        kind: "word",
        value: value.toLowerCase(),
        country: normalizeCountry(value),
        lang: normalizeLang(value),
      });
  }
  return terms;
}

function termMatches(term: Term, row: Row): boolean {
  const id = rowId(row).toLowerCase();
  const ad = row.kind === "ad" ? row.ad : null;
  switch (term.kind) {
    case "country":
      return ad !== null && ad.country === term.value;
    case "lang":
      return ad !== null && ad.lang === term.value;
    case "id":
      return id.includes(term.value);
    case "word":
      return (
        id.includes(term.value) || (ad !== null && (ad.country === term.country || ad.lang === term.lang))
      );
  }
}

/** Whether an ad runs at `hour` (invalid entries never do). */
export function isLive(row: Row, hour: number): boolean {
  return row.kind === "ad" && isAvailable(row.ad.start_hour, row.ad.end_hour, hour);
}

/** The rows shown for a state, in catalog order. */
export function visibleRows(state: State): readonly Row[] {
  const terms = parseQuery(state.mode === "filter" ? state.draft : state.query);
  return state.catalog.rows.filter(
    (row) =>
      (!state.liveOnly || isLive(row, state.hour)) &&
      (!state.problemsOnly || row.kind === "invalid") &&
      terms.every((term) => termMatches(term, row)),
  );
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

/** Re-anchors the selection and the scroll position after any change. */
function settle(state: State): State {
  const rows = visibleRows(state);
  if (rows.length === 0) return { ...state, selectedIndex: null, top: 0 };
  let position = rows.findIndex((row) => row.index === state.selectedIndex);
  if (position < 0) position = 0;
  let top = clamp(state.top, 0, Math.max(0, rows.length - state.pageSize));
  if (position < top) top = position;
  if (position >= top + state.pageSize) top = position - state.pageSize + 1;
  return { ...state, selectedIndex: rows[position]?.index ?? null, top };
}

function moveTo(state: State, position: (current: number, count: number) => number): State {
  const rows = visibleRows(state);
  if (rows.length === 0) return state;
  const current = Math.max(
    0,
    rows.findIndex((row) => row.index === state.selectedIndex),
  );
  const target = clamp(position(current, rows.length), 0, rows.length - 1);
  return { ...state, selectedIndex: rows[target]?.index ?? null };
}

/** Parses an hour typed by the user: an integer 0–23, or null. */
export function parseHour(text: string): number | null {
  if (!/^\d{1,2}$/.test(text)) return null;
  const hour = Number(text);
  return hour <= 23 ? hour : null;
}

/** The reducer: every key the inspector understands, as a pure state change. */
export function reduce(state: State, action: Action): State {
  const s: State = state.notice === null ? state : { ...state, notice: null };
  switch (action.type) {
    case "move":
      return settle(moveTo(s, (current) => current + action.by));
    case "page":
      return settle(moveTo(s, (current) => current + action.by * s.pageSize));
    case "first":
      return settle(moveTo(s, () => 0));
    case "last":
      return settle(moveTo(s, (_, count) => count - 1));
    case "edit-filter":
      return settle({ ...s, mode: "filter", draft: s.query });
    case "edit-hour":
      return { ...s, mode: "hour", draft: "" };
    case "type":
      if (s.mode === "filter") return settle({ ...s, draft: s.draft + action.text });
      if (s.mode === "hour") return { ...s, draft: (s.draft + action.text).replace(/\D/g, "").slice(0, 2) };
      return s;
    case "erase":
      if (s.mode === "browse") return s;
      return settle({ ...s, draft: s.draft.slice(0, -1) });
    case "commit":
      if (s.mode === "filter") return settle({ ...s, mode: "browse", query: s.draft.trim(), draft: "" });
      if (s.mode === "hour") {
        const hour = parseHour(s.draft);
        if (hour === null) return { ...s, notice: "hour must be a whole number from 0 to 23" };
        return settle({ ...s, mode: "browse", hour, draft: "" });
      }
      return s;
    case "cancel":
      if (s.mode !== "browse") return settle({ ...s, mode: "browse", draft: "" });
      return s;
    case "step-hour":
      return settle({ ...s, hour: (((s.hour + action.by) % 24) + 24) % 24 });
    case "toggle-live":
      return settle({ ...s, liveOnly: !s.liveOnly });
    case "toggle-problems":
      return settle({ ...s, problemsOnly: !s.problemsOnly });
    case "clear-filters":
      return settle({ ...s, query: "", liveOnly: false, problemsOnly: false });
    case "resize":
      return settle({ ...s, pageSize: Math.max(1, action.pageSize) });
    case "quit":
      return { ...s, quit: true };
    case "key":
      return pressKey(s, action.input, action.key);
  }
}

/**
 * Applies one key press. Keys typed faster than a frame (tmux, a paste) arrive as one string:
 * they are taken one character at a time, a CR or LF inside counting as Enter, so `/fr⏎`
 * filters and commits and `jjj` moves three rows.
 */
export function pressKey(state: State, input: string, key: Partial<KeyFlags>): State {
  if (input.length <= 1 || Object.values(key).some((flag) => flag === true)) {
    const action = keyAction(state.mode, input, key);
    return action === null ? state : reduce(state, action);
  }
  let s = state;
  for (const char of input) {
    if (s.quit) break;
    const action = keyAction(s.mode, char, char === "\r" || char === "\n" ? { return: true } : {});
    if (action !== null) s = reduce(s, action);
  }
  return s;
}

/** The subset of ink's `Key` the map reads. */
export type KeyFlags = Pick<
  Key,
  | "upArrow"
  | "downArrow"
  | "leftArrow"
  | "rightArrow"
  | "pageUp"
  | "pageDown"
  | "home"
  | "end"
  | "return"
  | "escape"
  | "backspace"
  | "delete"
  | "ctrl"
  | "meta"
  | "tab"
>;

/** What a key press means in a mode: an action, or null for a key with no meaning there. */
export function keyAction(mode: Mode, input: string, key: Partial<KeyFlags>): Action | null {
  if (mode !== "browse") {
    if (key.return) return { type: "commit" };
    if (key.escape) return { type: "cancel" };
    if (key.backspace || key.delete) return { type: "erase" };
    if (key.ctrl || key.meta || key.tab || input === "") return null;
    if (key.upArrow || key.downArrow || key.leftArrow || key.rightArrow) return null;
    if (key.pageUp || key.pageDown || key.home || key.end) return null;
    // Drop control characters a paste may carry.
    const text = [...input].filter((c) => c.charCodeAt(0) >= 0x20 && c !== "\x7f").join("");
    return text === "" ? null : { type: "type", text };
  }
  if (key.upArrow) return { type: "move", by: -1 };
  if (key.downArrow) return { type: "move", by: 1 };
  if (key.pageUp) return { type: "page", by: -1 };
  if (key.pageDown) return { type: "page", by: 1 };
  if (key.home) return { type: "first" };
  if (key.end) return { type: "last" };
  if (key.leftArrow) return { type: "step-hour", by: -1 };
  if (key.rightArrow) return { type: "step-hour", by: 1 };
  if (key.escape) return { type: "clear-filters" };
  if (key.ctrl || key.meta) return null;
  switch (input) {
    case "q":
      return { type: "quit" };
    case "/":
      return { type: "edit-filter" };
    case "h":
      return { type: "edit-hour" };
    case "l":
      return { type: "toggle-live" };
    case "p":
      return { type: "toggle-problems" };
    case "k":
      return { type: "move", by: -1 };
    case "j":
      return { type: "move", by: 1 };
    case "g":
      return { type: "first" };
    case "G":
      return { type: "last" };
    default:
      return null;
  }
}

/** `07` for 7. */
export function hh(hour: number): string {
  return String(hour).padStart(2, "0");
}

/** A window in words: `01:00–13:59 UTC`, `all day`, `18:00–01:59 UTC (wraps midnight)`. */
export function describeWindow(start: number, end: number): string {
  const stop = end === 0 ? 24 : end;
  if (start === stop || hourMask(start, end) === 0xffffff) return "all day";
  const span = `${hh(start)}:00–${hh(stop - 1)}:59 UTC`;
  return start > stop ? `${span} (wraps midnight)` : span;
}

/** The 24 hours as characters: `█` when the window covers the hour, `·` when not. */
export function hourBar(start: number, end: number): string {
  const mask = hourMask(start, end);
  let bar = "";
  for (let h = 0; h < 24; h++) bar += mask & (1 << h) ? "█" : "·";
  return bar;
}

/** One table line, ready to draw. */
export interface TableLine {
  readonly key: number;
  readonly selected: boolean;
  readonly invalid: boolean;
  readonly live: boolean;
  readonly id: string;
  readonly country: string;
  readonly lang: string;
  /** `01→14`, or the problem code for an invalid entry. */
  readonly window: string;
  /** 24-hour bar, empty for an invalid entry. */
  readonly bar: string;
  /** `code: message` for an invalid entry, else empty. */
  readonly problem: string;
}

export type Detail =
  | {
      readonly kind: "ad";
      readonly index: number;
      readonly ad: Ad;
      readonly window: string;
      readonly bar: string;
      readonly live: boolean;
    }
  | { readonly kind: "invalid"; readonly index: number; readonly issue: Issue };

/** Everything the screen shows, derived from the state. */
export interface ViewModel {
  readonly source: string;
  readonly longestId: number;
  readonly summary: string;
  readonly rejected: string | null;
  readonly hour: number;
  readonly mode: Mode;
  readonly draft: string;
  readonly query: string;
  readonly liveOnly: boolean;
  readonly problemsOnly: boolean;
  readonly notice: string | null;
  /** "3–12 of 40" style position, or "no entries match". */
  readonly position: string;
  readonly lines: readonly TableLine[];
  readonly detail: Detail | null;
  readonly help: string;
}

const HELP: Readonly<Record<Mode, string>> = {
  browse: "↑↓ move  / filter  h hour  ←→ ±1h  l live only  p problems  esc clear  q quit",
  filter: "type to filter (c:us l:fr id:abc or words)  enter apply  esc cancel",
  hour: "type an hour 0-23  enter apply  esc cancel",
};

function tableLine(row: Row, hour: number, selected: boolean): TableLine {
  if (row.kind === "invalid") {
    return {
      key: row.index,
      selected,
      invalid: true,
      live: false,
      id: rowId(row),
      country: "",
      lang: "",
      window: row.issue.code,
      bar: "",
      problem: `${row.issue.code}: ${row.issue.message}`,
    };
  }
  const { ad } = row;
  return {
    key: row.index,
    selected,
    invalid: false,
    live: isLive(row, hour),
    id: ad.id,
    country: ad.country,
    lang: ad.lang,
    window: `${hh(ad.start_hour)}→${hh(ad.end_hour)}`,
    bar: hourBar(ad.start_hour, ad.end_hour),
    problem: "",
  };
}

export function viewModel(state: State): ViewModel {
  const rows = visibleRows(state);
  const shown = rows.slice(state.top, state.top + state.pageSize);
  const selectedRow = rows.find((row) => row.index === state.selectedIndex) ?? null;
  const { catalog } = state;
  let detail: Detail | null = null;
  if (selectedRow?.kind === "ad") {
    const { ad } = selectedRow;
    detail = {
      kind: "ad",
      index: selectedRow.index,
      ad,
      window: describeWindow(ad.start_hour, ad.end_hour),
      bar: hourBar(ad.start_hour, ad.end_hour),
      live: isLive(selectedRow, state.hour),
    };
  } else if (selectedRow?.kind === "invalid") {
    detail = { kind: "invalid", index: selectedRow.index, issue: selectedRow.issue };
  }
  const live = catalog.rows.filter((row) => isLive(row, state.hour)).length;
  return {
    source: catalog.source,
    longestId: catalog.longestId,
    summary: `${catalog.valid} valid · ${catalog.invalid} invalid · ${live} live at ${hh(state.hour)}:00 UTC`,
    rejected: catalog.rejected,
    hour: state.hour,
    mode: state.mode,
    draft: state.draft,
    query: state.query,
    liveOnly: state.liveOnly,
    problemsOnly: state.problemsOnly,
    notice: state.notice,
    position:
      rows.length === 0
        ? "no entries match"
        : `${state.top + 1}–${state.top + shown.length} of ${rows.length}`,
    lines: shown.map((row) => tableLine(row, state.hour, row.index === state.selectedIndex)),
    detail,
    help: HELP[state.mode],
  };
}

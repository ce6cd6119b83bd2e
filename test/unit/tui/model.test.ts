import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Action,
  type Catalog,
  catalogFrom,
  describeWindow,
  hourBar,
  initialState,
  keyAction,
  parseHour,
  reduce,
  type State,
  viewModel,
  visibleRows,
} from "../../../cli/tui/model.ts";
import { parseCatalog } from "../../../src/catalog/validate.ts";

const MIXED = readFileSync(
  join(import.meta.dir, "..", "..", "tui", "fixtures", "mixed-catalog.json"),
  "utf8",
);

function mixed(): Catalog {
  const catalog = catalogFrom("mixed.json", parseCatalog(MIXED));
  if (catalog === null) throw new Error("fixture is not a catalog");
  return catalog;
}

function ids(state: State): string[] {
  return visibleRows(state).map((row) => (row.kind === "ad" ? row.ad.id : (row.issue.id ?? `#${row.index}`)));
}

function run(state: State, ...actions: Action[]): State {
  return actions.reduce(reduce, state);
}

function selectedId(state: State): string | undefined {
  return viewModel(state).lines.find((line) => line.selected)?.id;
}

describe("catalogFrom", () => {
  test("interleaves valid ads and invalid entries in catalog order", () => {
    const catalog = mixed();
    expect(catalog.rows.map((row) => `${row.index}:${row.kind}`)).toEqual([
      "0:ad",
      "1:ad",
      "2:invalid",
      "3:ad",
      "4:ad",
      "5:invalid",
      "6:ad",
      "7:invalid",
    ]);
    expect(catalog.valid).toBe(5);
    expect(catalog.invalid).toBe(3);
    expect(catalog.rejected).toBeNull();
    expect(catalog.longestId).toBe("bad-country".length);
  });

  test("a document with every entry invalid is shown, marked as rejected", () => {
    const catalog = catalogFrom("x", parseCatalog('{"ads":[{"id":"a"},{"id":"b","country":"zz"}]}'));
    expect(catalog?.rows.map((row) => row.kind)).toEqual(["invalid", "invalid"]);
    expect(catalog?.rejected).toBe("all 2 entries are invalid");
  });

  test("malformed or wrong-shaped documents have nothing to show", () => {
    expect(catalogFrom("x", parseCatalog("{"))).toBeNull();
    expect(catalogFrom("x", parseCatalog('{"campaigns":[]}'))).toBeNull();
  });
});

describe("filtering", () => {
  const base = () => initialState(mixed(), 10, 5);
  const filtered = (query: string) =>
    run(base(), { type: "edit-filter" }, { type: "type", text: query }, { type: "commit" });

  test("by country and language, with the server's code normalisation", () => {
    expect(ids(filtered("c:US"))).toEqual(["us-morning", "us-night"]);
    expect(ids(filtered("lang:fr"))).toEqual(["fr-allday", "ca-french"]);
    expect(ids(filtered("l:fre c:ca"))).toEqual(["ca-french"]);
    expect(ids(filtered("c:zz"))).toEqual([]);
  });

  test("bare words match an id substring, a country or a language", () => {
    expect(ids(filtered("fr"))).toEqual(["fr-allday", "ca-french"]);
    expect(ids(filtered("bad"))).toEqual(["bad-country", "bad-hour"]);
    expect(ids(filtered("de"))).toEqual(["de-evening"]);
    expect(ids(filtered("id:NIGHT"))).toEqual(["us-night"]);
  });

  test("live at the hour, across midnight", () => {
    expect(ids(run(base(), { type: "toggle-live" }))).toEqual(["us-morning", "fr-allday", "ca-french"]);
    const late = run(base(), { type: "edit-hour" }, { type: "type", text: "2" }, { type: "commit" });
    expect(ids(run(late, { type: "toggle-live" }))).toEqual(["us-night", "fr-allday"]);
  });

  test("problems only", () => {
    expect(ids(run(base(), { type: "toggle-problems" }))).toEqual(["bad-country", "bad-hour", "#7"]);
  });

  test("the filter applies while typing; esc restores the applied one", () => {
    const typing = run(base(), { type: "edit-filter" }, { type: "type", text: "us" });
    expect(ids(typing)).toEqual(["us-morning", "us-night"]);
    const cancelled = reduce(typing, { type: "cancel" });
    expect(cancelled.mode).toBe("browse");
    expect(ids(cancelled)).toHaveLength(8);
  });

  test("esc in browse mode clears every filter", () => {
    const narrowed = run(filtered("us"), { type: "toggle-live" }, { type: "toggle-problems" });
    expect(ids(narrowed)).toEqual([]);
    expect(viewModel(narrowed).position).toBe("no entries match");
    expect(ids(reduce(narrowed, { type: "clear-filters" }))).toHaveLength(8);
  });
});

describe("selection and scrolling", () => {
  test("moves within bounds and scrolls a page of 3", () => {
    let s = initialState(mixed(), 10, 3);
    expect(selectedId(s)).toBe("us-morning");
    s = run(s, { type: "move", by: -1 });
    expect(selectedId(s)).toBe("us-morning");
    s = run(s, { type: "move", by: 1 }, { type: "move", by: 1 }, { type: "move", by: 1 });
    expect(selectedId(s)).toBe("fr-allday");
    expect(s.top).toBe(1);
    expect(viewModel(s).lines.map((line) => line.id)).toEqual(["us-night", "bad-country", "fr-allday"]);
    expect(viewModel(s).position).toBe("2–4 of 8");
    s = reduce(s, { type: "last" });
    expect(selectedId(s)).toBe("#7");
    expect(s.top).toBe(5);
    s = reduce(s, { type: "page", by: -1 });
    expect(selectedId(s)).toBe("de-evening");
    s = reduce(s, { type: "first" });
    expect(s.top).toBe(0);
  });

  test("the selection stays on the same entry when a filter keeps it", () => {
    let s = run(initialState(mixed(), 10, 5), { type: "move", by: 3 });
    expect(selectedId(s)).toBe("fr-allday");
    s = run(s, { type: "edit-filter" }, { type: "type", text: "fr" }, { type: "commit" });
    expect(selectedId(s)).toBe("fr-allday");
    s = run(s, { type: "edit-filter" }, { type: "erase" }, { type: "erase" }, { type: "type", text: "us" });
    expect(selectedId(s)).toBe("us-morning");
  });

  test("a smaller page keeps the selection on screen", () => {
    const s = run(initialState(mixed(), 10, 8), { type: "last" }, { type: "resize", pageSize: 2 });
    expect(s.top).toBe(6);
    expect(viewModel(s).lines.map((line) => line.id)).toEqual(["ca-french", "#7"]);
  });
});

describe("hours", () => {
  test("typed hours: valid ones apply, others leave a notice", () => {
    let s = run(
      initialState(mixed(), 10),
      { type: "edit-hour" },
      { type: "type", text: "25" },
      { type: "commit" },
    );
    expect(s.mode).toBe("hour");
    expect(s.hour).toBe(10);
    expect(viewModel(s).notice).toBe("hour must be a whole number from 0 to 23");
    s = run(s, { type: "erase" }, { type: "erase" }, { type: "type", text: "7x" }, { type: "commit" });
    expect(s.mode).toBe("browse");
    expect(s.hour).toBe(7);
    expect(s.notice).toBeNull();
  });

  test("stepping wraps around the day", () => {
    expect(reduce(initialState(mixed(), 23), { type: "step-hour", by: 1 }).hour).toBe(0);
    expect(reduce(initialState(mixed(), 0), { type: "step-hour", by: -1 }).hour).toBe(23);
  });

  test("parseHour", () => {
    expect([parseHour("0"), parseHour("23"), parseHour("24"), parseHour(""), parseHour("1.5")]).toEqual([
      0,
      23,
      null,
      null,
      null,
    ]);
  });

  test("windows in words and on a bar", () => {
    expect(describeWindow(1, 14)).toBe("01:00–13:59 UTC");
    expect(describeWindow(18, 2)).toBe("18:00–01:59 UTC (wraps midnight)");
    expect(describeWindow(12, 24)).toBe("12:00–23:59 UTC");
    expect(describeWindow(12, 0)).toBe("12:00–23:59 UTC");
    expect(describeWindow(6, 6)).toBe("all day");
    expect(describeWindow(0, 24)).toBe("all day");
    expect(hourBar(22, 3)).toBe("███···················██");
    expect(hourBar(6, 12)).toBe("······██████············");
  });

  test("the view-model counts live ads and describes the selected one", () => {
    const vm = viewModel(initialState(mixed(), 10));
    expect(vm.summary).toBe("5 valid · 3 invalid · 3 live at 10:00 UTC");
    expect(vm.detail).toMatchObject({ kind: "ad", window: "06:00–11:59 UTC", live: true });
    const bad = viewModel(run(initialState(mixed(), 10), { type: "move", by: 2 }));
    expect(bad.detail).toMatchObject({ kind: "invalid", index: 2, issue: { code: "unknown_country" } });
    expect(bad.lines[2]).toMatchObject({ invalid: true, window: "unknown_country", selected: true });
  });
});

describe("keys", () => {
  test("browse keys", () => {
    expect(keyAction("browse", "", { downArrow: true })).toEqual({ type: "move", by: 1 });
    expect(keyAction("browse", "/", {})).toEqual({ type: "edit-filter" });
    expect(keyAction("browse", "h", {})).toEqual({ type: "edit-hour" });
    expect(keyAction("browse", "", { rightArrow: true })).toEqual({ type: "step-hour", by: 1 });
    expect(keyAction("browse", "q", {})).toEqual({ type: "quit" });
    expect(keyAction("browse", "x", {})).toBeNull();
  });

  test("in the filter line, q and h are text", () => {
    expect(keyAction("filter", "q", {})).toEqual({ type: "type", text: "q" });
    expect(keyAction("hour", "", { return: true })).toEqual({ type: "commit" });
    expect(keyAction("filter", "\x1b[A", { upArrow: true })).toBeNull();
    expect(keyAction("filter", "a\x07b", {})).toEqual({ type: "type", text: "ab" });
  });

  test("keys arriving together are taken one at a time, CR as Enter", () => {
    const s = reduce(initialState(mixed(), 10), { type: "key", input: "/fr\rjq", key: {} });
    expect(s.query).toBe("fr");
    expect(selectedId(s)).toBe("ca-french");
    expect(s.quit).toBe(true);
  });
});

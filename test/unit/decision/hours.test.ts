import { describe, expect, test } from "bun:test";
import { validateCatalog } from "../../../src/catalog/validate.ts";
import { hourMask, isAvailable, utcHour } from "../../../src/decision/hours.ts";

describe("isAvailable", () => {
  test.each([
    // start, end, hour, expected
    [1, 14, 0, false],
    [1, 14, 1, true],
    [1, 14, 13, true],
    [1, 14, 14, false], // 14:00:00 is past the window
    [22, 3, 21, false],
    [22, 3, 22, true],
    [22, 3, 23, true],
    [22, 3, 0, true],
    [22, 3, 2, true],
    [22, 3, 3, false],
    [20, 0, 19, false], // end 0 = until 23:59:59
    [20, 0, 23, true],
    [20, 0, 0, false],
    [20, 24, 23, true], // end 24 = until 23:59:59
    [20, 24, 0, false],
    [0, 0, 0, true], // start == end: all day
    [0, 0, 23, true],
    [7, 7, 6, true],
    [0, 24, 12, true],
    [23, 0, 23, true],
    [23, 0, 22, false],
  ])("window %i→%i at hour %i is %p", (start, end, hour, expected) => {
    expect(isAvailable(start, end, hour)).toBe(expected);
  });
});

/** Independent model: walk the clock hour by hour from start until the end hour. */
function modelHours(start: number, end: number): Set<number> {
  const stop = end % 24;
  if (start === stop) return new Set(Array.from({ length: 24 }, (_, h) => h));
  const hours = new Set<number>();
  for (let h = start; h !== stop; h = (h + 1) % 24) hours.add(h);
  return hours;
}

test("all 25×25 hour pairs agree with the hour-by-hour model, and the validator accepts exactly 0..23 × 0..24", () => {
  let checked = 0;
  for (let start = 0; start <= 24; start++) {
    for (let end = 0; end <= 24; end++) {
      const verdict = validateCatalog({
        ads: [
          {
            id: "a",
            video_url: "https://x.example/a.mp4",
            country: "us",
            lang: "en",
            start_hour: start,
            end_hour: end,
          },
        ],
      });
      if (start === 24) {
        expect(verdict.ok).toBe(false);
        continue;
      }
      expect(verdict.ok).toBe(true);
      const model = modelHours(start, end);
      for (let hour = 0; hour < 24; hour++) {
        expect(isAvailable(start, end, hour)).toBe(model.has(hour));
        expect(((hourMask(start, end) >> hour) & 1) === 1).toBe(model.has(hour));
      }
      checked++;
    }
  }
  expect(checked).toBe(24 * 25);
});

test("hours outside 0..24 and non-integers make an entry invalid", () => {
  for (const [start, end] of [
    [-1, 5],
    [5, 25],
    [1.5, 3],
    [3, Number.NaN],
  ] as const) {
    const verdict = validateCatalog({
      ads: [
        {
          id: "a",
          video_url: "https://x.example/a.mp4",
          country: "us",
          lang: "en",
          start_hour: start,
          end_hour: end,
        },
      ],
    });
    expect(verdict.ok).toBe(false);
    expect(verdict.issues[0]?.code).toBe("invalid_hour");
  }
});

test("utcHour reads the UTC hour of an epoch time", () => {
  expect(utcHour(Date.UTC(2026, 0, 1, 0, 0, 0))).toBe(0);
  expect(utcHour(Date.UTC(2026, 0, 1, 13, 59, 59, 999))).toBe(13);
  expect(utcHour(Date.UTC(2026, 0, 1, 14, 0, 0))).toBe(14);
  expect(utcHour(Date.UTC(2026, 5, 30, 23, 59, 59))).toBe(23);
});

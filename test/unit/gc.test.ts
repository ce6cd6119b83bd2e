/** The collection pacer: one request per step while answers are counted, none while idle. */
import { expect, jest, test } from "bun:test";
import { collectionStep, paceCollections } from "../../src/gc.ts";

test("a step asks for a collection only when the answered count moved since the last step", () => {
  let answered = 0;
  let collections = 0;
  const step = collectionStep(
    () => answered,
    () => collections++,
  );
  step();
  expect(collections).toBe(0); // nothing answered since the pacer started
  answered = 3;
  step();
  expect(collections).toBe(1);
  step();
  step();
  expect(collections).toBe(1); // idle: no collection work
  answered = 4;
  step();
  expect(collections).toBe(2);
});

test("a count that wrapped around (an Int32 cell) still counts as movement", () => {
  let answered = 2 ** 31 - 1;
  let collections = 0;
  const step = collectionStep(
    () => answered,
    () => collections++,
  );
  answered = (answered + 1) | 0;
  step();
  expect(collections).toBe(1);
});

test("paceCollections runs a step per interval and none once stopped", () => {
  jest.useFakeTimers();
  try {
    let answered = 0;
    let collections = 0;
    const stop = paceCollections(
      () => answered,
      1_000,
      () => collections++,
    );
    answered = 5;
    jest.advanceTimersByTime(999);
    expect(collections).toBe(0);
    jest.advanceTimersByTime(1);
    expect(collections).toBe(1);
    answered = 6;
    jest.advanceTimersByTime(1_000);
    expect(collections).toBe(2);
    stop();
    answered = 7;
    jest.advanceTimersByTime(5_000);
    expect(collections).toBe(2);
  } finally {
    jest.useRealTimers();
  }
});

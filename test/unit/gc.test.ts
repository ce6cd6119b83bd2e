/**
 * The collection pacer: a collection per `everyAnswers` answers (at most one a step), one per
 * `maxSteps` steps at low traffic, none while idle.
 */
import { expect, jest, test } from "bun:test";
import { collectionStep, PACER_OPTIONS, PACER_STEP_MS, paceCollections } from "../../src/gc.ts";

/**
 * A step over a settable count, and the number of collections it asked for; `at(n)` sets the
 * count to `n`, runs one step and returns the collections so far.
 */
function pacer(options = { everyAnswers: 100, maxSteps: 5 }, start = 0) {
  const state = { answered: start, collections: 0 };
  const step = collectionStep(
    () => state.answered,
    () => state.collections++,
    options,
  );
  const at = (answered: number): number => {
    state.answered = answered;
    step();
    return state.collections;
  };
  return { state, step, at };
}

test("busy: a collection at the step where the answers since the last one reach everyAnswers", () => {
  const { at } = pacer();
  expect(at(99)).toBe(0);
  expect(at(100)).toBe(1);
  // Counted from the last collection, not from zero.
  expect(at(150)).toBe(1);
  expect(at(200)).toBe(2);
  // Many answers in one step still make one collection, and counting restarts from the count.
  expect(at(10_000)).toBe(3);
  expect(at(10_099)).toBe(3);
  expect(at(10_100)).toBe(4);
});

test("a collection for the answers restarts the slow rule's count of steps", () => {
  const { state, step, at } = pacer();
  step();
  step();
  expect(at(100)).toBe(1); // the third step: a collection for the answers
  state.answered = 101;
  for (let i = 0; i < 4; i++) step(); // steps 4-7: fewer than maxSteps since that collection
  expect(state.collections).toBe(1);
  step();
  expect(state.collections).toBe(2);
});

test("a count that went backwards makes one collection, then counts from the new value", () => {
  const { at } = pacer({ everyAnswers: 100, maxSteps: 5 }, 1_000);
  expect(at(10)).toBe(1);
  expect(at(109)).toBe(1);
  expect(at(110)).toBe(2);
});

test("options that are not whole numbers of at least 1 are refused", () => {
  for (const bad of [
    { everyAnswers: 0, maxSteps: 5 },
    { everyAnswers: 1.5, maxSteps: 5 },
    { everyAnswers: 100, maxSteps: 0 },
    { everyAnswers: 100, maxSteps: Number.POSITIVE_INFINITY },
    { everyAnswers: Number.NaN, maxSteps: 5 },
  ]) {
    expect(() =>
      collectionStep(
        () => 0,
        () => {},
        bad,
      ),
    ).toThrow(RangeError);
  }
});

test("slow: any answer makes a collection once maxSteps steps passed since the last one", () => {
  const { state, step } = pacer();
  state.answered = 1;
  for (let i = 0; i < 4; i++) step();
  expect(state.collections).toBe(0);
  step(); // the fifth step
  expect(state.collections).toBe(1);
  state.answered = 2;
  for (let i = 0; i < 4; i++) step();
  expect(state.collections).toBe(1);
  step();
  expect(state.collections).toBe(2);
});

test("idle: no collection however many steps pass, and the first answers after it collect at once", () => {
  const { state, step, at } = pacer();
  for (let i = 0; i < 1_000; i++) step();
  expect(state.collections).toBe(0);
  expect(at(1)).toBe(1);
});

test("a count that wrapped around (an Int32 cell) counts the answers across the wrap", () => {
  const { at } = pacer({ everyAnswers: 100, maxSteps: 5 }, 2 ** 31 - 50);
  expect(at((2 ** 31 - 50 + 99) | 0)).toBe(0); // negative now: 99 answers
  expect(at((2 ** 31 - 50 + 100) | 0)).toBe(1);
});

test("the defaults: 50 ms steps (half the sweeper's 100 ms), 500 answers, a second at low traffic", () => {
  expect(PACER_STEP_MS).toBe(50);
  expect(PACER_OPTIONS.everyAnswers).toBe(500);
  expect(PACER_STEP_MS * PACER_OPTIONS.maxSteps).toBe(1_000);
});

test("paceCollections runs a step per interval and none once stopped", () => {
  jest.useFakeTimers();
  try {
    let answered = 0;
    let collections = 0;
    const stop = paceCollections(
      () => answered,
      40,
      () => collections++,
      { everyAnswers: 10, maxSteps: 10 },
    );
    answered = 10;
    jest.advanceTimersByTime(39);
    expect(collections).toBe(0);
    jest.advanceTimersByTime(1);
    expect(collections).toBe(1);
    answered = 20;
    jest.advanceTimersByTime(40);
    expect(collections).toBe(2);
    // One answer: collected after 10 steps (400 ms), not before.
    answered = 21;
    jest.advanceTimersByTime(360);
    expect(collections).toBe(2);
    jest.advanceTimersByTime(40);
    expect(collections).toBe(3);
    stop();
    answered = 1_000;
    jest.advanceTimersByTime(5_000);
    expect(collections).toBe(3);
  } finally {
    jest.useRealTimers();
  }
});

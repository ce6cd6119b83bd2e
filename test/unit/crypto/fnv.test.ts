import { expect, test } from "bun:test";
import { FNV_OFFSET, fnv1a, fnv1aByte } from "../../../src/crypto/fnv.ts";

test("FNV-1a 32-bit: the published test vectors (ASCII code units are the bytes)", () => {
  expect(fnv1a("") >>> 0).toBe(0x811c9dc5);
  expect(fnv1a("a") >>> 0).toBe(0xe40c292c);
  expect(fnv1a("foobar") >>> 0).toBe(0xbf9cf968);
});

test("chained over strings and separator bytes, as one pass over their concatenation", () => {
  expect(fnv1a("bar", fnv1a("foo")) >>> 0).toBe(fnv1a("foobar") >>> 0);
  expect(fnv1aByte(0x62, fnv1aByte(0x61, FNV_OFFSET)) >>> 0).toBe(fnv1a("ab") >>> 0);
});

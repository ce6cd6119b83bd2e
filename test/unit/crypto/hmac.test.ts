import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import fc from "fast-check";
import { HmacSha256 } from "../../../src/crypto/hmac.ts";

const reference = (key: Uint8Array | string, prefix: string, message: string): string =>
  createHmac("sha256", key)
    .update(prefix + message, "utf8")
    .digest("hex");

describe("HmacSha256", () => {
  test("fast-check: equals node:crypto for any key length, prefix and message", () => {
    fc.assert(
      fc.property(
        // Keys shorter than, equal to and longer than SHA-256's 64-byte block (hashed first).
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 150 }),
          fc.string({ minLength: 1, maxLength: 100 }),
        ),
        fc.string({ maxLength: 40 }),
        // Messages past the 8 KiB scratch buffer take the allocating path.
        fc.oneof(
          fc.string({ maxLength: 300, unit: "binary" }),
          fc.string({ minLength: 2_700, maxLength: 9_000 }),
        ),
        (key, prefix, message) => {
          const hmac = new HmacSha256(key, prefix);
          expect(hmac.digest(message).toString("hex")).toBe(reference(key, prefix, message));
          // Reused buffers: a second message is not polluted by the first.
          expect(hmac.digest("x").toString("hex")).toBe(reference(key, prefix, "x"));
        },
      ),
      { numRuns: 300, seed: 17 },
    );
  });

  test("the digest buffer is reused: copy it to keep it", () => {
    const hmac = new HmacSha256("k".repeat(32));
    const first = hmac.digest("a");
    const kept = Buffer.from(first);
    hmac.digest("b");
    expect(first.equals(kept)).toBe(false);
  });
});

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  createImpressionSigner,
  type ImpressionClaims,
  MAX_TOKEN_LENGTH,
  newNonce,
  nonceSequence,
} from "../../../src/impression/token.ts";

const KEY = new Uint8Array(32).fill(7);
const OTHER = new Uint8Array(32).fill(8);
const T0 = Date.UTC(2026, 10, 3, 14, 5);
const CLAIMS: ImpressionClaims = {
  adId: "ad-1",
  decidedAtMs: T0,
  nonce: "n0nce",
  playerHash: "ph",
  country: "us",
  lang: "eng",
};
const signer = createImpressionSigner(KEY, { ttlSeconds: 600 });

function flip(text: string, index: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const c = text[index] as string;
  const swapped = alphabet[(alphabet.indexOf(c) + 1) % 64] as string;
  return text.slice(0, index) + swapped + text.slice(index + 1);
}

describe("impression tokens", () => {
  test("round trip: claims, token id and expiry come back; the token is URL-safe and compact", () => {
    const token = signer.sign(CLAIMS);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(encodeURIComponent(token)).toBe(token);
    expect(token.length).toBeLessThan(120);
    const result = signer.verify(token, T0 + 1000);
    expect(result).toEqual({
      ok: true,
      claims: { ...CLAIMS, tokenId: token.split(".")[1] as string, expiresAtMs: T0 + 600_000 },
    });
  });

  test("optional claims may be absent", () => {
    const token = signer.sign({ adId: "a", decidedAtMs: 0, nonce: "n" });
    expect(signer.verify(token, 1)).toEqual({
      ok: true,
      claims: {
        adId: "a",
        decidedAtMs: 0,
        nonce: "n",
        tokenId: token.split(".")[1] as string,
        expiresAtMs: 600_000,
      },
    });
    const onlyLang = signer.verify(signer.sign({ adId: "a", decidedAtMs: 0, nonce: "n", lang: "fra" }), 1);
    expect(onlyLang.ok && onlyLang.claims.lang === "fra" && onlyLang.claims.country === undefined).toBe(true);
  });

  test("expiry: valid until decidedAt + ttl (exclusive), with injected time", () => {
    const token = signer.sign(CLAIMS);
    expect(signer.verify(token, T0 + 599_999).ok).toBe(true);
    expect(signer.verify(token, T0 + 600_000)).toEqual({ ok: false, reason: "expired" });
    expect(signer.verify(token, T0 + 10 * 86_400_000)).toEqual({ ok: false, reason: "expired" });
  });

  test("tampering with any character of payload or MAC is refused", () => {
    const token = signer.sign(CLAIMS);
    for (let i = 0; i < token.length; i++) {
      if (token[i] === ".") continue;
      const result = signer.verify(flip(token, i), T0);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(["bad_signature", "malformed"]).toContain(result.reason);
    }
  });

  test("a changed payload with the old MAC is a bad signature", () => {
    const token = signer.sign(CLAIMS);
    const [, sig] = token.split(".");
    const forged = Buffer.from(JSON.stringify([1, "ad-2", T0, "n0nce"])).toString("base64url");
    expect(signer.verify(`${forged}.${sig}`, T0)).toEqual({ ok: false, reason: "bad_signature" });
  });

  test("another key's token is a bad signature; previous keys still verify after a rotation", () => {
    const old = createImpressionSigner(OTHER, { ttlSeconds: 600 });
    const token = old.sign(CLAIMS);
    expect(signer.verify(token, T0)).toEqual({ ok: false, reason: "bad_signature" });
    const rotated = createImpressionSigner(KEY, { ttlSeconds: 600, previousKeys: [OTHER] });
    expect(rotated.verify(token, T0).ok).toBe(true);
    expect(old.verify(rotated.sign(CLAIMS), T0)).toEqual({ ok: false, reason: "bad_signature" });
  });

  test("malformed: shapes, padding, non-canonical base64url, oversize, bad payload under a good MAC", () => {
    const token = signer.sign(CLAIMS);
    const [payload, sig] = token.split(".") as [string, string];
    for (const bad of [
      "",
      ".",
      payload,
      `${payload}.`,
      `.${sig}`,
      `${payload}.${sig}.x`,
      `${payload}=.${sig}`,
      `${payload}.${sig}=`,
      `${payload}.${sig.slice(0, 21)}`,
      `${payload}+.${sig}`,
      `${payload} .${sig}`,
      "a".repeat(MAX_TOKEN_LENGTH + 1),
    ]) {
      expect(signer.verify(bad, T0)).toEqual({ ok: false, reason: "malformed" });
    }
    // The token id is compared as text: any other last character (even one that decodes to the
    // same leading bytes) is refused.
    const last = sig[21] as string;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const twin = alphabet[alphabet.indexOf(last) ^ 1] as string;
    expect(signer.verify(`${payload}.${sig.slice(0, 21)}${twin}`, T0)).toEqual({
      ok: false,
      reason: "bad_signature",
    });
    // @ts-expect-error: not a string at all
    expect(signer.verify(undefined, T0)).toEqual({ ok: false, reason: "malformed" });
  });

  test("a well-signed payload that is not ours is malformed", async () => {
    const { createHmac } = await import("node:crypto");
    const sign = (json: string) => {
      const p = Buffer.from(json).toString("base64url");
      const m = createHmac("sha256", KEY)
        .update("adsrv-impression-v1.")
        .update(p)
        .digest("base64url")
        .slice(0, 22);
      return `${p}.${m}`;
    };
    expect(signer.verify(sign(JSON.stringify([1, "ad-1", T0, "n"])), T0).ok).toBe(true); // the helper is right
    for (const json of [
      "{}",
      '[2,"a",0,"n"]',
      '[1,"a",-1,"n"]',
      '[1,"a",0.5,"n"]',
      '[1,"",0,"n"]',
      '[1,"a",0]',
      '[1,"a",0,"n",7]',
      "nope",
    ]) {
      expect(signer.verify(sign(json), T0)).toEqual({ ok: false, reason: "malformed" });
    }
  });

  test("bad keys, ttl and claims are refused at construction or signing", () => {
    expect(() => createImpressionSigner(new Uint8Array(31), { ttlSeconds: 1 })).toThrow(RangeError);
    expect(() => createImpressionSigner(KEY, { ttlSeconds: 0 })).toThrow(RangeError);
    expect(() => createImpressionSigner(KEY, { ttlSeconds: 1, previousKeys: [new Uint8Array(4)] })).toThrow(
      RangeError,
    );
    expect(() => signer.sign({ ...CLAIMS, adId: "" })).toThrow(RangeError);
    expect(() => signer.sign({ ...CLAIMS, adId: "x".repeat(129) })).toThrow(RangeError);
    expect(() => signer.sign({ ...CLAIMS, decidedAtMs: 1.5 })).toThrow(RangeError);
    expect(() => signer.sign({ ...CLAIMS, nonce: "" })).toThrow(RangeError);
  });

  test("the signer keeps its own copy of the key", () => {
    const key = new Uint8Array(32).fill(9);
    const s = createImpressionSigner(key, { ttlSeconds: 60 });
    const token = s.sign(CLAIMS);
    key.fill(0);
    expect(s.verify(token, T0).ok).toBe(true);
  });

  test("nonces are 16 URL-safe characters and differ", () => {
    const seen = new Set(Array.from({ length: 1000 }, newNonce));
    expect(seen.size).toBe(1000);
    for (const n of seen) expect(n).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });

  test("a nonce sequence: URL-safe, unique within the sequence, and a random prefix per sequence", () => {
    const next = nonceSequence();
    const seen = new Set(Array.from({ length: 10_000 }, next));
    expect(seen.size).toBe(10_000);
    for (const n of seen) expect(n).toMatch(/^[A-Za-z0-9_-]{8}[0-9]+$/);
    const [a, b] = [next(), nonceSequence()()];
    expect(a.slice(0, 8)).not.toBe(b.slice(0, 8));
  });

  test("fast-check: any claims round-trip, and any single-character change is refused", () => {
    const field = fc
      .string({ minLength: 1, maxLength: 128, unit: "grapheme" })
      .filter((s) => s.length <= 128);
    fc.assert(
      fc.property(
        fc.record(
          {
            adId: field,
            decidedAtMs: fc.integer({ min: 0, max: 2 ** 45 }),
            nonce: field,
            playerHash: field,
            country: field,
            lang: field,
          },
          { requiredKeys: ["adId", "decidedAtMs", "nonce"] },
        ),
        fc.nat(),
        (claims, at) => {
          const token = signer.sign(claims);
          const result = signer.verify(token, claims.decidedAtMs);
          expect(result.ok).toBe(true);
          if (result.ok) {
            const { tokenId, expiresAtMs, ...back } = result.claims;
            expect(back).toEqual(claims);
            expect(expiresAtMs).toBe(claims.decidedAtMs + 600_000);
          }
          const i = at % token.length;
          if (token[i] !== ".") expect(signer.verify(flip(token, i), claims.decidedAtMs).ok).toBe(false);
        },
      ),
      { numRuns: 500, seed: 5 },
    );
  });

  test("fast-check: the payload is JSON.stringify of the claims array, trailing absent fields dropped", () => {
    // Plain ASCII (the template's case) and anything else (JSON.stringify's): the same bytes.
    // Any UTF-16 unit, lone surrogates and control characters included, up to the 128 allowed
    // (the longest JSON the scratch buffers must hold).
    const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    const field = fc.oneof(
      fc.stringMatching(/^[\x20-\x7e]{1,128}$/),
      fc.string({ minLength: 1, maxLength: 128, unit: anyUnit }),
      fc.constantFrom("\u0001".repeat(128), "\ud800".repeat(128), '"\\'.repeat(64)),
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            adId: field,
            decidedAtMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
            nonce: field,
            playerHash: field,
            country: field,
            lang: field,
          },
          { requiredKeys: ["adId", "decidedAtMs", "nonce"] },
        ),
        (claims) => {
          const fields: unknown[] = [
            1,
            claims.adId,
            claims.decidedAtMs,
            claims.nonce,
            claims.playerHash ?? null,
            claims.country ?? null,
            claims.lang ?? null,
          ];
          while (fields.length > 4 && fields[fields.length - 1] === null) fields.pop();
          const payload = signer.sign(claims).split(".")[0] as string;
          expect(Buffer.from(payload, "base64url").toString("utf8")).toBe(JSON.stringify(fields));
        },
      ),
      { numRuns: 1000, seed: 11 },
    );
  });

  test("fast-check: the MAC is RFC 2104 HMAC-SHA256 (node:crypto) for any key length and claims", async () => {
    const { createHmac } = await import("node:crypto");
    const field = fc.string({ minLength: 1, maxLength: 128, unit: "binary" }).filter((s) => s.length <= 128);
    fc.assert(
      fc.property(
        // Keys shorter than, equal to and longer than SHA-256's 64-byte block (hashed first).
        fc.uint8Array({ minLength: 32, maxLength: 200 }),
        fc.record({
          adId: field,
          decidedAtMs: fc.integer({ min: 0, max: 2 ** 45 }),
          nonce: field,
          lang: field,
        }),
        (key, claims) => {
          const token = createImpressionSigner(key, { ttlSeconds: 60 }).sign(claims);
          const [payload, mac] = token.split(".") as [string, string];
          const expected = createHmac("sha256", key)
            .update(`adsrv-impression-v1.${payload}`)
            .digest("base64url")
            .slice(0, 22);
          expect(mac).toBe(expected);
          const json = Buffer.from(payload, "base64url").toString("utf8");
          expect(JSON.parse(json)).toEqual([
            1,
            claims.adId,
            claims.decidedAtMs,
            claims.nonce,
            null,
            null,
            claims.lang,
          ]);
        },
      ),
      { numRuns: 300, seed: 11 },
    );
  });
});

import { expect, test } from "bun:test";
import fc from "fast-check";
import { validateMediaFields } from "../../../src/vast/media.ts";

const base = { id: "a", video_url: "https://cdn.example.com/a.mp4", country: "us", lang: "eng" };

test("no media fields: ok with nothing (the renderer's defaults apply)", () => {
  expect(validateMediaFields(base)).toEqual({ ok: true, media: {} });
  expect(validateMediaFields({ ...base, duration: undefined })).toEqual({ ok: true, media: {} });
});

test("valid fields are kept, and only those given", () => {
  expect(
    validateMediaFields({ ...base, duration: 15.5, mime_type: "video/webm", width: 640, height: 360 }),
  ).toEqual({ ok: true, media: { duration: 15.5, mime_type: "video/webm", width: 640, height: 360 } });
  expect(validateMediaFields({ ...base, duration: 3600 })).toEqual({ ok: true, media: { duration: 3600 } });
  expect(validateMediaFields({ ...base, mime_type: "video/x-ms-wmv" })).toEqual({
    ok: true,
    media: { mime_type: "video/x-ms-wmv" },
  });
  expect(validateMediaFields({ ...base, width: 1, height: 8192 })).toEqual({
    ok: true,
    media: { width: 1, height: 8192 },
  });
});

test.each([
  [{ duration: 0 }, "duration", "invalid_media"],
  [{ duration: -1 }, "duration", "invalid_media"],
  [{ duration: 3600.001 }, "duration", "invalid_media"],
  [{ duration: Number.NaN }, "duration", "invalid_media"],
  [{ duration: Number.POSITIVE_INFINITY }, "duration", "invalid_media"],
  [{ duration: "30" }, "duration", "wrong_type"],
  [{ duration: null }, "duration", "wrong_type"],
  [{ mime_type: "video/MP4" }, "mime_type", "invalid_media"],
  [{ mime_type: "audio/mpeg" }, "mime_type", "invalid_media"],
  [{ mime_type: "video/" }, "mime_type", "invalid_media"],
  [{ mime_type: 'video/mp4"><x' }, "mime_type", "invalid_media"],
  [{ mime_type: "video/mp4\n" }, "mime_type", "invalid_media"],
  [{ mime_type: `video/${"a".repeat(100)}` }, "mime_type", "invalid_media"],
  [{ mime_type: 4 }, "mime_type", "wrong_type"],
  [{ width: 0 }, "width", "invalid_media"],
  [{ width: 8193 }, "width", "invalid_media"],
  [{ width: 12.5 }, "width", "invalid_media"],
  [{ width: "640" }, "width", "wrong_type"],
  [{ height: -720 }, "height", "invalid_media"],
  [{ height: [720] }, "height", "wrong_type"],
  [{ duration: 10, width: 640, height: 0 }, "height", "invalid_media"],
] as const)("%j is refused, naming %s (%s)", (fields, field, code) => {
  const result = validateMediaFields({ ...base, ...fields });
  expect(result.ok).toBe(false);
  if (!result.ok) {
    expect(result.field).toBe(field);
    expect(result.code).toBe(code);
    expect(result.message).toContain(field);
  }
});

test("inherited properties are not fields", () => {
  const entry = Object.create({ duration: -5 }) as Record<string, unknown>;
  expect(validateMediaFields(entry)).toEqual({ ok: true, media: {} });
});

test("fast-check: accepted values are exactly the documented ranges", () => {
  fc.assert(
    fc.property(fc.oneof(fc.double(), fc.integer({ min: -10, max: 10_000 })), (n) => {
      const d = validateMediaFields({ duration: n });
      expect(d.ok).toBe(Number.isFinite(n) && n > 0 && n <= 3600);
      const w = validateMediaFields({ width: n });
      expect(w.ok).toBe(Number.isInteger(n) && n >= 1 && n <= 8192);
    }),
    { numRuns: 1000, seed: 3 },
  );
});

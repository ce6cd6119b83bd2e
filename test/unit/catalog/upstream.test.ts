/**
 * Reading a catalog from a file (src/catalog/upstream.ts): the bytes as text, a stamp that makes
 * an unchanged file "unchanged", and each failure kind. (URLs are tested against live servers in
 * test/integration/server.test.ts.)
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LIMITS, readSource } from "../../../src/catalog/upstream.ts";

const dir = mkdtempSync(join(tmpdir(), "adsrv-upstream-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const doc = '{"ads":[{"id":"é-1","video_url":"https://cdn.example.com/é.mp4"}]}';

describe("readSource on a file", () => {
  test("the text, its size in bytes, and 'unchanged' while size and mtime stay", async () => {
    const path = join(dir, "a.json");
    writeFileSync(path, doc);
    const first = await readSource(path, null);
    if (first.kind !== "body") throw new Error(`expected a body, got ${first.kind}`);
    expect(first.text).toBe(doc);
    expect(first.bytes).toBe(Buffer.byteLength(doc));
    expect(await readSource(path, first.validators)).toEqual({ kind: "unchanged" });
  });

  test("a leading byte order mark is dropped, as the URL path's TextDecoder does", async () => {
    const path = join(dir, "bom.json");
    writeFileSync(path, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(doc)]));
    const read = await readSource(path, null);
    expect(read.kind === "body" && read.text).toBe(doc);
  });

  test("failures: missing, not a regular file, over the byte limit", async () => {
    expect(await readSource(join(dir, "nope.json"), null)).toMatchObject({
      kind: "failed",
      failure: "not_found",
    });
    const sub = join(dir, "sub");
    mkdirSync(sub);
    expect(await readSource(sub, null)).toMatchObject({ kind: "failed", failure: "read" });
    const big = join(dir, "big.json");
    writeFileSync(big, doc);
    expect(await readSource(big, null, { ...DEFAULT_LIMITS, maxBytes: 10 })).toMatchObject({
      kind: "failed",
      failure: "too_large",
    });
  });
});

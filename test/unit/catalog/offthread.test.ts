/**
 * The off-thread catalog build (src/catalog/offthread.ts + worker.ts): a real worker thread
 * builds what the serving thread would build, or says why not.
 */
import { afterEach, describe, expect, test } from "bun:test";
import {
  type Built,
  createOffThreadBuilder,
  type OffThreadBuilder,
  WorkerFailed,
} from "../../../src/catalog/offthread.ts";
import { buildSnapshot, type Snapshot } from "../../../src/catalog/snapshot.ts";
import { parseCatalog } from "../../../src/catalog/validate.ts";
import { eligible } from "../../../src/decision/decide.ts";
import { sampleAd } from "../../rig.ts";

const builders: OffThreadBuilder[] = [];
afterEach(() => {
  for (const b of builders.splice(0)) b.close();
});
const builder = (options: Parameters<typeof createOffThreadBuilder>[0] = {}): OffThreadBuilder => {
  const b = createOffThreadBuilder(options);
  builders.push(b);
  return b;
};
const silent = new URL("../../fakes/silent-worker.ts", import.meta.url).href;

const countries = ["us", "fr", "jp"];
const langs = ["eng", "fra"];
const ads = Array.from({ length: 9_000 }, (_, i) => ({
  ...sampleAd(`ad-${i}`),
  country: countries[i % 3] as string,
  lang: langs[i % 2] as string,
  start_hour: i % 24,
  end_hour: (i * 7) % 25,
  ...(i % 10 === 0 ? { frequency_cap: 2, duration: 15 } : {}),
}));
const text = JSON.stringify({ ads: [...ads, { id: "broken" }] });

/** Every (country, lang, hour) answer of a snapshot, as ids. */
function answers(snap: Snapshot): string[] {
  const out: string[] = [];
  for (const c of countries)
    for (const l of langs)
      for (let h = 0; h < 24; h++) {
        const e = eligible(snap, c, l, h);
        out.push(
          `${c} ${l} ${h}: ${e.kind === "ads" ? Array.from(e.ads, (i) => snap.ads.id(i)).join(",") : e.reason}`,
        );
      }
  return out;
}

describe("off-thread build", () => {
  test("gives the snapshot the serving thread would build, and the canonical document", async () => {
    const local = parseCatalog(text);
    if (!local.ok) throw new Error("the fixture is valid");
    const expected = buildSnapshot(local.ads, 5);
    const built = await builder().build(text, { canonical: true }, () => 5);
    if (built.kind !== "built") throw new Error(`expected built, got ${built.kind}`);
    expect(built.snapshot.version).toBe(expected.version);
    expect(built.snapshot.loadedAt).toBe(5);
    expect(built.ads).toBe(9_000);
    expect(built.skipped).toBe(1);
    expect(built.issues.map((i) => i.index)).toEqual([9_000]);
    expect(answers(built.snapshot)).toEqual(answers(expected));
    expect(built.snapshot.ads.toArray()).toEqual(local.ads as never);
    expect(new TextDecoder().decode(built.canonical ?? new Uint8Array())).toBe(
      JSON.stringify({ ads: local.ads }),
    );
  });

  test("UTF-8 bytes are moved to the worker, not copied; no canonical document unless asked", async () => {
    const bytes = new TextEncoder().encode(text);
    const built = await builder().build(bytes, { canonical: false }, Date.now);
    if (built.kind !== "built") throw new Error("expected built");
    expect(built.canonical).toBeNull();
    expect(built.ads).toBe(9_000);
    expect(bytes.byteLength).toBe(0); // transferred: the buffer is detached here
    // A view on part of a buffer is copied (its buffer is not the caller's to give away).
    const inner = new TextEncoder().encode(` ${text} `).subarray(1, -1);
    expect((await builder().build(inner, { canonical: false }, Date.now)).kind).toBe("built");
    expect(inner.byteLength).toBe(text.length);
  });

  test("bytes with the served source's digest are answered `same`, unparsed; other bytes are built", async () => {
    const b = builder();
    const first = await b.build(new TextEncoder().encode(text), { canonical: false }, Date.now);
    if (first.kind !== "built" || first.digest === null) throw new Error("expected built with a digest");
    expect(first.digest).toBe(new Bun.CryptoHasher("sha256").update(text).digest("hex"));
    const served = first.digest;
    const same = await b.build(
      new TextEncoder().encode(text),
      { canonical: false, unchangedDigest: () => served },
      Date.now,
    );
    expect(same).toEqual({ id: expect.any(Number), kind: "same", digest: served });
    // One byte more (the same catalog): built, with its own digest.
    const other = await b.build(
      new TextEncoder().encode(`${text} `),
      { canonical: false, unchangedDigest: () => served },
      Date.now,
    );
    expect(other.kind === "built" && other.digest !== served && other.snapshot.version).toBe(
      first.snapshot.version,
    );
    // A string source (the state dir's copy) has no digest and is always built.
    const fromText = await b.build(text, { canonical: false, unchangedDigest: () => served }, Date.now);
    expect(fromText.kind === "built" && fromText.digest).toBeNull();
  });

  test("paced only while serving, and only while the server answers requests", async () => {
    const activity = new Int32Array(new SharedArrayBuffer(4));
    const b = builder({ activity });
    const pausesOf = (built: Built): number => (built.kind === "built" ? built.pauses : -1);
    // The server idle: no sleeps, serving or not.
    expect(pausesOf(await b.build(text, { canonical: false, serving: () => true }, Date.now))).toBe(0);
    // Requests answered all along (the counter moves every millisecond).
    const ticker = setInterval(() => Atomics.add(activity, 0, 1), 1);
    try {
      expect(pausesOf(await b.build(text, { canonical: false, serving: () => false }, Date.now))).toBe(0);
      expect(
        pausesOf(await b.build(text, { canonical: false, serving: () => true }, Date.now)),
      ).toBeGreaterThan(0);
    } finally {
      clearInterval(ticker);
    }
  });

  test("a refused document says why, with its skipped entries", async () => {
    const built = await builder().build('{"ads":[{"id":1}]}', { canonical: false }, Date.now);
    expect(built).toMatchObject({ kind: "rejected", code: "all_invalid", skipped: 1 });
    expect((await builder().build("{not json", { canonical: false }, Date.now)).kind).toBe("rejected");
  });

  test("builds queue one after another, each answered with its own result", async () => {
    const b = builder();
    const small = JSON.stringify({ ads: [sampleAd("only")] });
    const [x, y] = await Promise.all([
      b.build(text, { canonical: false }, Date.now),
      b.build(small, { canonical: false }, Date.now),
    ]);
    expect(x.kind === "built" && x.ads).toBe(9_000);
    expect(y.kind === "built" && y.snapshot.ads.id(0)).toBe("only");
  });

  test("a worker that cannot start rejects the build", async () => {
    const b = builder({ workerUrl: new URL("./no-such-worker.ts", import.meta.url).href });
    await expect(b.build(text, { canonical: false }, Date.now)).rejects.toBeInstanceOf(WorkerFailed);
  });

  test("a worker that never answers fails the build after the timeout", async () => {
    const b = builder({ workerUrl: silent, timeoutMs: 100 });
    await expect(b.build(text, { canonical: false }, Date.now)).rejects.toThrow("no answer within 100 ms");
  });

  test("bytes on shared memory are shared with the worker, not moved (a shared buffer cannot be)", async () => {
    const encoded = new TextEncoder().encode(text);
    const shared = new Uint8Array(new SharedArrayBuffer(encoded.byteLength));
    shared.set(encoded);
    const built = await builder().build(shared, { canonical: false }, Date.now);
    expect(built.kind === "built" && built.ads).toBe(9_000);
    expect(shared.byteLength).toBe(encoded.byteLength);
  });

  test("closing rejects the build in progress and any later one", async () => {
    const b = builder({ workerUrl: silent });
    const pending = b.build(text, { canonical: false }, Date.now); // the silent worker never answers it
    // One turn of the loop: the queued build has been posted to the worker (it is in flight).
    await new Promise((resolve) => setImmediate(resolve));
    b.close();
    await expect(pending).rejects.toBeInstanceOf(WorkerFailed);
    await expect(b.build(text, { canonical: false }, Date.now)).rejects.toBeInstanceOf(WorkerFailed);
  });
});

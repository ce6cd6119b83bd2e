/**
 * The sync loop with the catalog worker (src/sync/loop.ts `prepare`): big catalogs are built off
 * this thread; a failed worker fails that attempt only, and later builds run here in slices.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createOffThreadBuilder,
  type OffThreadBuilder,
  WorkerFailed,
} from "../../../src/catalog/offthread.ts";
import { buildSnapshot } from "../../../src/catalog/snapshot.ts";
import { parseCatalog } from "../../../src/catalog/validate.ts";
import { makeConfig } from "../../../src/config.ts";
import { sha256Hex } from "../../../src/crypto/sha256.ts";
import { CatalogHolder } from "../../../src/sync/holder.ts";
import { CatalogSync, canonicalDoc } from "../../../src/sync/loop.ts";
import { createLogger } from "../../../src/telemetry/log.ts";
import { sampleAd, sharedDoc } from "../../rig.ts";

const big = JSON.stringify({
  ads: [...Array.from({ length: 12_000 }, (_, i) => sampleAd(`ad-${i}`)), { id: "no-url" }],
});

const builders: OffThreadBuilder[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const b of builders.splice(0)) b.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "adsrv-worker-"));
  dirs.push(dir);
  return dir;
}

/** A builder whose every build fails as a crashed worker's does; counts its calls. */
/** A catalog file holding `big`, in a temp dir removed after the test. */
async function bigSource(): Promise<string> {
  const source = join(await tempDir(), "source.json");
  await writeFile(source, big);
  return source;
}

/** The real off-thread builder (closed after the test), each build going through `through`. */
function realBuilder(
  through: (
    build: OffThreadBuilder["build"],
    ...args: Parameters<OffThreadBuilder["build"]>
  ) => ReturnType<OffThreadBuilder["build"]>,
): OffThreadBuilder {
  const real = createOffThreadBuilder();
  builders.push(real);
  return {
    build: (text, options, loadedAt) => through((...args) => real.build(...args), text, options, loadedAt),
    close: () => real.close(),
  };
}

function brokenBuilder(
  onBuild: (body: string | Uint8Array) => void = () => {},
  timedOut = false,
): OffThreadBuilder & {
  calls: number;
} {
  const b = {
    calls: 0,
    build: (body: string | Uint8Array) => {
      b.calls++;
      onBuild(body);
      return Promise.reject(new WorkerFailed("catalog worker exited", { timedOut }));
    },
    close: () => {},
  };
  return b;
}

function syncWith(
  builder: OffThreadBuilder,
  stateDir: string | null = null,
  options: { live?: boolean; source?: string } = {},
) {
  const holder = new CatalogHolder();
  if (options.live !== false) holder.swap(buildSnapshot([], 0));
  const lines: string[] = [];
  const sync = new CatalogSync({
    source: options.source ?? "unused",
    refreshMs: 60_000,
    limits: makeConfig().fetch,
    stateDir,
    holder,
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    now: () => 42,
    builder,
  });
  return { sync, holder, lines };
}

describe("catalog sync with the worker", () => {
  expect(big.length).toBeGreaterThan(1 << 20);

  test("a big catalog is built on the worker and swapped in; the state dir gets the canonical copy", async () => {
    const dir = await tempDir();
    const builder = createOffThreadBuilder();
    builders.push(builder);
    const { sync, holder, lines } = syncWith(builder, dir);
    const outcome = await sync.applyShared(sharedDoc(big));
    expect(outcome).toMatchObject({ kind: "updated", ads: 12_000, skipped: 1, from: "redis" });
    expect(lines.some((l) => l.includes("building the catalog on the worker thread"))).toBe(true);
    expect(lines.some((l) => l.includes("catalog entry skipped") && l.includes("no-url"))).toBe(true);
    expect(holder.current?.ads.length).toBe(12_000);
    expect(holder.current?.loadedAt).toBe(42);
    const local = parseCatalog(big);
    if (!local.ok) throw new Error("valid fixture");
    expect(holder.current?.version).toBe(buildSnapshot(local.ads, 0).version);
    expect(await readFile(join(dir, "catalog.json"), "utf8")).toBe(JSON.stringify({ ads: local.ads }));
  });

  test("a document from Redis is built on the worker, and this thread neither decodes nor hashes it", async () => {
    const builder = createOffThreadBuilder();
    builders.push(builder);
    const { sync, holder } = syncWith(builder);
    const doc = sharedDoc(big);
    const decode = spyOn(TextDecoder.prototype, "decode");
    const hashed = spyOn(Bun.CryptoHasher.prototype, "update");
    try {
      expect(await sync.applyShared(doc)).toMatchObject({ kind: "updated", ads: 12_000 });
      expect(decode).not.toHaveBeenCalled();
      expect(hashed).not.toHaveBeenCalled();
    } finally {
      decode.mockRestore();
      hashed.mockRestore();
    }
    expect(holder.current?.ads.length).toBe(12_000);
  });

  test("a document from Redis whose bytes fail the stored digest is refused, big or small, and the served one stays", async () => {
    const replies: string[] = [];
    const builder = realBuilder(async (build, ...args) => {
      const built = await build(...args);
      replies.push(built.kind);
      return built;
    });
    const { sync, holder, lines } = syncWith(builder);
    const served = holder.current;
    const small = JSON.stringify({ ads: [sampleAd("ad-1")] });
    for (const text of [big, small]) {
      const outcome = await sync.applyShared(sharedDoc(text, "0".repeat(64)));
      expect(outcome).toMatchObject({ kind: "failed", failure: "digest" });
      expect(outcome.kind === "failed" && outcome.message).toContain("fails its digest");
      expect(holder.current).toBe(served);
    }
    expect(lines.filter((l) => l.includes("fails its digest")).length).toBe(2);
    // The big one: the worker answered as soon as it had hashed the bytes, and built nothing.
    expect(replies).toEqual(["mismatch"]);
    // The same bytes with their true digest load.
    expect(await sync.applyShared(sharedDoc(small))).toMatchObject({ kind: "updated", ads: 1 });
  });

  test("a document from Redis built here after the worker failed is hashed here, and refused on a wrong digest", async () => {
    const broken = brokenBuilder();
    const { sync, holder } = syncWith(broken);
    const served = holder.current;
    expect(await sync.applyShared(sharedDoc(big, "f".repeat(64)))).toMatchObject({
      kind: "failed",
      failure: "digest",
    });
    expect(broken.calls).toBe(1);
    expect(holder.current).toBe(served);
    expect(await sync.applyShared(sharedDoc(big))).toMatchObject({ kind: "updated", ads: 12_000 });
  });

  test("a document from Redis whose bytes moved to a worker that then failed: a worker failure, not a digest one", async () => {
    const broken = brokenBuilder((body) => {
      if (typeof body !== "string") (body.buffer as ArrayBuffer).transfer(0);
    });
    const { sync, holder } = syncWith(broken);
    const served = holder.current;
    expect(await sync.applyShared(sharedDoc(big))).toMatchObject({ kind: "failed", failure: "worker" });
    expect(holder.current).toBe(served);
  });

  test("bytes moved to a worker that then fails: that attempt fails; later builds run here, in slices", async () => {
    const dir = await tempDir();
    const source = join(dir, "source.json");
    await writeFile(source, big);
    // Fails as a crashed worker does, after the bytes were moved to it (the buffer detached).
    const broken = brokenBuilder((body) => {
      if (typeof body !== "string") (body.buffer as ArrayBuffer).transfer(0);
    });
    const { sync, holder, lines } = syncWith(broken, null, { source });
    const before = holder.current;
    const failed = await sync.attempt();
    expect(failed).toMatchObject({ kind: "failed", failure: "worker" });
    expect(holder.current).toBe(before); // the live catalog stays
    expect(lines.some((l) => l.includes('"level":"error"') && l.includes("catalog worker failed"))).toBe(
      true,
    );
    const next = await sync.attempt(); // no validators kept after a failure: read again
    expect(next).toMatchObject({ kind: "updated", ads: 12_000 });
    expect(broken.calls).toBe(1);
    expect(lines.some((l) => l.includes("rebuilding the catalog in slices"))).toBe(true);
  });

  test("the state dir's copy at start: a failed worker still had the text, so it is built here", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "catalog.json"), big);
    const broken = brokenBuilder();
    const serving: (boolean | undefined)[] = [];
    const recorded: OffThreadBuilder = {
      build: (body, options, loadedAt) => {
        serving.push(options.serving?.());
        return broken.build(body, options, loadedAt);
      },
      close: () => {},
    };
    const { sync, holder, lines } = syncWith(recorded, dir, { live: false });
    const outcome = await sync.loadFromStateDir();
    expect(outcome).toMatchObject({ kind: "updated", ads: 12_000, from: "state_dir" });
    expect(serving).toEqual([false]); // nothing served yet: no pacing
    expect(holder.current?.ads.length).toBe(12_000);
    expect(broken.calls).toBe(1);
    expect(lines.filter((l) => l.includes("catalog worker failed")).length).toBe(1);
  });

  test("stopping during a build is no worker failure: no error, and the worker is used again", async () => {
    const broken = brokenBuilder();
    const { sync, lines } = syncWith(broken);
    sync.stop();
    const outcome = await sync.applyShared(sharedDoc(big));
    expect(outcome).toMatchObject({ kind: "failed", failure: "worker" });
    expect(lines.some((l) => l.includes('"level":"error"') || l.includes('"level":"warn"'))).toBe(false);
    await sync.applyShared(sharedDoc(big));
    expect(broken.calls).toBe(2);
  });

  test("a source rewritten with the same bytes is hashed, not built; other bytes of the same catalog are built once", async () => {
    const source = await bigSource();
    const replies: string[] = [];
    const recording = realBuilder(async (build, ...args) => {
      const built = await build(...args);
      replies.push(built.kind);
      return built;
    });
    const { sync, holder } = syncWith(recording, null, { source });
    // Each write gets its own modification time, so the loop reads the file again.
    let stamp = 1_700_000_000;
    const rewrite = async (content: string): Promise<void> => {
      await writeFile(source, content);
      stamp += 10;
      await utimes(source, stamp, stamp);
    };
    expect(await sync.refresh()).toMatchObject({ kind: "updated", ads: 12_000 });
    const served = holder.current;
    // A new stamp, the same bytes (a deploy rewriting the file, or A → B → A).
    await rewrite(big);
    expect(await sync.refresh()).toEqual({ kind: "unchanged" });
    // Other bytes, the same catalog: built, not swapped; then those bytes are known too.
    await rewrite(`${big}\n`);
    expect(await sync.refresh()).toEqual({ kind: "unchanged" });
    await rewrite(`${big}\n`);
    expect(await sync.refresh()).toEqual({ kind: "unchanged" });
    expect(holder.current).toBe(served);
    expect(replies).toEqual(["built", "same", "built", "same"]);
    // Once another snapshot is served, the digest no longer applies: the same bytes are built.
    holder.swap(buildSnapshot([], 0));
    await rewrite(big);
    expect(await sync.refresh()).toMatchObject({ kind: "updated", ads: 12_000 });
    expect(replies.at(-1)).toBe("built");
  });

  test("`same` after another snapshot was swapped in meanwhile: the source is read again next time", async () => {
    const source = await bigSource();
    const other = buildSnapshot([], 0);
    let swapAfterBuild = false;
    const replies: string[] = [];
    const { sync, holder } = syncWith(
      realBuilder(async (build, ...args) => {
        const built = await build(...args);
        replies.push(built.kind);
        // As the fleet's swap of a small shared document would, while the worker hashed.
        if (swapAfterBuild) holder.swap(other);
        return built;
      }),
      null,
      { source },
    );
    expect(await sync.refresh()).toMatchObject({ kind: "updated", ads: 12_000 });
    const version = holder.current?.version;
    await writeFile(source, big);
    await utimes(source, 1_700_000_100, 1_700_000_100);
    swapAfterBuild = true;
    expect(await sync.refresh()).toEqual({ kind: "unchanged" });
    swapAfterBuild = false;
    expect(holder.current).toBe(other);
    // The file did not change again, but its validators were not kept: read, built, swapped back.
    expect(await sync.refresh()).toMatchObject({ kind: "updated", ads: 12_000 });
    expect(holder.current?.version).toBe(version);
    expect(replies).toEqual(["built", "same", "built"]);
  });

  test("the canonical document is built by the worker only when it is saved or published", async () => {
    const source = await bigSource();
    const asked: [boolean, boolean | undefined][] = [];
    const recording = realBuilder((build, text, options, loadedAt) => {
      asked.push([options.canonical, options.serving?.()]);
      return build(text, options, loadedAt);
    });
    const { sync } = syncWith(recording, null, { source });
    const plain = await sync.fetchValidated();
    expect(canonicalDoc(plain)).toBeNull();
    const local = parseCatalog(big);
    if (!local.ok) throw new Error("valid fixture");
    await writeFile(source, `${big} `); // a new stamp: read again
    const forPublish = await sync.fetchValidated(true);
    const canonical = canonicalDoc(forPublish);
    expect(canonical?.version).toBe(buildSnapshot(local.ads, 0).version);
    expect(canonical?.doc).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(canonical?.doc as Uint8Array)).toBe(JSON.stringify({ ads: local.ads }));
    // Hashed on the worker, for the fleet's publish (this thread does not hash it again).
    expect(canonical?.sha256).toBe(sha256Hex(canonical?.doc as Uint8Array));
    expect(asked).toEqual([
      [false, true], // a snapshot is live: the worker paces itself
      [true, true],
    ]);
  });

  test("a timed-out worker fails its attempt but is used again (slow, not broken)", async () => {
    const dir = await tempDir();
    const source = join(dir, "source.json");
    await writeFile(source, big);
    const detach = (body: string | Uint8Array) => {
      if (typeof body !== "string") (body.buffer as ArrayBuffer).transfer(0);
    };
    const slow = brokenBuilder(detach, true);
    const { sync, lines } = syncWith(slow, null, { source });
    expect(await sync.attempt()).toMatchObject({ kind: "failed", failure: "worker" });
    expect(lines.some((l) => l.includes("catalog worker timed out"))).toBe(true);
    await sync.attempt();
    expect(slow.calls).toBe(2); // not latched: the next build went to the worker again
    expect(lines.some((l) => l.includes("rebuilding the catalog in slices"))).toBe(false);
  });
});

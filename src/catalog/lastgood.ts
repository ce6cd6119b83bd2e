/**
 * The last accepted catalog on disk (`--state-dir`), written atomically: temporary file,
 * then rename, so a crash never leaves a torn copy.
 * @module
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

const FILE = "catalog.json";

/** Saves the canonical document (`{"ads":[…]}` of the valid ads), as text or UTF-8. */
export async function saveLastGood(dir: string, doc: string | Uint8Array): Promise<void> {
  await mkdir(dir, { recursive: true });
  const target = join(dir, FILE);
  const temp = join(dir, `.${FILE}.${process.pid}.${Date.now()}.tmp`);
  await writeFile(temp, doc);
  await rename(temp, target);
}

/** The saved document's text, or null if there is none. */
export async function loadLastGood(dir: string): Promise<string | null> {
  try {
    return await readFile(join(dir, FILE), "utf8");
  } catch {
    return null;
  }
}

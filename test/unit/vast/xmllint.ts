/**
 * Validates XML documents against the IAB VAST 4.2 schema with `xmllint --schema`, all in one
 * process run (one file per document in a temp directory).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const XSD = join(import.meta.dir, "../../../..", "shared/vast/vast_4.2.xsd");

/** Why the schema check cannot run here, or null when it can. */
export function schemaCheckUnavailable(): string | null {
  if (Bun.which("xmllint") === null) return "xmllint is not installed (apt-get install libxml2-utils)";
  if (!existsSync(XSD)) return `the VAST 4.2 schema is missing at ${XSD}`;
  return null;
}

/** Each document's validation errors ([] when it validates), in input order. */
export function validateAll(docs: readonly string[]): string[][] {
  const dir = mkdtempSync(join(tmpdir(), "adsrv-vast-"));
  try {
    const files = docs.map((doc, i) => {
      const file = join(dir, `doc${i}.xml`);
      writeFileSync(file, doc);
      return file;
    });
    const run = Bun.spawnSync(["xmllint", "--noout", "--schema", XSD, ...files], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const output = run.stderr.toString();
    const errors = files.map((file) =>
      output
        .split("\n")
        .filter((line) => line.startsWith(`${file}:`) || line === `${file} fails to validate`),
    );
    // Each file says either "validates" or "fails to validate": a file that says neither
    // (xmllint crashed, or wrote nothing) is a failure too.
    files.forEach((file, i) => {
      if (!output.includes(`${file} validates`) && (errors[i] as string[]).length === 0)
        (errors[i] as string[]).push(`${file}: no verdict from xmllint (exit ${run.exitCode})`);
    });
    return errors;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

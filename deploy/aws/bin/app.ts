#!/usr/bin/env bun
/**
 * CDK app entry. Run by the CDK CLI (cdk.json `app`), or directly to synthesize without it:
 * `bun deploy/aws/bin/app.ts` writes the templates to deploy/aws/cdk.out/.
 * @module
 */
import { join } from "node:path";
import { AWS_DIR, buildApp } from "../lib/app.ts";

// The CLI passes CDK_OUTDIR; run alone, write next to cdk.json whatever the cwd.
const outdir = process.env.CDK_OUTDIR ?? join(AWS_DIR, "cdk.out");
const { app } = buildApp({ outdir });
const assembly = app.synth();
if (process.env.CDK_OUTDIR === undefined) {
  for (const stack of assembly.stacks) console.log(`${stack.stackName}: ${join(outdir, stack.templateFile)}`);
}

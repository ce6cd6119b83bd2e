/**
 * Builds the CDK app: reads cdk.json's context itself (so `bun deploy/aws/bin/app.ts`, the CDK
 * CLI and the tests all see the same feature flags and defaults), applies overrides, and adds the
 * two stacks. No lookups, no assets that need Docker: synthesis is offline.
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { App, Tags } from "aws-cdk-lib";
import { AdsrvStack } from "./adsrv-stack.ts";
import { RegistryStack } from "./registry-stack.ts";
import { readSettings } from "./settings.ts";

/** deploy/aws/ */
export const AWS_DIR = join(import.meta.dir, "..");

/** cdk.json's `context` (feature flags and documented defaults). */
export function cdkJsonContext(): Record<string, unknown> {
  const json = JSON.parse(readFileSync(join(AWS_DIR, "cdk.json"), "utf8")) as {
    context?: Record<string, unknown>;
  };
  return json.context ?? {};
}

export interface BuiltApp {
  readonly app: App;
  readonly registry: RegistryStack;
  readonly adsrv: AdsrvStack;
}

/**
 * @param context overrides over cdk.json (the CLI's `-c` values arrive through CDK_CONTEXT_JSON,
 *   which `App` merges over these).
 */
export function buildApp(options: { context?: Record<string, unknown>; outdir?: string } = {}): BuiltApp {
  const app = new App({
    context: { ...cdkJsonContext(), ...options.context },
    ...(options.outdir === undefined ? {} : { outdir: options.outdir }),
  });
  const settings = readSettings(app.node);
  const env = { account: settings.account, region: settings.region };
  const registry = new RegistryStack(app, `${settings.stackName}Registry`, {
    env,
    settings,
    description: "adsrv image registry (ECR)",
  });
  const adsrv = new AdsrvStack(app, settings.stackName, {
    env,
    settings,
    description: "adsrv ad decision service: Fargate, internal ALB, HTTP API, Redis, Cognito",
  });
  Tags.of(app).add("app", "adsrv");
  return { app, registry, adsrv };
}

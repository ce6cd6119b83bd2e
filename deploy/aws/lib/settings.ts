/**
 * The deployment's knobs: CDK context values (cdk.json, or `cdk deploy -c key=value`) read,
 * checked and frozen in one place, so that every construct takes plain typed values.
 *
 * Values given with `-c` arrive as strings; numbers and booleans are parsed here, and a bad value
 * fails the synthesis with a one-line reason naming the key (never a half-built template).
 * @module
 */

/** What `readSettings` needs from a construct node: `node.tryGetContext`. */
export interface ContextSource {
  tryGetContext(key: string): unknown;
}

export interface CustomDomain {
  /** e.g. `ads.example.com`. */
  readonly domainName: string;
  readonly hostedZoneId: string;
  /** The hosted zone's apex, e.g. `example.com`. */
  readonly hostedZoneName: string;
}

export interface Settings {
  /** Account and region the stack is bound to (dummy defaults make synthesis offline). */
  readonly account: string;
  readonly region: string;
  /**
   * Exactly three zone names, or null (the default) for the region's first three, resolved at
   * deploy time with `Fn::GetAZs`: either way synthesis never looks them up.
   */
  readonly availabilityZones: readonly string[] | null;
  readonly natGateways: number;
  readonly stackName: string;

  /** ECR repository the image is pulled from (created by the registry stack). */
  readonly ecrRepository: string;
  /**
   * Default of the `ImageTag` CloudFormation parameter; null leaves it without a default, so that
   * the first `cdk deploy` must name a tag (`--parameters ImageTag=…`) and later ones reuse it.
   */
  readonly imageTag: string | null;
  readonly containerPort: number;
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly cpuArchitecture: "X86_64" | "ARM64";

  readonly minTasks: number;
  readonly maxTasks: number;
  readonly cpuTargetPercent: number;
  /** ALBRequestCountPerTarget target: requests per task per minute. */
  readonly requestsPerTargetPerMinute: number;
  /** adsrv's `--shutdown-grace`; the ALB deregistration delay and ECS stop timeout derive from it. */
  readonly shutdownGraceSeconds: number;

  /** Redis: primary + replica in two AZs with automatic failover and Multi-AZ; false: one node. */
  readonly multiAz: boolean;
  readonly redisNodeType: string;
  readonly redisEngineVersion: string;
  /** ElastiCache replication group id (lower case, ≤ 40 characters). */
  readonly redisId: string;

  readonly catalogUrl: string;
  readonly refreshSeconds: number;
  readonly frequencyCap: number;
  readonly frequencyWindowSeconds: number;
  /** Route `GET /impression` (issue 7) through the API; off until adsrv serves it. */
  readonly impressionRoute: boolean;

  readonly throttleRatePerSecond: number;
  readonly throttleBurst: number;
  readonly customDomain: CustomDomain | null;

  readonly logRetentionDays: number;
  readonly alarmEmail: string | null;
  /** Alarm thresholds. */
  readonly p99LatencyMs: number;
  readonly error5xxPercent: number;
  readonly catalogStaleMinutes: number;
}

export class SettingsError extends Error {
  override readonly name = "SettingsError";
}

/** The defaults: the minimum production footprint; also what cdk.json documents. */
export const DEFAULT_SETTINGS: Settings = Object.freeze({
  account: "123456789012",
  region: "eu-west-1",
  availabilityZones: null,
  natGateways: 1,
  stackName: "Adsrv",
  ecrRepository: "adsrv",
  imageTag: null,
  containerPort: 8080,
  cpu: 1024,
  memoryMiB: 2048,
  cpuArchitecture: "X86_64",
  minTasks: 3,
  maxTasks: 12,
  cpuTargetPercent: 60,
  requestsPerTargetPerMinute: 60_000,
  shutdownGraceSeconds: 10,
  multiAz: true,
  redisNodeType: "cache.t4g.small",
  redisEngineVersion: "7.1",
  redisId: "adsrv",
  catalogUrl: "https://campaigns.example.com/v1/catalog",
  refreshSeconds: 30,
  frequencyCap: 0,
  frequencyWindowSeconds: 86_400,
  impressionRoute: false,
  throttleRatePerSecond: 1000,
  throttleBurst: 2000,
  customDomain: null,
  logRetentionDays: 30,
  alarmEmail: null,
  p99LatencyMs: 250,
  error5xxPercent: 1,
  catalogStaleMinutes: 10,
});

/** CloudWatch Logs accepts only these retention periods (days). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

/** Fargate's valid (cpu → memory MiB range) pairs, in steps of 1024 above 4 GiB. */
const FARGATE_MEMORY: Readonly<Record<number, readonly number[]>> = {
  256: [512, 1024, 2048],
  512: [1024, 2048, 3072, 4096],
  1024: [2048, 3072, 4096, 5120, 6144, 7168, 8192],
  2048: range(4096, 16384, 1024),
  4096: range(8192, 30720, 1024),
};

function range(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let n = from; n <= to; n += step) out.push(n);
  return out;
}

function str(ctx: ContextSource, key: string, fallback: string): string {
  const value = ctx.tryGetContext(key);
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "string" || value.trim() === "") {
    throw new SettingsError(`context ${key} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  return value;
}

function optStr(ctx: ContextSource, key: string): string | null {
  const value = ctx.tryGetContext(key);
  if (value === undefined || value === null || value === "") return null;
  if (typeof value !== "string") throw new SettingsError(`context ${key} must be a string`);
  return value;
}

function num(ctx: ContextSource, key: string, fallback: number, min: number, max: number): number {
  const raw = ctx.tryGetContext(key);
  if (raw === undefined || raw === null) return fallback;
  const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new SettingsError(
      `context ${key} must be a number from ${min} to ${max}, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

function int(ctx: ContextSource, key: string, fallback: number, min: number, max: number): number {
  const value = num(ctx, key, fallback, min, max);
  if (!Number.isInteger(value)) throw new SettingsError(`context ${key} must be an integer, got ${value}`);
  return value;
}

function bool(ctx: ContextSource, key: string, fallback: boolean): boolean {
  const value = ctx.tryGetContext(key);
  if (value === undefined || value === null) return fallback;
  if (value === true || value === "true") return true;
  if (value === false || value === "false") return false;
  throw new SettingsError(`context ${key} must be true or false, got ${JSON.stringify(value)}`);
}

function azs(ctx: ContextSource, region: string): readonly string[] | null {
  const raw = ctx.tryGetContext("availabilityZones");
  if (raw === undefined || raw === null || raw === "") return null;
  const list = typeof raw === "string" ? raw.split(",").map((s) => s.trim()) : raw;
  if (!Array.isArray(list) || list.length !== 3 || !list.every((z) => typeof z === "string" && z !== "")) {
    throw new SettingsError(
      `context availabilityZones must name exactly three zones, got ${JSON.stringify(raw)}`,
    );
  }
  if (new Set(list).size !== 3 || !list.every((z) => String(z).startsWith(region))) {
    throw new SettingsError(`context availabilityZones must be three distinct zones of ${region}`);
  }
  return Object.freeze(list.map(String));
}

/** ECR's tag grammar. */
export const IMAGE_TAG_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

function imageTag(ctx: ContextSource): string | null {
  const tag = optStr(ctx, "imageTag");
  if (tag !== null && !new RegExp(IMAGE_TAG_PATTERN).test(tag)) {
    throw new SettingsError(`imageTag ${JSON.stringify(tag)} is not a valid image tag`);
  }
  return tag;
}

function domain(ctx: ContextSource): CustomDomain | null {
  const domainName = optStr(ctx, "domainName");
  const hostedZoneId = optStr(ctx, "hostedZoneId");
  const hostedZoneName = optStr(ctx, "hostedZoneName");
  if (domainName === null && hostedZoneId === null && hostedZoneName === null) return null;
  if (domainName === null || hostedZoneId === null || hostedZoneName === null) {
    throw new SettingsError("a custom domain needs all of domainName, hostedZoneId and hostedZoneName");
  }
  if (domainName !== hostedZoneName && !domainName.endsWith(`.${hostedZoneName}`)) {
    throw new SettingsError(`domainName ${domainName} is not inside hosted zone ${hostedZoneName}`);
  }
  return Object.freeze({ domainName, hostedZoneId, hostedZoneName });
}

/** Reads every setting from context over DEFAULT_SETTINGS; throws SettingsError on a bad value. */
export function readSettings(ctx: ContextSource): Settings {
  const d = DEFAULT_SETTINGS;
  const region = str(ctx, "region", d.region);
  const account = str(ctx, "account", d.account);
  if (!/^\d{12}$/.test(account)) throw new SettingsError(`context account must be 12 digits, got ${account}`);

  const cpu = int(ctx, "cpu", d.cpu, 256, 4096);
  const memoryMiB = int(ctx, "memoryMiB", d.memoryMiB, 512, 30720);
  const allowed = FARGATE_MEMORY[cpu];
  if (allowed === undefined || !allowed.includes(memoryMiB)) {
    throw new SettingsError(`Fargate has no task size cpu=${cpu} memoryMiB=${memoryMiB}`);
  }
  const cpuArchitecture = str(ctx, "cpuArchitecture", d.cpuArchitecture);
  if (cpuArchitecture !== "X86_64" && cpuArchitecture !== "ARM64") {
    throw new SettingsError(`context cpuArchitecture must be X86_64 or ARM64, got ${cpuArchitecture}`);
  }

  const minTasks = int(ctx, "minTasks", d.minTasks, 3, 1000);
  const maxTasks = int(ctx, "maxTasks", d.maxTasks, 3, 1000);
  if (maxTasks < minTasks) throw new SettingsError(`maxTasks (${maxTasks}) is below minTasks (${minTasks})`);

  const logRetentionDays = int(ctx, "logRetentionDays", d.logRetentionDays, 1, 3653);
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(logRetentionDays)) {
    throw new SettingsError(`logRetentionDays ${logRetentionDays} is not one CloudWatch Logs accepts`);
  }

  const redisId = str(ctx, "redisId", d.redisId);
  if (!/^[a-z][a-z0-9-]{0,39}$/.test(redisId) || redisId.endsWith("-") || redisId.includes("--")) {
    throw new SettingsError(`redisId ${redisId} is not a valid ElastiCache replication group id`);
  }
  const catalogUrl = str(ctx, "catalogUrl", d.catalogUrl);
  if (!/^https?:\/\/[^\s/]+/.test(catalogUrl)) {
    throw new SettingsError(`catalogUrl must be an http(s) URL, got ${catalogUrl}`);
  }
  const throttleRatePerSecond = num(ctx, "throttleRatePerSecond", d.throttleRatePerSecond, 1, 1_000_000);
  const throttleBurst = int(ctx, "throttleBurst", d.throttleBurst, 1, 5000);

  return Object.freeze({
    account,
    region,
    availabilityZones: azs(ctx, region),
    natGateways: int(ctx, "natGateways", d.natGateways, 1, 3),
    stackName: str(ctx, "stackName", d.stackName),
    ecrRepository: str(ctx, "ecrRepository", d.ecrRepository),
    imageTag: imageTag(ctx),
    containerPort: int(ctx, "containerPort", d.containerPort, 1024, 65535),
    cpu,
    memoryMiB,
    cpuArchitecture,
    minTasks,
    maxTasks,
    cpuTargetPercent: num(ctx, "cpuTargetPercent", d.cpuTargetPercent, 10, 90),
    requestsPerTargetPerMinute: int(
      ctx,
      "requestsPerTargetPerMinute",
      d.requestsPerTargetPerMinute,
      1,
      10_000_000,
    ),
    shutdownGraceSeconds: int(ctx, "shutdownGraceSeconds", d.shutdownGraceSeconds, 1, 110),
    multiAz: bool(ctx, "multiAz", d.multiAz),
    redisNodeType: str(ctx, "redisNodeType", d.redisNodeType),
    redisEngineVersion: str(ctx, "redisEngineVersion", d.redisEngineVersion),
    redisId,
    catalogUrl,
    refreshSeconds: num(ctx, "refreshSeconds", d.refreshSeconds, 1, 86_400),
    frequencyCap: int(ctx, "frequencyCap", d.frequencyCap, 0, 1_000_000),
    frequencyWindowSeconds: int(ctx, "frequencyWindowSeconds", d.frequencyWindowSeconds, 1, 31_536_000),
    impressionRoute: bool(ctx, "impressionRoute", d.impressionRoute),
    throttleRatePerSecond,
    throttleBurst,
    customDomain: domain(ctx),
    logRetentionDays,
    alarmEmail: optStr(ctx, "alarmEmail"),
    p99LatencyMs: num(ctx, "p99LatencyMs", d.p99LatencyMs, 1, 60_000),
    error5xxPercent: num(ctx, "error5xxPercent", d.error5xxPercent, 0.01, 100),
    catalogStaleMinutes: int(ctx, "catalogStaleMinutes", d.catalogStaleMinutes, 2, 1440),
  });
}

/** The ALB deregistration delay and ECS stop timeout: adsrv's drain plus a margin. */
export function drainSeconds(settings: Settings): number {
  return settings.shutdownGraceSeconds + 5;
}

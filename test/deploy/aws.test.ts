/**
 * Issue 8: the AWS CDK app in deploy/aws/, synthesized in-process (no network, no credentials,
 * no Docker) and checked requirement by requirement on the CloudFormation template, plus a
 * hand-written "nag" pass over every resource, a snapshot against unreviewed drift, the
 * `bin/app.ts` synthesis run as a process with the network and credentials cut off, and tsc.
 * @module
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Match, Template } from "aws-cdk-lib/assertions";
import { buildApp } from "../../deploy/aws/lib/app.ts";
import { AD_ROUTES } from "../../deploy/aws/lib/edge.ts";
import { SYNC_FAILED_MSG, SYNC_LOADED_MSG } from "../../deploy/aws/lib/observability.ts";
import { DEFAULT_SETTINGS, readSettings, type Settings } from "../../deploy/aws/lib/settings.ts";

const ROOT = join(import.meta.dir, "..", "..");
const AWS_DIR = join(ROOT, "deploy", "aws");
const BUN = process.execPath;

type Json = Record<string, unknown>;
interface Resource {
  readonly Type: string;
  readonly Properties?: Json;
}

let tpl: Template;
let res: Record<string, Resource>;
let settings: Settings;
let registry: Template;
/** Custom domain on, Multi-AZ off, impression route on, other task bounds. */
let variant: Template;
const tmp = mkdtempSync(join(tmpdir(), "adsrv-cdk-"));
/** Synthesis and tsc take 5–10 s on an idle 2-core box; allow for a loaded one. */
const SLOW = 90_000;

function run(cmd: string[], env: Record<string, string | undefined>) {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
  return Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then(
    ([code, stdout, stderr]) => ({ code, stdout, stderr }),
  );
}

/** An environment without AWS credentials and with every proxy pointing at a closed port. */
function offlineEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(AWS_|CDK_)/.test(k)) env[k] = v;
  return {
    ...env,
    AWS_CONFIG_FILE: "/nonexistent",
    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
    AWS_EC2_METADATA_DISABLED: "true",
    HTTP_PROXY: "http://127.0.0.1:9",
    HTTPS_PROXY: "http://127.0.0.1:9",
    NO_PROXY: "",
  };
}

beforeAll(() => {
  // One synthesis per configuration for the whole file (the first one pays aws-cdk-lib's start-up, ~5 s).
  const built = buildApp({ outdir: join(tmp, "main") });
  settings = built.adsrv.settings;
  tpl = Template.fromStack(built.adsrv);
  registry = Template.fromStack(built.registry);
  res = tpl.toJSON().Resources as Record<string, Resource>;

  const other = buildApp({
    outdir: join(tmp, "variant"),
    context: {
      domainName: "ads.example.com",
      hostedZoneId: "Z0123456789ABCDEFGHIJ",
      hostedZoneName: "example.com",
      multiAz: "false",
      impressionRoute: "true",
      minTasks: "4",
      maxTasks: "20",
      availabilityZones: "eu-west-1a,eu-west-1b,eu-west-1c",
    },
  });
  variant = Template.fromStack(other.adsrv);
}, SLOW);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---- helpers over the template ----

function ofType(type: string, template: Template = tpl): [string, Json][] {
  const all = template.toJSON().Resources as Record<string, Resource>;
  return Object.entries(all)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties ?? {}]);
}

function only(type: string, template: Template = tpl): [string, Json] {
  const list = ofType(type, template);
  expect(list).toHaveLength(1);
  return list[0] as [string, Json];
}

function sgByDescription(prefix: string): string {
  const hits = ofType("AWS::EC2::SecurityGroup").filter(([, p]) =>
    String(p.GroupDescription).startsWith(prefix),
  );
  expect(hits).toHaveLength(1);
  return (hits[0] as [string, Json])[0];
}

const getAttGroupId = (id: string) => ({ "Fn::GetAtt": [id, "GroupId"] });

interface Rule {
  readonly source: unknown;
  readonly from: unknown;
  readonly to: unknown;
  readonly protocol: unknown;
}

/** Every ingress rule of a security group: inline ones and AWS::EC2::SecurityGroupIngress resources. */
function ingressOf(sgId: string): Rule[] {
  const rules: Rule[] = [];
  const sg = res[sgId]?.Properties ?? {};
  for (const r of (sg.SecurityGroupIngress as Json[] | undefined) ?? []) {
    rules.push({
      source: r.SourceSecurityGroupId ?? r.CidrIp ?? r.CidrIpv6,
      from: r.FromPort,
      to: r.ToPort,
      protocol: r.IpProtocol,
    });
  }
  for (const [, p] of ofType("AWS::EC2::SecurityGroupIngress")) {
    if (JSON.stringify(p.GroupId) !== JSON.stringify(getAttGroupId(sgId))) continue;
    rules.push({
      source: p.SourceSecurityGroupId ?? p.CidrIp ?? p.CidrIpv6,
      from: p.FromPort,
      to: p.ToPort,
      protocol: p.IpProtocol,
    });
  }
  return rules;
}

function egressOf(sgId: string): Rule[] {
  const rules: Rule[] = [];
  const sg = res[sgId]?.Properties ?? {};
  for (const r of (sg.SecurityGroupEgress as Json[] | undefined) ?? []) {
    rules.push({
      source: r.DestinationSecurityGroupId ?? r.CidrIp,
      from: r.FromPort,
      to: r.ToPort,
      protocol: r.IpProtocol,
    });
  }
  for (const [, p] of ofType("AWS::EC2::SecurityGroupEgress")) {
    if (JSON.stringify(p.GroupId) !== JSON.stringify(getAttGroupId(sgId))) continue;
    rules.push({
      source: p.DestinationSecurityGroupId ?? p.CidrIp,
      from: p.FromPort,
      to: p.ToPort,
      protocol: p.IpProtocol,
    });
  }
  return rules;
}

function container(template: Template = tpl): Json {
  const [, td] = only("AWS::ECS::TaskDefinition", template);
  const defs = td.ContainerDefinitions as Json[];
  expect(defs).toHaveLength(1);
  return defs[0] as Json;
}

function refOf(id: string) {
  return { Ref: id };
}

function idOf(type: string, pred: (p: Json) => boolean = () => true, template: Template = tpl): string {
  const hits = ofType(type, template).filter(([, p]) => pred(p));
  expect(hits).toHaveLength(1);
  return (hits[0] as [string, Json])[0];
}

// ---- the stack, requirement by requirement ----

describe("network", () => {
  test("a VPC over three AZs: three subnets per tier, each in a different zone", () => {
    const subnets = ofType("AWS::EC2::Subnet");
    expect(subnets).toHaveLength(9);
    const tiers = new Map<string, string[]>();
    for (const [, p] of subnets) {
      const tags = p.Tags as { Key: string; Value: string }[];
      const tier = tags.find((t) => t.Key === "aws-cdk:subnet-name")?.Value ?? "?";
      tiers.set(tier, [...(tiers.get(tier) ?? []), JSON.stringify(p.AvailabilityZone)]);
      expect(p.MapPublicIpOnLaunch).toBe(false);
    }
    expect([...tiers.keys()].sort()).toEqual(["app", "data", "public"]);
    for (const zones of tiers.values()) expect(new Set(zones).size).toBe(3);
    // Resolved by CloudFormation, never looked up at synthesis.
    expect(JSON.parse(tiers.get("app")?.[0] ?? "null")).toEqual({ "Fn::Select": [0, { "Fn::GetAZs": "" }] });
  });

  test("zone names from context are used as given", () => {
    const zones = ofType("AWS::EC2::Subnet", variant).map(([, p]) => p.AvailabilityZone);
    expect(new Set(zones)).toEqual(new Set(["eu-west-1a", "eu-west-1b", "eu-west-1c"]));
  });

  test("tasks get no public IP and run in the private (NAT egress) subnets", () => {
    const [, svc] = only("AWS::ECS::Service");
    const net = (svc.NetworkConfiguration as Json).AwsvpcConfiguration as Json;
    expect(net.AssignPublicIp).toBe("DISABLED");
    const appSubnets = ofType("AWS::EC2::Subnet")
      .filter(([, p]) => JSON.stringify(p.Tags).includes('"Value":"app"'))
      .map(([id]) => refOf(id));
    expect(net.Subnets).toEqual(appSubnets);
    // The app subnets route to a NAT gateway, never straight to the internet gateway.
    for (const [, route] of ofType("AWS::EC2::Route")) {
      if (route.GatewayId !== undefined) expect(JSON.stringify(route.RouteTableId)).toContain("public");
    }
  });

  test("ALB admits only the VPC link's security group, on the listener port", () => {
    const alb = sgByDescription("adsrv internal ALB");
    const link = sgByDescription("adsrv API Gateway VPC link");
    expect(ingressOf(alb)).toEqual([{ source: getAttGroupId(link), from: 80, to: 80, protocol: "tcp" }]);
    expect(ingressOf(link)).toEqual([]);
    expect(egressOf(link)).toEqual([{ source: getAttGroupId(alb), from: 80, to: 80, protocol: "tcp" }]);
  });

  test("tasks admit only the ALB, on the container port", () => {
    const alb = sgByDescription("adsrv internal ALB");
    const svc = sgByDescription("adsrv tasks");
    expect(ingressOf(svc)).toEqual([{ source: getAttGroupId(alb), from: 8080, to: 8080, protocol: "tcp" }]);
    expect(egressOf(alb)).toEqual([{ source: getAttGroupId(svc), from: 8080, to: 8080, protocol: "tcp" }]);
  });

  test("Redis admits only the service's security group, on 6379, and sends nothing", () => {
    const redis = sgByDescription("adsrv Redis");
    const svc = sgByDescription("adsrv tasks");
    expect(ingressOf(redis)).toEqual([{ source: getAttGroupId(svc), from: 6379, to: 6379, protocol: "tcp" }]);
    expect(egressOf(redis).every((r) => r.source === "255.255.255.255/32")).toBe(true);
    const [, rg] = only("AWS::ElastiCache::ReplicationGroup");
    expect(rg.SecurityGroupIds).toEqual([getAttGroupId(redis)]);
  });

  test("the load balancer is internal, in the private subnets, and drops invalid headers", () => {
    tpl.hasResourceProperties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
      Scheme: "internal",
      LoadBalancerAttributes: Match.arrayWith([
        { Key: "routing.http.drop_invalid_header_fields.enabled", Value: "true" },
      ]),
    });
    tpl.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", { Port: 80, Protocol: "HTTP" });
  });
});

describe("service", () => {
  test("the image comes from the ECR repository at the ImageTag parameter", () => {
    const image = JSON.stringify(container().Image);
    expect(image).toContain(`/${DEFAULT_SETTINGS.ecrRepository}:`);
    expect(image).toContain('{"Ref":"ImageTag"}');
    const param = (tpl.toJSON().Parameters as Json).ImageTag as Json;
    expect(param.Type).toBe("String");
    expect(param.Default).toBeUndefined(); // the first deploy must name a tag
    expect(new RegExp(String(param.AllowedPattern)).test("3f2c9e1")).toBe(true);
    expect(new RegExp(String(param.AllowedPattern)).test("bad tag")).toBe(false);
  });

  test("the registry stack keeps immutable, scanned images", () => {
    registry.hasResourceProperties("AWS::ECR::Repository", {
      RepositoryName: "adsrv",
      ImageTagMutability: "IMMUTABLE",
      ImageScanningConfiguration: { ScanOnPush: true },
    });
  });

  test("at least three tasks, spread and rebalanced across AZs, with circuit-breaker rollback", () => {
    const [, svc] = only("AWS::ECS::Service");
    expect(svc.DesiredCount).toBeGreaterThanOrEqual(3);
    expect(svc.LaunchType).toBe("FARGATE");
    expect(svc.AvailabilityZoneRebalancing).toBe("ENABLED");
    expect((svc.DeploymentConfiguration as Json).DeploymentCircuitBreaker).toEqual({
      Enable: true,
      Rollback: true,
    });
    expect((svc.DeploymentConfiguration as Json).MinimumHealthyPercent).toBe(100);
  });

  test("container health check on /healthz; ALB target health check on /readyz", () => {
    const hc = container().HealthCheck as Json;
    expect(hc.Command).toEqual(["CMD-SHELL", expect.stringContaining("http://127.0.0.1:8080/healthz")]);
    // The image (Dockerfile) ships curl for its own HEALTHCHECK; ECS runs the same probe.
    expect(readFileSync(join(ROOT, "Dockerfile"), "utf8")).toContain("curl");
    tpl.hasResourceProperties("AWS::ElasticLoadBalancingV2::TargetGroup", {
      HealthCheckPath: "/readyz",
      Matcher: { HttpCode: "200" },
      TargetType: "ip",
      Port: 8080,
    });
  });

  test("deregistration delay and stop timeout cover adsrv's drain (--shutdown-grace)", () => {
    const env = container().Environment as { Name: string; Value: unknown }[];
    const grace = Number(env.find((e) => e.Name === "ADSRV_SHUTDOWN_GRACE")?.Value);
    expect(grace).toBe(10); // issue 2's default
    const [, tg] = only("AWS::ElasticLoadBalancingV2::TargetGroup");
    const attrs = tg.TargetGroupAttributes as { Key: string; Value: string }[];
    const delay = Number(attrs.find((a) => a.Key === "deregistration_delay.timeout_seconds")?.Value);
    expect(delay).toBeGreaterThan(grace);
    expect(delay).toBeLessThanOrEqual(grace + 10);
    expect(container().StopTimeout).toBe(delay);
  });

  test("target-tracking autoscaling on CPU and on requests per target, bounds from context", () => {
    tpl.hasResourceProperties("AWS::ApplicationAutoScaling::ScalableTarget", {
      MinCapacity: 3,
      MaxCapacity: 12,
      ScalableDimension: "ecs:service:DesiredCount",
    });
    variant.hasResourceProperties("AWS::ApplicationAutoScaling::ScalableTarget", {
      MinCapacity: 4,
      MaxCapacity: 20,
    });
    const policies = ofType("AWS::ApplicationAutoScaling::ScalingPolicy").map(
      ([, p]) => p.TargetTrackingScalingPolicyConfiguration as Json,
    );
    const kinds = policies.map((c) => (c.PredefinedMetricSpecification as Json).PredefinedMetricType).sort();
    expect(kinds).toEqual(["ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"]);
    const cpu = policies.find((c) => JSON.stringify(c).includes("CPU"));
    expect(cpu?.TargetValue).toBe(settings.cpuTargetPercent);
    const req = policies.find((c) => JSON.stringify(c).includes("ALBRequestCount")) ?? {};
    expect(req.TargetValue).toBe(settings.requestsPerTargetPerMinute);
    expect((req.PredefinedMetricSpecification as Json).ResourceLabel).toBeDefined();
  });

  test("hardened container: all capabilities dropped, no privilege, non-blocking logs to the group", () => {
    const c = container();
    expect((c.LinuxParameters as Json).Capabilities).toEqual({ Drop: ["ALL"] });
    expect(c.Privileged).toBeUndefined();
    const log = c.LogConfiguration as { LogDriver: string; Options: Json };
    expect(log.LogDriver).toBe("awslogs");
    const group = (log.Options["awslogs-group"] as { Ref: string }).Ref;
    expect(res[group]?.Type).toBe("AWS::Logs::LogGroup");
  });
});

describe("configuration and secrets", () => {
  const SSM_ENV = ["ADSRV_CATALOG", "ADSRV_REFRESH", "ADSRV_FREQUENCY_CAP", "ADSRV_FREQUENCY_WINDOW"];

  test("SSM parameters for catalog URL, refresh and frequency-cap defaults are injected into the task", () => {
    const params = ofType("AWS::SSM::Parameter");
    const byName = new Map(params.map(([id, p]) => [p.Name, { id, value: p.Value }]));
    expect([...byName.keys()].sort()).toEqual(
      ["/Adsrv/catalog-url", "/Adsrv/frequency-cap", "/Adsrv/frequency-window", "/Adsrv/refresh"].sort(),
    );
    expect(byName.get("/Adsrv/refresh")?.value).toBe("30");
    expect(byName.get("/Adsrv/frequency-cap")?.value).toBe("0");
    expect(byName.get("/Adsrv/frequency-window")?.value).toBe("86400");
    const secrets = container().Secrets as { Name: string; ValueFrom: unknown }[];
    const wanted: Record<string, string> = {
      ADSRV_CATALOG: "/Adsrv/catalog-url",
      ADSRV_REFRESH: "/Adsrv/refresh",
      ADSRV_FREQUENCY_CAP: "/Adsrv/frequency-cap",
      ADSRV_FREQUENCY_WINDOW: "/Adsrv/frequency-window",
    };
    for (const name of SSM_ENV) {
      const entry = secrets.find((s) => s.Name === name);
      const param = byName.get(wanted[name]);
      expect(JSON.stringify(entry?.ValueFrom)).toContain(JSON.stringify(refOf(param?.id ?? "?")));
      expect(JSON.stringify(entry?.ValueFrom)).toContain(":parameter");
    }
  });

  test("ADSRV_REDIS comes from Secrets Manager: a rediss:// URL built from the token secret and the endpoint", () => {
    const secrets = container().Secrets as { Name: string; ValueFrom: unknown }[];
    const redis = secrets.find((s) => s.Name === "ADSRV_REDIS");
    const urlId = idOf("AWS::SecretsManager::Secret", (p) => String(p.Description).includes("ADSRV_REDIS"));
    const tokenId = idOf("AWS::SecretsManager::Secret", (p) =>
      String(p.Description).includes("ElastiCache AUTH token"),
    );
    const rgId = only("AWS::ElastiCache::ReplicationGroup")[0];
    expect(redis?.ValueFrom).toEqual(refOf(urlId));
    const url = JSON.stringify(res[urlId]?.Properties?.SecretString);
    expect(url).toContain('"rediss://:{{resolve:secretsmanager:"');
    expect(url).toContain(JSON.stringify(refOf(tokenId)));
    expect(url).toContain(`["${rgId}","PrimaryEndPoint.Address"]`);
    expect(res[tokenId]?.Properties?.GenerateSecretString).toMatchObject({
      GenerateStringKey: "token",
      PasswordLength: 64,
    });
  });

  test("no secret in plain environment values", () => {
    for (const template of [tpl, variant]) {
      const env = container(template).Environment as { Name: string; Value: unknown }[];
      for (const { Name, Value } of env) {
        expect(Name).not.toMatch(/REDIS|SECRET|PASSWORD|TOKEN|_KEY|API_KEYS/);
        expect(JSON.stringify(Value)).not.toMatch(/resolve:|rediss?:\/\//);
      }
      const names = (container(template).Secrets as { Name: string }[]).map((s) => s.Name);
      expect(names).toContain("ADSRV_REDIS");
    }
    const names = (container(variant).Secrets as { Name: string }[]).map((s) => s.Name);
    expect(names).toContain("ADSRV_IMPRESSION_KEY");
  });

  test("JWT settings for adsrv come from the user pool and its client", () => {
    const env = Object.fromEntries(
      (container().Environment as { Name: string; Value: unknown }[]).map((e) => [
        e.Name,
        JSON.stringify(e.Value),
      ]),
    );
    const poolId = only("AWS::Cognito::UserPool")[0];
    const clientId = only("AWS::Cognito::UserPoolClient")[0];
    expect(env.ADSRV_JWT_ISSUER).toContain("https://cognito-idp.eu-west-1.amazonaws.com/");
    expect(env.ADSRV_JWT_ISSUER).toContain(JSON.stringify(refOf(poolId)));
    expect(env.ADSRV_JWT_JWKS_URL).toContain("/.well-known/jwks.json");
    expect(env.ADSRV_JWT_AUDIENCE).toBe(JSON.stringify(refOf(clientId)));
    expect(env.ADSRV_LISTEN).toBe('"0.0.0.0:8080"');
  });
});

describe("state: Redis", () => {
  test("primary + replica, failover and Multi-AZ on, encrypted in transit and at rest, token from Secrets Manager", () => {
    const [, rg] = only("AWS::ElastiCache::ReplicationGroup");
    expect(rg).toMatchObject({
      Engine: "redis",
      NumCacheClusters: 2,
      AutomaticFailoverEnabled: true,
      MultiAZEnabled: true,
      TransitEncryptionEnabled: true,
      TransitEncryptionMode: "required",
      AtRestEncryptionEnabled: true,
    });
    const tokenId = idOf("AWS::SecretsManager::Secret", (p) =>
      String(p.Description).includes("ElastiCache AUTH token"),
    );
    expect(rg.AuthToken).toEqual({
      "Fn::Join": ["", ["{{resolve:secretsmanager:", refOf(tokenId), ":SecretString:token::}}"]],
    });
  });

  test("the replica sits in another AZ than the primary", () => {
    const [, rg] = only("AWS::ElastiCache::ReplicationGroup");
    expect(rg.PreferredCacheClusterAZs).toEqual([
      { "Fn::Select": [0, { "Fn::GetAZs": "" }] },
      { "Fn::Select": [1, { "Fn::GetAZs": "" }] },
    ]);
  });

  test("Multi-AZ and failover are one context switch; off, a single node", () => {
    variant.hasResourceProperties("AWS::ElastiCache::ReplicationGroup", {
      NumCacheClusters: 1,
      AutomaticFailoverEnabled: false,
      MultiAZEnabled: false,
    });
    const cpu = ofType("AWS::CloudWatch::Alarm", variant).find(([, a]) =>
      JSON.stringify(a).includes("EngineCPU"),
    );
    expect(JSON.stringify(cpu)).toContain('"adsrv-001"');
    expect(JSON.stringify(cpu)).not.toContain('"adsrv-002"');
  });

  test("Redis lives in the isolated subnets", () => {
    const [, group] = only("AWS::ElastiCache::SubnetGroup");
    const data = ofType("AWS::EC2::Subnet")
      .filter(([, p]) => JSON.stringify(p.Tags).includes('"Value":"data"'))
      .map(([id]) => refOf(id));
    expect(group.SubnetIds).toEqual(data);
  });
});

describe("identity", () => {
  test("user pool without self sign-up; app client allows ADMIN_USER_PASSWORD_AUTH and has no secret", () => {
    tpl.hasResourceProperties("AWS::Cognito::UserPool", {
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
    });
    const [, client] = only("AWS::Cognito::UserPoolClient");
    expect(client.ExplicitAuthFlows).toContain("ALLOW_ADMIN_USER_PASSWORD_AUTH");
    expect(client.GenerateSecret).toBe(false);
  });
});

describe("edge", () => {
  test("routes are exactly the ad routes, each behind the Cognito JWT authorizer", () => {
    const routes = ofType("AWS::ApiGatewayV2::Route");
    expect(routes.map(([, r]) => r.RouteKey).sort()).toEqual(AD_ROUTES.map((p) => `GET ${p}`).sort());
    const authId = only("AWS::ApiGatewayV2::Authorizer")[0];
    for (const [, r] of routes) {
      expect(r.AuthorizationType).toBe("JWT");
      expect(r.AuthorizerId).toEqual(refOf(authId));
    }
    const [, auth] = only("AWS::ApiGatewayV2::Authorizer");
    const poolId = only("AWS::Cognito::UserPool")[0];
    expect(auth.AuthorizerType).toBe("JWT");
    expect(auth.IdentitySource).toEqual(["$request.header.Authorization"]);
    const jwt = auth.JwtConfiguration as Json;
    expect(jwt.Audience).toEqual([refOf(only("AWS::Cognito::UserPoolClient")[0])]);
    expect(JSON.stringify(jwt.Issuer)).toContain(JSON.stringify(refOf(poolId)));
  });

  test("the impression route, when switched on, is added (its signed token is its credential)", () => {
    const routes = ofType("AWS::ApiGatewayV2::Route", variant);
    const keys = routes.map(([, r]) => r.RouteKey).sort();
    expect(keys).toEqual(["GET /ad_request", "GET /impression", "GET /vast"]);
    for (const [, r] of routes) {
      if (r.RouteKey !== "GET /impression") expect(r.AuthorizationType).toBe("JWT");
    }
  });

  test("the integration reaches the ALB listener through the VPC link", () => {
    const [, integ] = only("AWS::ApiGatewayV2::Integration");
    const linkId = only("AWS::ApiGatewayV2::VpcLink")[0];
    const listenerId = only("AWS::ElasticLoadBalancingV2::Listener")[0];
    expect(integ).toMatchObject({
      IntegrationType: "HTTP_PROXY",
      ConnectionType: "VPC_LINK",
      ConnectionId: refOf(linkId),
      IntegrationUri: refOf(listenerId),
    });
    const [, link] = only("AWS::ApiGatewayV2::VpcLink");
    expect(link.SecurityGroupIds).toEqual([getAttGroupId(sgByDescription("adsrv API Gateway VPC link"))]);
  });

  test("stage throttling and JSON access logs (no credentials logged)", () => {
    const [, stage] = only("AWS::ApiGatewayV2::Stage");
    expect(stage.StageName).toBe("$default");
    expect(stage.DefaultRouteSettings).toEqual({ ThrottlingRateLimit: 1000, ThrottlingBurstLimit: 2000 });
    const logs = stage.AccessLogSettings as Json;
    const format = JSON.parse(String(logs.Format)) as Json;
    expect(format.requestId).toBe("$context.requestId");
    expect(format.status).toBe("$context.status");
    expect(String(logs.Format)).not.toMatch(/authorization|querystring|header/i);
    const groupId = (logs.DestinationArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
    expect(res[groupId]?.Type).toBe("AWS::Logs::LogGroup");
  });

  test("custom domain is off by default", () => {
    for (const type of [
      "AWS::CertificateManager::Certificate",
      "AWS::ApiGatewayV2::DomainName",
      "AWS::ApiGatewayV2::ApiMapping",
      "AWS::Route53::RecordSet",
    ]) {
      tpl.resourceCountIs(type, 0);
    }
  });

  test("custom domain from context: DNS-validated certificate, TLS 1.2 domain, mapping, A and AAAA aliases", () => {
    variant.hasResourceProperties("AWS::CertificateManager::Certificate", {
      DomainName: "ads.example.com",
      ValidationMethod: "DNS",
      DomainValidationOptions: [{ DomainName: "ads.example.com", HostedZoneId: "Z0123456789ABCDEFGHIJ" }],
    });
    variant.hasResourceProperties("AWS::ApiGatewayV2::DomainName", {
      DomainName: "ads.example.com",
      DomainNameConfigurations: [Match.objectLike({ SecurityPolicy: "TLS_1_2", EndpointType: "REGIONAL" })],
    });
    variant.resourceCountIs("AWS::ApiGatewayV2::ApiMapping", 1);
    const records = ofType("AWS::Route53::RecordSet", variant);
    expect(records.map(([, r]) => r.Type).sort()).toEqual(["A", "AAAA"]);
    for (const [, r] of records) {
      expect(r.Name).toBe("ads.example.com.");
      expect(r.HostedZoneId).toBe("Z0123456789ABCDEFGHIJ");
      expect(r.AliasTarget).toBeDefined();
    }
  });
});

describe("observability", () => {
  test("every log group has the configured retention", () => {
    const groups = ofType("AWS::Logs::LogGroup");
    expect(groups.length).toBe(2);
    for (const [, g] of groups) expect(g.RetentionInDays).toBe(settings.logRetentionDays);
  });

  test("alarms on 5xx rate, p99 latency, unhealthy hosts, catalog age and Redis CPU and memory, all to SNS", () => {
    const alarms = ofType("AWS::CloudWatch::Alarm");
    const topicId = only("AWS::SNS::Topic")[0];
    const text = (a: Json) => JSON.stringify(a);
    const find = (pred: (a: Json) => boolean) => {
      const hits = alarms.filter(([, a]) => pred(a));
      expect(hits.length).toBeGreaterThanOrEqual(1);
      return (hits[0] as [string, Json])[1];
    };
    const alb5xx = find((a) => text(a).includes("HTTPCode_Target_5XX_Count"));
    expect(text(alb5xx)).toContain("HTTPCode_ELB_5XX_Count");
    expect(text(alb5xx)).toContain("RequestCount");
    expect(alb5xx.Threshold).toBe(settings.error5xxPercent);
    find((a) => text(a).includes('"5xx"') && text(a).includes("AWS/ApiGateway"));
    const p99 = find((a) => a.ExtendedStatistic === "p99");
    expect(p99.MetricName).toBe("TargetResponseTime");
    expect(p99.Threshold).toBe(settings.p99LatencyMs / 1000);
    expect(find((a) => a.MetricName === "UnHealthyHostCount").Threshold).toBe(1);
    const stale = find((a) => a.MetricName === "CatalogSyncFailures");
    expect(Number(stale.EvaluationPeriods) * Number(stale.Period)).toBeGreaterThanOrEqual(
      settings.catalogStaleMinutes * 60,
    );
    const cpu = find((a) => text(a).includes("EngineCPUUtilization"));
    expect(text(cpu)).toContain(`"${settings.redisId}-001"`);
    expect(text(cpu)).toContain(`"${settings.redisId}-002"`);
    find((a) => text(a).includes("DatabaseMemoryUsagePercentage"));
    for (const [, a] of alarms) {
      expect(a.AlarmActions).toEqual([refOf(topicId)]);
      expect(a.OKActions).toEqual([refOf(topicId)]);
    }
  });

  test("catalog metric filters match the log lines adsrv actually writes", () => {
    const source = readFileSync(join(ROOT, "src", "sync", "loop.ts"), "utf8");
    expect(source).toContain(JSON.stringify(SYNC_FAILED_MSG));
    expect(source).toContain(JSON.stringify(SYNC_LOADED_MSG));
    const patterns = ofType("AWS::Logs::MetricFilter").map(([, f]) => String(f.FilterPattern));
    expect(patterns).toContain(`{ $.msg = "${SYNC_FAILED_MSG}" }`);
    expect(patterns).toContain(`{ $.msg = "${SYNC_LOADED_MSG}" }`);
  });
});

describe("least privilege", () => {
  test("no IAM statement grants a wildcard action; no *FullAccess managed policy", () => {
    for (const template of [tpl, variant, registry]) {
      for (const s of statements(template)) {
        for (const action of [s.Action ?? []].flat()) expect(String(action)).not.toContain("*");
        expect(s.NotAction).toBeUndefined();
      }
      for (const [, role] of ofType("AWS::IAM::Role", template)) {
        expect(JSON.stringify(role.ManagedPolicyArns ?? [])).not.toMatch(
          /FullAccess|AdministratorAccess|PowerUser/,
        );
      }
    }
  });

  test("only ecr:GetAuthorizationToken (which has no resource form) is granted on Resource *", () => {
    for (const s of statements(tpl)) {
      if (JSON.stringify(s.Resource) === '"*"') expect(s.Action).toBe("ecr:GetAuthorizationToken");
    }
  });

  test("the task role carries no permissions; the execution role reads only our secret, parameters, repo and logs", () => {
    const [, td] = only("AWS::ECS::TaskDefinition");
    const taskRole = (td.TaskRoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
    const execRole = (td.ExecutionRoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
    const attached = (role: string) =>
      ofType("AWS::IAM::Policy").filter(([, p]) =>
        JSON.stringify(p.Roles).includes(JSON.stringify(refOf(role))),
      );
    expect(attached(taskRole)).toEqual([]);
    expect(res[taskRole]?.Properties?.Policies).toBeUndefined();
    const exec = attached(execRole).flatMap(
      ([, p]) => (p.PolicyDocument as { Statement: Statement[] }).Statement,
    );
    const actions = exec.flatMap((s) => [s.Action ?? []].flat()).map(String);
    expect(new Set(actions.map((a) => a.split(":")[0]))).toEqual(
      new Set(["ecr", "logs", "secretsmanager", "ssm"]),
    );
    const secretStatement = exec.find((s) => JSON.stringify(s.Action).includes("secretsmanager"));
    const urlId = idOf("AWS::SecretsManager::Secret", (p) => String(p.Description).includes("ADSRV_REDIS"));
    expect(secretStatement?.Resource).toEqual(refOf(urlId));
  });
});

interface Statement {
  readonly Action?: unknown;
  readonly NotAction?: unknown;
  readonly Resource?: unknown;
  readonly Effect?: string;
}

function statements(template: Template): Statement[] {
  const out: Statement[] = [];
  for (const [, p] of ofType("AWS::IAM::Policy", template))
    out.push(...(p.PolicyDocument as { Statement: Statement[] }).Statement);
  for (const [, r] of ofType("AWS::IAM::Role", template)) {
    for (const pol of (r.Policies as { PolicyDocument: { Statement: Statement[] } }[] | undefined) ?? []) {
      out.push(...pol.PolicyDocument.Statement);
    }
  }
  return out;
}

// ---- a small cdk-nag of our own: generic rules over every resource of every template ----

/** Returns "LogicalId: rule" findings; an empty list passes. */
function nag(template: Template): string[] {
  const findings: string[] = [];
  const all = template.toJSON().Resources as Record<string, Resource>;
  const flag = (id: string, rule: string) => findings.push(`${id}: ${rule}`);
  for (const [id, r] of Object.entries(all)) {
    const p = r.Properties ?? {};
    const text = JSON.stringify(p);
    switch (r.Type) {
      case "AWS::EC2::SecurityGroup":
        for (const rule of (p.SecurityGroupIngress as Json[] | undefined) ?? []) {
          if (rule.CidrIp === "0.0.0.0/0" || rule.CidrIpv6 === "::/0")
            flag(id, "ingress open to the internet");
        }
        break;
      case "AWS::EC2::SecurityGroupIngress":
        if (p.CidrIp !== undefined || p.CidrIpv6 !== undefined)
          flag(id, "ingress by CIDR instead of security group");
        break;
      case "AWS::EC2::Subnet":
        if (p.MapPublicIpOnLaunch === true) flag(id, "subnet maps public IPs");
        break;
      case "AWS::ElasticLoadBalancingV2::LoadBalancer":
        if (p.Scheme !== "internal") flag(id, "load balancer is internet-facing");
        break;
      case "AWS::ECS::Service":
        if (JSON.stringify(p.NetworkConfiguration).includes('"ENABLED"')) flag(id, "tasks get public IPs");
        if (!text.includes('"Rollback":true')) flag(id, "no deployment circuit breaker rollback");
        if (p.EnableExecuteCommand === true) flag(id, "ECS Exec enabled");
        break;
      case "AWS::ECS::TaskDefinition":
        for (const c of (p.ContainerDefinitions as Json[] | undefined) ?? []) {
          if (c.Privileged === true) flag(id, "privileged container");
          if (!JSON.stringify(c.LinuxParameters ?? {}).includes('"Drop":["ALL"]'))
            flag(id, "capabilities kept");
          if (c.HealthCheck === undefined) flag(id, "container without health check");
          if (c.LogConfiguration === undefined) flag(id, "container without logs");
          for (const e of (c.Environment as { Name: string; Value: unknown }[] | undefined) ?? []) {
            if (/SECRET|PASSWORD|TOKEN|_KEY$|REDIS/.test(e.Name))
              flag(id, `secret-like env ${e.Name} in plain text`);
          }
        }
        break;
      case "AWS::ElastiCache::ReplicationGroup":
        if (p.TransitEncryptionEnabled !== true) flag(id, "Redis without TLS");
        if (p.AtRestEncryptionEnabled !== true) flag(id, "Redis without encryption at rest");
        if (!JSON.stringify(p.AuthToken ?? "").includes("{{resolve:secretsmanager:"))
          flag(id, "Redis token not from Secrets Manager");
        break;
      case "AWS::SecretsManager::Secret":
        if (
          p.SecretString !== undefined &&
          !JSON.stringify(p.SecretString).includes("{{resolve:secretsmanager:")
        ) {
          flag(id, "secret value written into the template");
        }
        break;
      case "AWS::Logs::LogGroup":
        if (p.RetentionInDays === undefined) flag(id, "log group kept forever");
        break;
      case "AWS::CloudWatch::Alarm":
        if (!Array.isArray(p.AlarmActions) || p.AlarmActions.length === 0) flag(id, "alarm notifies nobody");
        break;
      case "AWS::SNS::Topic":
        if (
          !Object.values(all).some(
            (o) =>
              o.Type === "AWS::SNS::TopicPolicy" &&
              JSON.stringify(o.Properties).includes("aws:SecureTransport"),
          )
        ) {
          flag(id, "topic accepts plain HTTP");
        }
        break;
      case "AWS::Cognito::UserPool":
        if (!text.includes('"AllowAdminCreateUserOnly":true')) flag(id, "self sign-up enabled");
        break;
      case "AWS::Cognito::UserPoolClient":
        if (text.includes("ALLOW_USER_PASSWORD_AUTH")) flag(id, "client-side plain password flow");
        break;
      case "AWS::ApiGatewayV2::Route":
        if (p.AuthorizationType !== "JWT" && p.RouteKey !== "GET /impression")
          flag(id, "route without authorizer");
        break;
      case "AWS::ApiGatewayV2::Stage":
        if (p.AccessLogSettings === undefined) flag(id, "stage without access logs");
        if ((p.DefaultRouteSettings as Json | undefined)?.ThrottlingRateLimit === undefined)
          flag(id, "stage without throttling");
        break;
      case "AWS::ApiGatewayV2::DomainName":
        if (!text.includes('"TLS_1_2"')) flag(id, "domain allows TLS below 1.2");
        break;
      case "AWS::ECR::Repository":
        if (p.ImageTagMutability !== "IMMUTABLE") flag(id, "mutable image tags");
        break;
      case "AWS::S3::Bucket":
        flag(id, "unexpected bucket (none is part of the design)");
        break;
      case "AWS::IAM::Policy":
      case "AWS::IAM::Role":
        if (/"Action":"\*"|"Action":\["\*"|:\*"/.test(text)) flag(id, "wildcard action");
        if (/FullAccess|AdministratorAccess/.test(text)) flag(id, "broad managed policy");
        break;
    }
  }
  return findings;
}

describe("nag", () => {
  test("no findings in the default, variant and registry templates", () => {
    expect(nag(tpl)).toEqual([]);
    expect(nag(variant)).toEqual([]);
    expect(nag(registry)).toEqual([]);
  });

  test("the rules do fire (a rule that never fires checks nothing)", () => {
    const bad = Template.fromJSON({
      Resources: {
        Open: {
          Type: "AWS::EC2::SecurityGroup",
          Properties: { SecurityGroupIngress: [{ CidrIp: "0.0.0.0/0" }] },
        },
        Forever: { Type: "AWS::Logs::LogGroup", Properties: {} },
        Plain: { Type: "AWS::SecretsManager::Secret", Properties: { SecretString: "hunter2" } },
        Star: {
          Type: "AWS::IAM::Policy",
          Properties: { PolicyDocument: { Statement: [{ Action: "s3:*" }] } },
        },
        Route: { Type: "AWS::ApiGatewayV2::Route", Properties: { RouteKey: "GET /ad_request" } },
      },
    });
    expect(nag(bad).map((f) => f.split(":")[0])).toEqual(["Open", "Forever", "Plain", "Star", "Route"]);
  });
});

describe("settings", () => {
  const ctx = (values: Record<string, unknown>) => ({ tryGetContext: (k: string) => values[k] });

  test("defaults are the documented minimum footprint", () => {
    const s = readSettings(ctx({}));
    expect(s).toEqual(DEFAULT_SETTINGS);
    expect(s.minTasks).toBe(3);
    expect(s.customDomain).toBeNull();
    expect(s.multiAz).toBe(true);
  });

  test("cdk.json runs bin/app.ts with the project's Bun, and its defaults agree with settings.ts", () => {
    const cdk = JSON.parse(readFileSync(join(AWS_DIR, "cdk.json"), "utf8")) as { app: string; context: Json };
    expect(cdk.app).toBe("../../node_modules/.bin/bun bin/app.ts");
    const defaults = DEFAULT_SETTINGS as unknown as Json;
    for (const [key, value] of Object.entries(cdk.context)) {
      if (!key.startsWith("@aws-cdk")) expect([key, value]).toEqual([key, defaults[key]]);
    }
  });

  test("-c values arrive as strings and are parsed", () => {
    const s = readSettings(ctx({ minTasks: "5", maxTasks: "9", multiAz: "false", cpuTargetPercent: "55.5" }));
    expect([s.minTasks, s.maxTasks, s.multiAz, s.cpuTargetPercent]).toEqual([5, 9, false, 55.5]);
  });

  test.each([
    [{ minTasks: 2 }, /minTasks/],
    [{ minTasks: 6, maxTasks: 5 }, /maxTasks/],
    [{ multiAz: "yes" }, /multiAz/],
    [{ logRetentionDays: 31 }, /logRetentionDays/],
    [{ cpu: 256, memoryMiB: 4096 }, /task size/],
    [{ domainName: "ads.example.com" }, /custom domain/],
    [{ domainName: "ads.other.org", hostedZoneId: "Z1", hostedZoneName: "example.com" }, /not inside/],
    [{ availabilityZones: "eu-west-1a,eu-west-1b" }, /three/],
    [{ account: "12" }, /account/],
    [{ imageTag: "no spaces" }, /imageTag/],
    [{ redisId: "Bad_Id" }, /redisId/],
    [{ catalogUrl: "ftp://x" }, /catalogUrl/],
  ])("rejects %p", (values, message) => {
    expect(() => readSettings(ctx(values))).toThrow(message);
  });
});

// ---- drift, synthesis as a process, types ----

/** Asset hashes change with every aws-cdk-lib release; everything else is ours to review. */
function normalized(template: Template): unknown {
  return JSON.parse(
    JSON.stringify(template.toJSON()).replace(/[0-9a-f]{64}(\.zip|\.json)?/g, "<asset-hash>$1"),
  );
}

test("snapshot: the synthesized templates match the reviewed ones (update with `bun test --update-snapshots`)", () => {
  expect(normalized(tpl)).toMatchSnapshot("Adsrv");
  expect(normalized(registry)).toMatchSnapshot("AdsrvRegistry");
});

test(
  "`bun deploy/aws/bin/app.ts` synthesizes both stacks with no network and no AWS credentials",
  async () => {
    const { code, stderr } = await run([BUN, join(AWS_DIR, "bin", "app.ts")], {
      ...offlineEnv(),
      CDK_OUTDIR: join(tmp, "out"),
    });
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    const out = join(tmp, "out");
    const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as { artifacts: Json };
    expect(Object.keys(manifest.artifacts)).toEqual(expect.arrayContaining(["Adsrv", "AdsrvRegistry"]));
    const written = JSON.parse(readFileSync(join(out, "Adsrv.template.json"), "utf8"));
    expect(normalized(Template.fromJSON(written))).toEqual(normalized(tpl));
    // aws-cdk-lib's own template rules (validateAgainstDefaultRules) found nothing.
    const report = JSON.parse(readFileSync(join(out, "validation-report.json"), "utf8")) as {
      pluginReports: { conclusion: string; violations: unknown[] }[];
    };
    for (const r of report.pluginReports)
      expect({ conclusion: r.conclusion, violations: r.violations }).toEqual({
        conclusion: "success",
        violations: [],
      });
  },
  SLOW,
);

test(
  "tsc type-checks deploy/aws and this test (strict, exactOptionalPropertyTypes)",
  async () => {
    const tsc = join(ROOT, "node_modules", ".bin", "tsc");
    const { code, stdout, stderr } = await run(
      [tsc, "--noEmit", "-p", join(AWS_DIR, "tsconfig.json")],
      process.env,
    );
    expect({ code, output: (stdout + stderr).trim() }).toEqual({ code: 0, output: "" });
  },
  SLOW,
);

/**
 * The adsrv service: configuration parameters, the Fargate task and service, the internal ALB in
 * front of it, and target-tracking autoscaling.
 *
 * Drain, end to end (adsrv's side is issue 2's SIGTERM handling, `--shutdown-grace`, default 10 s):
 * 1. ECS deregisters a task it stops; the ALB stops sending it new requests and lets open ones
 *    finish for the deregistration delay (grace + 5 s);
 * 2. ECS then sends SIGTERM: adsrv turns `/readyz` to 503, drains within the grace and exits 0;
 * 3. ECS sends SIGKILL only after the container's stop timeout (also grace + 5 s), which the
 *    drain never reaches.
 * @module
 */
import {
  CfnParameter,
  Duration,
  aws_ec2 as ec2,
  aws_ecr as ecr,
  aws_ecs as ecs,
  aws_elasticloadbalancingv2 as elbv2,
  aws_logs as logs,
  Size,
  aws_secretsmanager as sm,
  aws_ssm as ssm,
} from "aws-cdk-lib";
import { Construct } from "constructs";
import type { Identity } from "./identity.ts";
import { ALB_LISTENER_PORT, type Network } from "./network.ts";
import { drainSeconds, IMAGE_TAG_PATTERN, type Settings } from "./settings.ts";
import type { RedisState } from "./state.ts";

export const CONTAINER_NAME = "adsrv";
export const HEALTHZ_PATH = "/healthz";
export const READYZ_PATH = "/readyz";

/** The container health check: the same probe as the Dockerfile's HEALTHCHECK (ECS ignores that one). */
export function healthCheckCommand(settings: Settings): string[] {
  const url = `http://127.0.0.1:${settings.containerPort}${HEALTHZ_PATH}`;
  return ["CMD-SHELL", `curl -fsS --max-time 3 ${url} >/dev/null || exit 1`];
}

export class AdsrvService extends Construct {
  readonly imageTag: CfnParameter;
  readonly logGroup: logs.LogGroup;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly service: ecs.FargateService;
  readonly alb: elbv2.ApplicationLoadBalancer;
  readonly listener: elbv2.ApplicationListener;
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  readonly parameters: {
    readonly catalogUrl: ssm.StringParameter;
    readonly refresh: ssm.StringParameter;
    readonly cap: ssm.StringParameter;
    readonly window: ssm.StringParameter;
  };
  readonly impressionKey: sm.ISecret | null;

  constructor(
    scope: Construct,
    id: string,
    settings: Settings,
    deps: { network: Network; redis: RedisState; identity: Identity },
  ) {
    super(scope, id);
    const { network, redis, identity } = deps;
    const vpc = network.vpc;

    // Image: the repository comes from the registry stack; the tag is a deploy-time parameter.
    this.imageTag = new CfnParameter(scope, "ImageTag", {
      type: "String",
      description: "Tag of the adsrv image in the ECR repository (e.g. the git commit)",
      allowedPattern: IMAGE_TAG_PATTERN,
      ...(settings.imageTag === null ? {} : { default: settings.imageTag }),
    });
    const repository = ecr.Repository.fromRepositoryName(this, "Repository", settings.ecrRepository);

    // Configuration in Parameter Store: operators change it there, tasks pick it up on restart.
    const prefix = `/${settings.stackName}`;
    const param = (id: string, name: string, value: string, description: string) =>
      new ssm.StringParameter(this, id, {
        parameterName: `${prefix}/${name}`,
        stringValue: value,
        description,
        tier: ssm.ParameterTier.STANDARD,
      });
    const catalogUrl = param(
      "CatalogUrl",
      "catalog-url",
      settings.catalogUrl,
      "ADSRV_CATALOG: campaign service URL",
    );
    const refresh = param("Refresh", "refresh", String(settings.refreshSeconds), "ADSRV_REFRESH: seconds");
    const cap = param(
      "FrequencyCap",
      "frequency-cap",
      String(settings.frequencyCap),
      "ADSRV_FREQUENCY_CAP (0 = none)",
    );
    const window = param(
      "FrequencyWindow",
      "frequency-window",
      String(settings.frequencyWindowSeconds),
      "ADSRV_FREQUENCY_WINDOW: seconds",
    );
    this.parameters = Object.freeze({ catalogUrl, refresh, cap, window });
    this.impressionKey = settings.impressionRoute
      ? (new sm.Secret(this, "ImpressionKey", {
          description: "adsrv impression token HMAC key",
          generateSecretString: { excludePunctuation: true, passwordLength: 64 },
        }) as sm.ISecret)
      : null;

    this.logGroup = new logs.LogGroup(this, "Logs", {
      retention: settings.logRetentionDays as logs.RetentionDays,
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, "Task", {
      cpu: settings.cpu,
      memoryLimitMiB: settings.memoryMiB,
      runtimePlatform: {
        cpuArchitecture:
          settings.cpuArchitecture === "ARM64" ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    const linux = new ecs.LinuxParameters(this, "Linux", { initProcessEnabled: true });
    linux.dropCapabilities(ecs.Capability.ALL);

    const secrets: Record<string, ecs.Secret> = {
      ADSRV_REDIS: ecs.Secret.fromSecretsManager(redis.url),
      ADSRV_CATALOG: ecs.Secret.fromSsmParameter(catalogUrl),
      ADSRV_REFRESH: ecs.Secret.fromSsmParameter(refresh),
      ADSRV_FREQUENCY_CAP: ecs.Secret.fromSsmParameter(cap),
      ADSRV_FREQUENCY_WINDOW: ecs.Secret.fromSsmParameter(window),
    };
    // The env name follows issue 7's impression tokens ("HMAC, key from configuration").
    if (this.impressionKey !== null)
      secrets.ADSRV_IMPRESSION_KEY = ecs.Secret.fromSecretsManager(this.impressionKey);

    this.taskDefinition.addContainer(CONTAINER_NAME, {
      image: ecs.ContainerImage.fromEcrRepository(repository, this.imageTag.valueAsString),
      essential: true,
      portMappings: [{ containerPort: settings.containerPort, protocol: ecs.Protocol.TCP, name: "http" }],
      // Only values that are not secrets: addresses, public identifiers and timings.
      environment: {
        ADSRV_LISTEN: `0.0.0.0:${settings.containerPort}`,
        ADSRV_JWT_ISSUER: identity.issuer,
        ADSRV_JWT_JWKS_URL: identity.jwksUrl,
        ADSRV_JWT_AUDIENCE: identity.client.userPoolClientId,
        ADSRV_SHUTDOWN_GRACE: String(settings.shutdownGraceSeconds),
        ADSRV_LOG_FORMAT: "json",
        ADSRV_LOG_LEVEL: "info",
        // Above the ALB's 60 s idle timeout, so the ALB never reuses a connection adsrv closed.
        ADSRV_IDLE_TIMEOUT: "75",
        // Rate limits per client address: believe X-Forwarded-For only from inside the VPC (the ALB).
        ADSRV_TRUSTED_PROXY: vpc.vpcCidrBlock,
      },
      secrets,
      logging: ecs.LogDrivers.awsLogs({
        logGroup: this.logGroup,
        streamPrefix: "adsrv",
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
      healthCheck: {
        command: healthCheckCommand(settings),
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(20),
      },
      // The root filesystem stays writable: the image runs as uid 10001 and keeps its last good
      // catalog in ADSRV_STATE_DIR (/var/lib/adsrv), and Fargate bind mounts are root-owned, so a
      // read-only root would turn every save into an error. No capabilities, no privilege.
      readonlyRootFilesystem: false,
      linuxParameters: linux,
      stopTimeout: Duration.seconds(drainSeconds(settings)),
    });

    // Widened to the interface: see Network.vpc.
    const cluster = new ecs.Cluster(this, "Cluster", { vpc }) as ecs.ICluster;
    this.service = new ecs.FargateService(this, "Service", {
      cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: settings.minTasks,
      assignPublicIp: false,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [network.serviceSg],
      circuitBreaker: { enable: true, rollback: true },
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      healthCheckGracePeriod: Duration.seconds(30),
      availabilityZoneRebalancing: ecs.AvailabilityZoneRebalancing.ENABLED,
      enableExecuteCommand: false,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    this.alb = new elbv2.ApplicationLoadBalancer(this, "Alb", {
      vpc,
      internetFacing: false,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroup: network.albSg,
      dropInvalidHeaderFields: true,
      idleTimeout: Duration.seconds(60),
    });
    this.listener = this.alb.addListener("Http", {
      port: ALB_LISTENER_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      open: false,
    });
    this.targetGroup = this.listener.addTargets("Adsrv", {
      port: settings.containerPort,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [
        this.service.loadBalancerTarget({
          containerName: CONTAINER_NAME,
          containerPort: settings.containerPort,
        }),
      ],
      deregistrationDelay: Duration.seconds(drainSeconds(settings)),
      loadBalancingAlgorithmType: elbv2.TargetGroupLoadBalancingAlgorithmType.LEAST_OUTSTANDING_REQUESTS,
      healthCheck: {
        path: READYZ_PATH,
        healthyHttpCodes: "200",
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
    });

    const scaling = this.service.autoScaleTaskCount({
      minCapacity: settings.minTasks,
      maxCapacity: settings.maxTasks,
    });
    scaling.scaleOnCpuUtilization("Cpu", {
      targetUtilizationPercent: settings.cpuTargetPercent,
      scaleInCooldown: Duration.seconds(300),
      scaleOutCooldown: Duration.seconds(60),
    });
    scaling.scaleOnRequestCount("Requests", {
      requestsPerTarget: settings.requestsPerTargetPerMinute,
      targetGroup: this.targetGroup,
      scaleInCooldown: Duration.seconds(300),
      scaleOutCooldown: Duration.seconds(60),
    });
  }
}

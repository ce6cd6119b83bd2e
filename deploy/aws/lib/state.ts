/**
 * Shared state: an ElastiCache Redis replication group (primary + one replica in another AZ with
 * automatic failover and Multi-AZ; one node when the `multiAz` switch is off), encrypted in
 * transit and at rest, protected by an AUTH token generated in Secrets Manager.
 *
 * adsrv takes one setting, `ADSRV_REDIS` (a URL), and the URL must carry the token. So a second
 * secret holds `rediss://:TOKEN@HOST:PORT`, assembled by CloudFormation from a dynamic reference
 * to the token secret and the replication group's endpoint: the template only ever contains
 * `{{resolve:secretsmanager:…}}`, never the token, and the task receives the URL through ECS
 * `secrets` (fetched by the execution role at start), never as a plain environment value.
 * @module
 */
import {
  aws_elasticache as elasticache,
  Fn,
  RemovalPolicy,
  SecretValue,
  Stack,
  aws_secretsmanager as sm,
} from "aws-cdk-lib";
import { Construct } from "constructs";
import type { Network } from "./network.ts";
import { REDIS_PORT } from "./network.ts";
import type { Settings } from "./settings.ts";

export class RedisState extends Construct {
  readonly replicationGroup: elasticache.CfnReplicationGroup;
  /** `{"token": "…"}`: the AUTH token (64 alphanumerics). */
  readonly authToken: sm.ISecret;
  /** The whole `rediss://` URL handed to adsrv as ADSRV_REDIS. */
  readonly url: sm.ISecret;
  /** Member cluster ids (`<group>-001`, `<group>-002`), for per-node CloudWatch metrics. */
  readonly memberIds: readonly string[];

  constructor(scope: Construct, id: string, settings: Settings, network: Network) {
    super(scope, id);
    const authToken = new sm.Secret(this, "AuthToken", {
      description: "adsrv ElastiCache AUTH token",
      generateSecretString: {
        secretStringTemplate: JSON.stringify({}),
        generateStringKey: "token",
        // ElastiCache tokens: 16–128 printable characters without @ " / ; alphanumerics are safe in a URL too.
        excludePunctuation: true,
        passwordLength: 64,
      },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Widened to the interface: see Network.vpc.
    this.authToken = authToken as sm.ISecret;

    const subnets = new elasticache.CfnSubnetGroup(this, "Subnets", {
      description: "adsrv Redis (isolated subnets, three AZs)",
      subnetIds: network.vpc.isolatedSubnets.map((s) => s.subnetId),
    });

    // Multi-AZ on: primary + replica in two zones with automatic failover. Off: one node. (A replica
    // without failover is refused by CloudFormation's rules for Redis, cfn-lint E3026, and would
    // serve nothing: adsrv reads and writes the primary.)
    const nodes = settings.multiAz ? 2 : 1;
    this.replicationGroup = new elasticache.CfnReplicationGroup(this, "Redis", {
      replicationGroupId: settings.redisId,
      replicationGroupDescription: "adsrv shared catalog, player history and counters",
      engine: "redis",
      engineVersion: settings.redisEngineVersion,
      cacheNodeType: settings.redisNodeType,
      port: REDIS_PORT,
      numCacheClusters: nodes,
      automaticFailoverEnabled: settings.multiAz,
      multiAzEnabled: settings.multiAz,
      preferredCacheClusterAZs: Stack.of(this).availabilityZones.slice(0, nodes),
      cacheSubnetGroupName: subnets.ref,
      securityGroupIds: [network.redisSg.securityGroupId],
      transitEncryptionEnabled: true,
      transitEncryptionMode: "required",
      atRestEncryptionEnabled: true,
      authToken: this.authToken.secretValueFromJson("token").unsafeUnwrap(),
      snapshotRetentionLimit: 1,
      autoMinorVersionUpgrade: true,
    });
    this.memberIds = Array.from({ length: nodes }, (_, i) => `${settings.redisId}-00${i + 1}`);

    const url = new sm.Secret(this, "Url", {
      description: "adsrv ADSRV_REDIS: rediss:// URL with the AUTH token",
      secretStringValue: SecretValue.unsafePlainText(
        Fn.join("", [
          "rediss://:",
          this.authToken.secretValueFromJson("token").unsafeUnwrap(),
          "@",
          this.replicationGroup.attrPrimaryEndPointAddress,
          ":",
          this.replicationGroup.attrPrimaryEndPointPort,
        ]),
      ),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.url = url as sm.ISecret;
  }
}

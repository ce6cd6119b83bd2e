/**
 * The adsrv reference deployment (issue 8): network, Redis, Cognito, configuration, the Fargate
 * service behind an internal ALB, the HTTP API edge and the alarms, in one stack.
 * @module
 */
import { CfnOutput, Fn, Stack, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";
import { Edge } from "./edge.ts";
import { Identity } from "./identity.ts";
import { Network } from "./network.ts";
import { Observability } from "./observability.ts";
import { AdsrvService } from "./service.ts";
import type { Settings } from "./settings.ts";
import { RedisState } from "./state.ts";

export interface AdsrvStackProps extends StackProps {
  readonly settings: Settings;
}

export class AdsrvStack extends Stack {
  readonly settings: Settings;
  readonly network: Network;
  readonly redis: RedisState;
  readonly identity: Identity;
  readonly service: AdsrvService;
  readonly edge: Edge;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: AdsrvStackProps) {
    super(scope, id, props);
    const settings = props.settings;
    this.settings = settings;
    this.network = new Network(this, "Network", settings);
    this.redis = new RedisState(this, "State", settings, this.network);
    this.identity = new Identity(this, "Identity");
    this.service = new AdsrvService(this, "Adsrv", settings, {
      network: this.network,
      redis: this.redis,
      identity: this.identity,
    });
    this.edge = new Edge(this, "Edge", settings, {
      network: this.network,
      service: this.service,
      identity: this.identity,
    });
    this.observability = new Observability(this, "Observability", settings, {
      service: this.service,
      redis: this.redis,
      edge: this.edge,
    });

    new CfnOutput(this, "ApiUrl", { value: this.edge.url, description: "Base URL for game clients" });
    new CfnOutput(this, "UserPoolId", { value: this.identity.userPool.userPoolId });
    new CfnOutput(this, "UserPoolClientId", { value: this.identity.client.userPoolClientId });
    new CfnOutput(this, "JwtIssuer", { value: this.identity.issuer });
    new CfnOutput(this, "AlarmTopicArn", { value: this.observability.topic.topicArn });
    new CfnOutput(this, "LogGroupName", { value: this.service.logGroup.logGroupName });
  }

  /**
   * Three zones, never looked up at synthesis (no credentials needed): the names from the settings,
   * else the region's first three resolved by CloudFormation (`Fn::Select` over `Fn::GetAZs`).
   */
  override get availabilityZones(): string[] {
    const names = this.settings.availabilityZones;
    return names === null ? [0, 1, 2].map((i) => Fn.select(i, Fn.getAzs())) : [...names];
  }
}

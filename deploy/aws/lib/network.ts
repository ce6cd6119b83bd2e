/**
 * Network: a VPC over exactly three Availability Zones and the four security groups whose rules
 * form the only allowed paths: VPC link → ALB → tasks → Redis.
 *
 * Subnets: `public` holds only the NAT gateways (nothing else gets a public address), `app`
 * (private, egress through NAT) holds the ALB, the VPC link's interfaces and the tasks, which
 * fetch the catalog, the JWKS and their image through it; `data` (isolated, no route out) holds
 * Redis.
 * @module
 */
import { aws_ec2 as ec2, Stack, Validations } from "aws-cdk-lib";
import { Construct } from "constructs";
import type { Settings } from "./settings.ts";

export const REDIS_PORT = 6379;
/** The ALB listener the VPC link reaches (plain HTTP inside the VPC; TLS ends at API Gateway). */
export const ALB_LISTENER_PORT = 80;

export class Network extends Construct {
  /**
   * Typed as the interface: aws-cdk-lib's classes declare optional members as `T | undefined`,
   * which `exactOptionalPropertyTypes` refuses where an interface is expected, so each construct
   * is widened to its interface once, where it is created.
   */
  readonly vpc: ec2.IVpc;
  /** On the API Gateway VPC link's interfaces. */
  readonly vpcLinkSg: ec2.SecurityGroup;
  readonly albSg: ec2.SecurityGroup;
  readonly serviceSg: ec2.SecurityGroup;
  readonly redisSg: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, settings: Settings) {
    super(scope, id);
    const vpc = new ec2.Vpc(this, "Vpc", {
      ipAddresses: ec2.IpAddresses.cidr("10.40.0.0/16"),
      availabilityZones: Stack.of(scope).availabilityZones,
      natGateways: settings.natGateways,
      restrictDefaultSecurityGroup: true,
      subnetConfiguration: [
        { name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
        { name: "app", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        { name: "data", subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
    });
    this.vpc = vpc as ec2.IVpc;
    if (settings.availabilityZones !== null) {
      Validations.of(vpc).acknowledge({
        id: "CloudFormation-Validate::W3010",
        reason: "zone names pinned on purpose with the availabilityZones context value",
      });
    }

    // No group may send anywhere by default except the tasks (catalog, JWKS, ECR, logs, Redis).
    this.vpcLinkSg = new ec2.SecurityGroup(this, "VpcLinkSg", {
      vpc: this.vpc,
      description: "adsrv API Gateway VPC link",
      allowAllOutbound: false,
    });
    this.albSg = new ec2.SecurityGroup(this, "AlbSg", {
      vpc: this.vpc,
      description: "adsrv internal ALB: from the VPC link only",
      allowAllOutbound: false,
    });
    this.serviceSg = new ec2.SecurityGroup(this, "ServiceSg", {
      vpc: this.vpc,
      description: "adsrv tasks: from the ALB only",
      allowAllOutbound: true,
    });
    this.redisSg = new ec2.SecurityGroup(this, "RedisSg", {
      vpc: this.vpc,
      description: "adsrv Redis: from the tasks only",
      allowAllOutbound: false,
    });

    // Ingress to the ALB from the VPC link (and the link's matching egress).
    this.albSg.connections.allowFrom(this.vpcLinkSg, ec2.Port.tcp(ALB_LISTENER_PORT), "API Gateway VPC link");
    // Redis from the tasks only. (ALB → tasks is added when the service registers as a target.)
    this.redisSg.connections.allowFrom(this.serviceSg, ec2.Port.tcp(REDIS_PORT), "adsrv tasks");
  }
}

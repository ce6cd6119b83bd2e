/**
 * The edge: an API Gateway HTTP API that reaches the internal ALB through a VPC link, with a
 * Cognito JWT authorizer on every ad route, stage throttling, JSON access logs, and an optional
 * custom domain (ACM certificate validated in Route 53, alias records).
 *
 * Only the listed routes exist: `/healthz`, `/readyz` and anything else answer 404 at the edge.
 * @module
 */
import {
  aws_certificatemanager as acm,
  aws_apigateway as apigw,
  aws_apigatewayv2 as apigwv2,
  aws_apigatewayv2_authorizers as authorizers,
  aws_apigatewayv2_integrations as integrations,
  aws_logs as logs,
  aws_route53 as route53,
  aws_route53_targets as targets,
} from "aws-cdk-lib";
import { Construct } from "constructs";
import type { Identity } from "./identity.ts";
import type { Network } from "./network.ts";
import type { AdsrvService } from "./service.ts";
import type { Settings } from "./settings.ts";

/** Routes that decide ads: each carries the JWT authorizer. */
export const AD_ROUTES = ["/ad_request", "/vast"] as const;
export const IMPRESSION_ROUTE = "/impression";

/** Access log fields (HTTP API `$context` variables); never the Authorization header or the query. */
export const ACCESS_LOG_FIELDS: Readonly<Record<string, string>> = {
  requestId: "$context.requestId",
  ip: "$context.identity.sourceIp",
  requestTime: "$context.requestTimeEpoch",
  method: "$context.httpMethod",
  routeKey: "$context.routeKey",
  path: "$context.path",
  status: "$context.status",
  protocol: "$context.protocol",
  responseLength: "$context.responseLength",
  responseLatency: "$context.responseLatency",
  integrationStatus: "$context.integrationStatus",
  integrationLatency: "$context.integrationLatency",
  integrationError: "$context.integrationErrorMessage",
  authorizerError: "$context.authorizer.error",
};

export class Edge extends Construct {
  readonly api: apigwv2.HttpApi;
  readonly stage: apigwv2.HttpStage;
  readonly vpcLink: apigwv2.VpcLink;
  readonly accessLogs: logs.LogGroup;
  readonly domain: apigwv2.DomainName | null;

  constructor(
    scope: Construct,
    id: string,
    settings: Settings,
    deps: { network: Network; service: AdsrvService; identity: Identity },
  ) {
    super(scope, id);
    const { network, service, identity } = deps;

    this.vpcLink = new apigwv2.VpcLink(this, "VpcLink", {
      vpc: network.vpc,
      subnets: { subnets: network.vpc.privateSubnets },
      securityGroups: [network.vpcLinkSg],
    });

    this.api = new apigwv2.HttpApi(this, "Api", {
      apiName: settings.stackName,
      description: "adsrv ad decisions for game clients",
      createDefaultStage: false,
    });

    this.accessLogs = new logs.LogGroup(this, "AccessLogs", {
      retention: settings.logRetentionDays as logs.RetentionDays,
    });

    this.domain = null;
    let zone: route53.IHostedZone | null = null;
    const custom = settings.customDomain;
    if (custom !== null) {
      zone = route53.HostedZone.fromHostedZoneAttributes(this, "Zone", {
        hostedZoneId: custom.hostedZoneId,
        zoneName: custom.hostedZoneName,
      });
      const certificate = new acm.Certificate(this, "Certificate", {
        domainName: custom.domainName,
        validation: acm.CertificateValidation.fromDns(zone),
      });
      this.domain = new apigwv2.DomainName(this, "Domain", {
        domainName: custom.domainName,
        certificate,
        securityPolicy: apigwv2.SecurityPolicy.TLS_1_2,
      });
    }

    this.stage = this.api.addStage("Stage", {
      stageName: "$default",
      autoDeploy: true,
      throttle: { rateLimit: settings.throttleRatePerSecond, burstLimit: settings.throttleBurst },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogs),
        format: apigw.AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
      ...(this.domain === null ? {} : { domainMapping: { domainName: this.domain } }),
    });

    if (custom !== null && zone !== null && this.domain !== null) {
      const alias = route53.RecordTarget.fromAlias(
        new targets.ApiGatewayv2DomainProperties(
          this.domain.regionalDomainName,
          this.domain.regionalHostedZoneId,
        ),
      );
      const recordName = `${custom.domainName}.`;
      new route53.ARecord(this, "AliasA", { zone, recordName, target: alias });
      new route53.AaaaRecord(this, "AliasAaaa", { zone, recordName, target: alias });
    }

    const integration = new integrations.HttpAlbIntegration("Alb", service.listener, {
      vpcLink: this.vpcLink,
    });
    // API Gateway checks `aud` (ID tokens) or `client_id` (access tokens) against the app client.
    const authorizer = new authorizers.HttpJwtAuthorizer("Cognito", identity.issuer, {
      authorizerName: "cognito",
      jwtAudience: [identity.client.userPoolClientId],
      identitySource: ["$request.header.Authorization"],
    });
    for (const path of AD_ROUTES) {
      this.api.addRoutes({ path, methods: [apigwv2.HttpMethod.GET], integration, authorizer });
    }
    if (settings.impressionRoute) {
      // Called by video players, which cannot attach a bearer token: the impression URL's signed,
      // expiring `t` token (verified by adsrv) is its credential; stage throttling still applies.
      this.api.addRoutes({ path: IMPRESSION_ROUTE, methods: [apigwv2.HttpMethod.GET], integration });
    }
  }

  /** The URL clients call. */
  get url(): string {
    const custom = this.domain;
    return custom === null ? (this.stage.url ?? this.api.apiEndpoint) : `https://${custom.name}/`;
  }
}

/**
 * Alarms, all sent to one SNS topic (with an optional e-mail subscription):
 * - 5xx rate at the ALB (targets + ALB) and at API Gateway, in percent of requests;
 * - p99 target response time against adsrv's 250 ms deadline;
 * - unhealthy targets (`/readyz` failing: no catalog, draining, hung);
 * - catalog age: adsrv logs `catalog sync failed; keeping the last good catalog` on every failed
 *   sync; a metric filter counts those lines and the alarm fires when failures keep coming for
 *   `catalogStaleMinutes` (the catalog in service is at least that old);
 * - Redis engine CPU and memory, on the busier of the two nodes.
 * @module
 */
import {
  aws_cloudwatch_actions as actions,
  aws_cloudwatch as cloudwatch,
  Duration,
  aws_elasticloadbalancingv2 as elbv2,
  aws_logs as logs,
  aws_sns as sns,
  aws_sns_subscriptions as subscriptions,
} from "aws-cdk-lib";
import { Construct } from "constructs";
import type { Edge } from "./edge.ts";
import type { AdsrvService } from "./service.ts";
import type { Settings } from "./settings.ts";
import type { RedisState } from "./state.ts";

export const METRIC_NAMESPACE = "Adsrv";
/** The `msg` of adsrv's failed-sync log line (src/sync/loop.ts). */
export const SYNC_FAILED_MSG = "catalog sync failed; keeping the last good catalog";
export const SYNC_LOADED_MSG = "catalog loaded";

export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: readonly cloudwatch.Alarm[];

  constructor(
    scope: Construct,
    id: string,
    settings: Settings,
    deps: { service: AdsrvService; redis: RedisState; edge: Edge },
  ) {
    super(scope, id);
    const { service, redis, edge } = deps;
    this.topic = new sns.Topic(this, "Alarms", { displayName: "adsrv alarms", enforceSSL: true });
    if (settings.alarmEmail !== null) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(settings.alarmEmail));
    }
    const minute = Duration.minutes(1);
    const alarms: cloudwatch.Alarm[] = [];
    const add = (alarmId: string, props: cloudwatch.AlarmProps) => {
      const alarm = new cloudwatch.Alarm(this, alarmId, props);
      alarm.addAlarmAction(new actions.SnsAction(this.topic));
      alarm.addOkAction(new actions.SnsAction(this.topic));
      alarms.push(alarm);
    };
    const { alb, targetGroup } = service;

    add("Alb5xxRate", {
      alarmDescription: `More than ${settings.error5xxPercent}% of requests through the ALB answered 5xx`,
      metric: new cloudwatch.MathExpression({
        label: "5xx %",
        expression: "IF(req > 0, 100 * (t5 + e5) / req, 0)",
        usingMetrics: {
          req: alb.metrics.requestCount({ period: minute, statistic: "Sum" }),
          t5: alb.metrics.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, {
            period: minute,
            statistic: "Sum",
          }),
          e5: alb.metrics.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { period: minute, statistic: "Sum" }),
        },
        period: minute,
      }),
      threshold: settings.error5xxPercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    add("Api5xxRate", {
      alarmDescription: `More than ${settings.error5xxPercent}% of API Gateway requests answered 5xx`,
      metric: new cloudwatch.MathExpression({
        label: "API 5xx %",
        expression: "IF(req > 0, 100 * e5 / req, 0)",
        usingMetrics: {
          req: edge.api.metricCount({ period: minute, statistic: "Sum" }),
          e5: edge.api.metricServerError({ period: minute, statistic: "Sum" }),
        },
        period: minute,
      }),
      threshold: settings.error5xxPercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    add("P99Latency", {
      alarmDescription: `p99 target response time above ${settings.p99LatencyMs} ms`,
      metric: targetGroup.metrics.targetResponseTime({ period: minute, statistic: "p99" }),
      threshold: settings.p99LatencyMs / 1000,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    add("UnhealthyHosts", {
      alarmDescription: "At least one adsrv task fails the ALB's /readyz check",
      metric: targetGroup.metrics.unhealthyHostCount({ period: minute, statistic: "Maximum" }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    // Catalog age, from adsrv's logs.
    const failures = new logs.MetricFilter(this, "CatalogSyncFailures", {
      logGroup: service.logGroup,
      metricNamespace: METRIC_NAMESPACE,
      metricName: "CatalogSyncFailures",
      filterPattern: logs.FilterPattern.stringValue("$.msg", "=", SYNC_FAILED_MSG),
      metricValue: "1",
    });
    new logs.MetricFilter(this, "CatalogUpdates", {
      logGroup: service.logGroup,
      metricNamespace: METRIC_NAMESPACE,
      metricName: "CatalogUpdates",
      filterPattern: logs.FilterPattern.stringValue("$.msg", "=", SYNC_LOADED_MSG),
      metricValue: "1",
    });
    const periodMinutes = Math.max(1, Math.ceil(settings.refreshSeconds / 60));
    const periods = Math.max(2, Math.ceil(settings.catalogStaleMinutes / periodMinutes));
    add("CatalogStale", {
      alarmDescription: `Catalog syncs have failed for ${periods * periodMinutes} minutes: the catalog in service is getting old`,
      metric: failures.metric({ period: Duration.minutes(periodMinutes), statistic: "Sum" }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: periods,
      datapointsToAlarm: periods,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const nodeMax = (metricName: string, label: string) =>
      new cloudwatch.MathExpression({
        label,
        expression: `MAX([${redis.memberIds.map((_, i) => `n${i}`).join(", ")}])`,
        usingMetrics: Object.fromEntries(
          redis.memberIds.map((cacheClusterId, i) => [
            `n${i}`,
            new cloudwatch.Metric({
              namespace: "AWS/ElastiCache",
              metricName,
              dimensionsMap: { CacheClusterId: cacheClusterId },
              period: Duration.minutes(5),
              statistic: "Average",
            }),
          ]),
        ),
        period: Duration.minutes(5),
      });
    add("RedisCpu", {
      alarmDescription: "Redis engine CPU above 80% on a node",
      metric: nodeMax("EngineCPUUtilization", "Redis engine CPU %"),
      threshold: 80,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.MISSING,
    });
    add("RedisMemory", {
      alarmDescription: "Redis memory above 80% of maxmemory on a node",
      metric: nodeMax("DatabaseMemoryUsagePercentage", "Redis memory %"),
      threshold: 80,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.MISSING,
    });
    this.alarms = alarms;
  }
}

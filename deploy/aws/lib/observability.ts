/** @module deploy/aws/observability — log groups, the agent config, the flush metric, alarms, SNS. */
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { cloudWatchAgentConfig } from './cloudwatch-agent-config.js';
import type { TallyPostgres } from './postgres.js';
import type { TallyRedis } from './redis.js';

/** Options for {@link TallyLogs}. */
export interface TallyLogsProps {
  /**
   * Days CloudWatch keeps app.log events.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly appLogRetention?: logs.RetentionDays;
  /**
   * Days CloudWatch keeps error.log events (they are few and matter longer).
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly errorLogRetention?: logs.RetentionDays;
}

/**
 * The two log groups, the CloudWatch agent configuration (an SSM parameter the instances fetch at
 * boot) and the flush-failure metric extracted from the error log.
 */
export class TallyLogs extends Construct {
  /** Receives app.log, one stream per instance. */
  readonly appLogGroup: logs.LogGroup;
  /** Receives error.log, one stream per instance. */
  readonly errorLogGroup: logs.LogGroup;
  /** The agent configuration; the instances run `amazon-cloudwatch-agent-ctl -c ssm:<name>`. */
  readonly agentConfig: ssm.StringParameter;
  /** Count of `"event":"flush_failed"` lines in error.log, per minute. */
  readonly flushFailures: cloudwatch.Metric;

  constructor(scope: Construct, id: string, props: TallyLogsProps = {}) {
    super(scope, id);
    const prefix = `/tally/${Stack.of(this).stackName}`;
    const appLogGroupName = `${prefix}/app`;
    const errorLogGroupName = `${prefix}/error`;

    this.appLogGroup = new logs.LogGroup(this, 'App', {
      logGroupName: appLogGroupName,
      retention: props.appLogRetention ?? logs.RetentionDays.ONE_MONTH,
    });
    this.errorLogGroup = new logs.LogGroup(this, 'Error', {
      logGroupName: errorLogGroupName,
      retention: props.errorLogRetention ?? logs.RetentionDays.THREE_MONTHS,
    });

    this.agentConfig = new ssm.StringParameter(this, 'AgentConfig', {
      parameterName: `${prefix}/cloudwatch-agent`,
      description: 'CloudWatch agent configuration of the Tally instances',
      stringValue: JSON.stringify(cloudWatchAgentConfig({ appLogGroupName, errorLogGroupName })),
    });

    const filter = new logs.MetricFilter(this, 'FlushFailedFilter', {
      logGroup: this.errorLogGroup,
      filterPattern: logs.FilterPattern.stringValue('$.event', '=', 'flush_failed'),
      metricNamespace: 'Tally',
      metricName: 'FlushFailures',
      metricValue: '1',
      defaultValue: 0,
      unit: cloudwatch.Unit.COUNT,
    });
    this.flushFailures = filter.metric({ statistic: 'Sum', period: Duration.minutes(1) });
  }
}

/** Options for {@link TallyAlarms}. */
export interface TallyAlarmsProps {
  /** The load balancer in front of the fleet. */
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  /** The fleet's target group. */
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  /** The Redis replication group. */
  /** The store the instances use: its alarms join the topic (one of the two). */
  readonly redis?: TallyRedis;
  readonly postgres?: TallyPostgres;
  /** The flush-failure metric from {@link TallyLogs}. */
  readonly flushFailures: cloudwatch.IMetric;
  /** Address subscribed to the alarm topic; omit to subscribe later. */
  readonly alarmEmail?: string;
  /**
   * Share of requests answered 5xx (by Tally or by the ALB itself) that raises the alarm, percent.
   * @default 1
   */
  readonly http5xxPercent?: number;
  /**
   * Redis engine CPU that raises the alarm, percent.
   * @default 80
   */
  readonly redisCpuPercent?: number;
}

/** Alarms on the signals an operator acts on, all notifying one SNS topic. */
export class TallyAlarms extends Construct {
  /** Every alarm and its recovery goes here. */
  readonly topic: sns.Topic;
  /** 5xx responses as a share of all requests. */
  readonly http5xx: cloudwatch.Alarm;
  /** Tally could not write its deltas to Redis. */
  readonly flushFailures: cloudwatch.Alarm;
  /** Redis engine thread busy (Redis store). */
  readonly redisCpu: cloudwatch.Alarm | undefined;
  /** Redis memory nearly full (with noeviction, writes fail at 100 %). */
  readonly redisMemory: cloudwatch.Alarm | undefined;
  /** PostgreSQL CPU busy (PostgreSQL store). */
  readonly postgresCpu: cloudwatch.Alarm | undefined;
  /** PostgreSQL storage nearly full (writes fail when it is). */
  readonly postgresStorage: cloudwatch.Alarm | undefined;
  /** No instance passes the /readyz health check. */
  readonly noHealthyHosts: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: TallyAlarmsProps) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'Topic', { displayName: 'Tally alarms', enforceSSL: true });
    if (props.alarmEmail !== undefined) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }
    const minute = Duration.minutes(1);

    const rate = new cloudwatch.MathExpression({
      // FILL: a minute without any 5xx has no data point, which must count as zero.
      expression: 'IF(requests > 0, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)',
      usingMetrics: {
        requests: props.loadBalancer.metrics.requestCount({ period: minute }),
        target5xx: props.targetGroup.metrics.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, {
          period: minute,
        }),
        elb5xx: props.loadBalancer.metrics.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, {
          period: minute,
        }),
      },
      label: '5xx share of requests (%)',
      period: minute,
    });
    this.http5xx = rate.createAlarm(this, 'Http5xxRate', {
      alarmDescription: 'More than the threshold share of requests answered 5xx for 3 of 5 minutes',
      threshold: props.http5xxPercent ?? 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.flushFailures = new cloudwatch.Alarm(this, 'FlushFailures', {
      alarmDescription:
        'Tally logged flush_failed in 2 of 3 minutes: deltas are piling up in memory. ' +
        'Check Redis reachability and memory, then error.log.',
      metric: props.flushFailures,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.redisCpu = props.redis
      ?.maxOverNodes('EngineCPUUtilization', 'Redis engine CPU, busiest node (%)')
      .createAlarm(this, 'RedisEngineCpu', {
        alarmDescription: 'The Redis engine thread is above the threshold for 5 minutes',
        threshold: props.redisCpuPercent ?? 80,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });

    this.redisMemory = props.redis
      ?.maxOverNodes('DatabaseMemoryUsagePercentage', 'Redis memory used, fullest node (%)')
      .createAlarm(this, 'RedisMemory', {
        alarmDescription: 'Redis memory above 80 %: with noeviction, writes fail when it is full',
        threshold: 80,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });

    this.postgresCpu = props.postgres?.metric('CPUUtilization').createAlarm(this, 'PostgresCpu', {
      alarmDescription: 'PostgreSQL CPU above 80 % for 5 minutes',
      threshold: 80,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.postgresStorage = props.postgres
      ?.metric('FreeStorageSpace')
      .createAlarm(this, 'PostgresStorage', {
        alarmDescription: 'PostgreSQL free storage below 2 GiB: writes fail when it runs out',
        threshold: 2 * 1024 ** 3,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });

    this.noHealthyHosts = new cloudwatch.Alarm(this, 'NoHealthyHosts', {
      alarmDescription: 'No instance answers /readyz: the service is down',
      metric: props.targetGroup.metrics.healthyHostCount({ statistic: 'Minimum', period: minute }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 2,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    const action = new cwActions.SnsAction(this.topic);
    for (const alarm of [
      this.http5xx,
      this.flushFailures,
      this.redisCpu,
      this.redisMemory,
      this.postgresCpu,
      this.postgresStorage,
      this.noHealthyHosts,
    ]) {
      if (alarm === undefined) continue;
      alarm.addAlarmAction(action);
      alarm.addOkAction(action);
    }
  }
}

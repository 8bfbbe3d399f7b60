/** @module deploy/aws/tally-stack — the whole Tally deployment on AWS as one stack. */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type * as codedeploy from 'aws-cdk-lib/aws-codedeploy';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { TallyFleet } from './fleet.js';
import { TallyNetwork } from './network.js';
import { TallyAlarms, TallyLogs } from './observability.js';
import { TallyPipeline, type TallySource } from './pipeline.js';
import { TallyPostgres } from './postgres.js';
import { TallyRedis } from './redis.js';

/**
 * Options for {@link TallyStack}. Every option has a default, so `new TallyStack(app, 'Tally')`
 * synthesizes offline, without credentials and without context lookups.
 */
export interface TallyStackProps extends StackProps {
  /**
   * EC2 instance type (x86_64).
   * @default 't3.small'
   */
  readonly instanceType?: string;
  /**
   * Fewest instances.
   * @default 2
   */
  readonly minCapacity?: number;
  /**
   * Most instances.
   * @default 6
   */
  readonly maxCapacity?: number;
  /**
   * Where counters live: ElastiCache Redis, or RDS for PostgreSQL (docs/postgres.md).
   * @default 'redis'
   */
  readonly store?: 'redis' | 'postgres';
  /**
   * ElastiCache node type (Redis store).
   * @default 'cache.t4g.small'
   */
  readonly redisNodeType?: string;
  /**
   * RDS instance class (PostgreSQL store).
   * @default 'db.t4g.small'
   */
  readonly postgresInstanceType?: string;
  /**
   * ACM certificate ARN; adds an HTTPS listener and turns port 80 into a redirect.
   * @default - HTTP only
   */
  readonly certificateArn?: string;
  /**
   * CIDR allowed to reach the load balancer.
   * @default '0.0.0.0/0'
   */
  readonly ingressCidr?: string;
  /**
   * E-mail subscribed to the alarm topic (confirm the subscription mail).
   * @default - no subscription
   */
  readonly alarmEmail?: string;
  /**
   * Pipeline source.
   * @default { kind: 's3' }
   */
  readonly source?: TallySource;
  /**
   * CloudWatch retention of app.log.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly appLogRetention?: logs.RetentionDays;
  /**
   * CloudWatch retention of error.log.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly errorLogRetention?: logs.RetentionDays;
  /**
   * CodeDeploy deployment configuration.
   * @default codedeploy.ServerDeploymentConfig.ONE_AT_A_TIME
   */
  readonly deploymentConfig?: codedeploy.IServerDeploymentConfig;
}

/**
 * VPC, Redis or PostgreSQL, the EC2 fleet behind an ALB, logs and alarms, and the delivery
 * pipeline.
 */
export class TallyStack extends Stack {
  /** The network. */
  readonly network: TallyNetwork;
  /** The Redis replication group (Redis store). */
  readonly redis: TallyRedis | undefined;
  /** The RDS instance (PostgreSQL store). */
  readonly postgres: TallyPostgres | undefined;
  /** ALB and Auto Scaling group. */
  readonly fleet: TallyFleet;
  /** Log groups and the CloudWatch agent configuration. */
  readonly logs: TallyLogs;
  /** Alarms and their SNS topic. */
  readonly alarms: TallyAlarms;
  /** CodePipeline and CodeDeploy. */
  readonly delivery: TallyPipeline;
  /** TALLY_ADMIN_TOKEN, generated; the instances read it at boot. */
  readonly adminToken: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: TallyStackProps = {}) {
    super(scope, id, props);

    this.network = new TallyNetwork(this, 'Network');
    const store = props.store ?? 'redis';
    this.redis =
      store === 'redis'
        ? new TallyRedis(this, 'Redis', {
            vpc: this.network.vpc,
            subnets: this.network.dataSubnets,
            nodeType: props.redisNodeType,
          })
        : undefined;
    this.postgres =
      store === 'postgres'
        ? new TallyPostgres(this, 'Postgres', {
            vpc: this.network.vpc,
            subnets: this.network.dataSubnets,
            instanceType: props.postgresInstanceType,
          })
        : undefined;
    this.logs = new TallyLogs(this, 'Logs', {
      appLogRetention: props.appLogRetention,
      errorLogRetention: props.errorLogRetention,
    });

    const adminToken = new secretsmanager.Secret(this, 'AdminToken', {
      description: 'TALLY_ADMIN_TOKEN: bearer token of the Tally admin endpoints',
      generateSecretString: { passwordLength: 48, excludePunctuation: true, includeSpace: false },
    });
    this.adminToken = adminToken;

    this.fleet = new TallyFleet(this, 'Fleet', {
      vpc: this.network.vpc,
      appSubnets: this.network.appSubnets,
      ...(this.redis === undefined ? {} : { redis: this.redis }),
      ...(this.postgres === undefined ? {} : { postgres: this.postgres }),
      adminToken,
      agentConfig: this.logs.agentConfig,
      instanceType:
        props.instanceType === undefined ? undefined : new ec2.InstanceType(props.instanceType),
      minCapacity: props.minCapacity,
      maxCapacity: props.maxCapacity,
      certificateArn: props.certificateArn,
      ingressCidr: props.ingressCidr,
    });

    this.alarms = new TallyAlarms(this, 'Alarms', {
      loadBalancer: this.fleet.loadBalancer,
      targetGroup: this.fleet.targetGroup,
      ...(this.redis === undefined ? {} : { redis: this.redis }),
      ...(this.postgres === undefined ? {} : { postgres: this.postgres }),
      flushFailures: this.logs.flushFailures,
      alarmEmail: props.alarmEmail,
    });

    this.delivery = new TallyPipeline(this, 'Delivery', {
      source: props.source,
      autoScalingGroup: this.fleet.autoScalingGroup,
      instanceRole: this.fleet.role,
      targetGroup: this.fleet.targetGroup,
      rollbackAlarms: [this.alarms.http5xx, this.alarms.flushFailures],
      deploymentConfig: props.deploymentConfig,
    });

    const scheme = props.certificateArn === undefined ? 'http' : 'https';
    new CfnOutput(this, 'Url', {
      description: 'Tally endpoint',
      value: `${scheme}://${this.fleet.loadBalancer.loadBalancerDnsName}`,
    });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarms.topic.topicArn });
    new CfnOutput(this, 'AdminTokenSecretArn', { value: adminToken.secretArn });
    new CfnOutput(this, 'PipelineName', { value: this.delivery.pipeline.pipelineName });
    if (this.delivery.sourceBucket !== undefined) {
      new CfnOutput(this, 'SourceUpload', {
        description: 'Upload `git archive --format=zip HEAD` here to deploy',
        value: `s3://${this.delivery.sourceBucket.bucketName}/${this.delivery.sourceObjectKey}`,
      });
    }
  }
}

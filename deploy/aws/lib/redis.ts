/** @module deploy/aws/redis — ElastiCache Redis: Multi-AZ, TLS, encrypted, AUTH from Secrets Manager. */
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

/** Options for {@link TallyRedis}. */
export interface TallyRedisProps {
  /** VPC to place the replication group in. */
  readonly vpc: ec2.IVpc;
  /** Subnets of the cache nodes; one per AZ. */
  readonly subnets: ec2.SubnetSelection;
  /**
   * Node type.
   * @default 'cache.t4g.small'
   */
  readonly nodeType?: string;
  /**
   * Nodes in the group: one primary plus replicas, spread over the AZs. At least 2 for failover.
   * @default 2
   */
  readonly nodes?: number;
  /**
   * Redis engine version.
   * @default '7.1'
   */
  readonly engineVersion?: string;
  /**
   * Days of daily snapshots kept; counters live only here, so keep some.
   * @default 7
   */
  readonly snapshotRetentionDays?: number;
}

/**
 * A Redis replication group (cluster mode disabled) with automatic failover across AZs, TLS in
 * transit, encryption at rest and an AUTH token generated into Secrets Manager. Its security
 * group starts with no ingress; the fleet opens 6379 to the app's security group only.
 */
export class TallyRedis extends Construct {
  /** Security group of the cache nodes. */
  readonly securityGroup: ec2.SecurityGroup;
  /** The AUTH token, a 64-character alphanumeric string (safe in a URL without escaping). */
  readonly authToken: secretsmanager.Secret;
  /** The replication group. */
  readonly replicationGroup: elasticache.CfnReplicationGroup;
  /** Host name of the primary endpoint (follows failover). */
  readonly host: string;
  /** Port of the primary endpoint. */
  readonly port: string;
  /** Id of the replication group; node ids are `<id>-001`, `<id>-002`, … */
  readonly replicationGroupId: string;
  private readonly nodeIds: string[];

  constructor(scope: Construct, id: string, props: TallyRedisProps) {
    super(scope, id);
    const nodes = props.nodes ?? 2;
    if (nodes < 2) throw new Error('TallyRedis: nodes must be at least 2 for automatic failover');

    this.securityGroup = new ec2.SecurityGroup(this, 'Sg', {
      vpc: props.vpc,
      description: 'Tally Redis: 6379 from the app instances only',
      allowAllOutbound: false,
    });

    this.authToken = new secretsmanager.Secret(this, 'AuthToken', {
      description: 'AUTH token of the Tally Redis replication group',
      generateSecretString: {
        passwordLength: 64,
        excludePunctuation: true,
        includeSpace: false,
      },
    });

    const subnetGroup = new elasticache.CfnSubnetGroup(this, 'Subnets', {
      description: 'Tally Redis subnets',
      subnetIds: props.vpc.selectSubnets(props.subnets).subnetIds,
    });

    // A counter store must refuse writes when full rather than drop keys: with noeviction a full
    // Redis makes flushes fail loudly (flush_failed alarm) and Tally keeps the deltas.
    const parameters = new elasticache.CfnParameterGroup(this, 'Params', {
      cacheParameterGroupFamily: 'redis7',
      description: 'Tally: never evict counters',
      properties: { 'maxmemory-policy': 'noeviction' },
    });

    // Explicit and short (40 characters at most): alarms address the nodes by `<id>-00N`.
    this.replicationGroupId = `${Stack.of(this).stackName}-redis`.toLowerCase().slice(0, 40);
    this.replicationGroup = new elasticache.CfnReplicationGroup(this, 'Group', {
      replicationGroupId: this.replicationGroupId,
      replicationGroupDescription: 'Tally counters',
      engine: 'redis',
      engineVersion: props.engineVersion ?? '7.1',
      cacheNodeType: props.nodeType ?? 'cache.t4g.small',
      numCacheClusters: nodes,
      multiAzEnabled: true,
      automaticFailoverEnabled: true,
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      atRestEncryptionEnabled: true,
      authToken: this.authToken.secretValue.unsafeUnwrap(),
      port: 6379,
      cacheSubnetGroupName: subnetGroup.ref,
      cacheParameterGroupName: parameters.ref,
      securityGroupIds: [this.securityGroup.securityGroupId],
      snapshotRetentionLimit: props.snapshotRetentionDays ?? 7,
      snapshotWindow: '03:00-04:00',
      preferredMaintenanceWindow: 'sun:04:30-sun:05:30',
      autoMinorVersionUpgrade: true,
    });
    this.host = this.replicationGroup.attrPrimaryEndPointAddress;
    this.port = this.replicationGroup.attrPrimaryEndPointPort;
    this.nodeIds = Array.from(
      { length: nodes },
      (_, i) => `${this.replicationGroupId}-${String(i + 1).padStart(3, '0')}`,
    );
  }

  /**
   * The highest value of an ElastiCache metric across all nodes, so an alarm follows the primary
   * through a failover.
   */
  maxOverNodes(metricName: string, label: string): cloudwatch.MathExpression {
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    this.nodeIds.forEach((nodeId, i) => {
      usingMetrics[`n${i}`] = new cloudwatch.Metric({
        namespace: 'AWS/ElastiCache',
        metricName,
        dimensionsMap: { CacheClusterId: nodeId },
        statistic: 'Average',
        period: Duration.minutes(1),
      });
    });
    return new cloudwatch.MathExpression({
      expression: `MAX([${Object.keys(usingMetrics).join(', ')}])`,
      usingMetrics,
      label,
      period: Duration.minutes(1),
    });
  }
}

/**
 * @module deploy/aws/postgres — RDS for PostgreSQL instead of ElastiCache: Multi-AZ, encrypted,
 * TLS required, credentials generated into Secrets Manager.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

/** Options for {@link TallyPostgres}. */
export interface TallyPostgresProps {
  /** VPC to place the database in. */
  readonly vpc: ec2.IVpc;
  /** Subnets of the database; two AZs at least. */
  readonly subnets: ec2.SubnetSelection;
  /**
   * Instance class (Graviton burstable by default: a few transactions a second per Tally
   * instance, docs/postgres.md).
   * @default 'db.t4g.small'
   */
  readonly instanceType?: string;
  /**
   * Allocated storage, GiB (grows by itself up to four times this).
   * @default 20
   */
  readonly storageGiB?: number;
  /**
   * A standby in a second AZ, promoted automatically on failure.
   * @default true
   */
  readonly multiAz?: boolean;
  /**
   * Days of automated backups kept; counters live only here, so keep some.
   * @default 7
   */
  readonly backupRetentionDays?: number;
}

/**
 * One RDS for PostgreSQL 16 instance with a database `tally`. Its security group starts with no
 * ingress; the fleet opens 5432 to the app's security group only. `rds.force_ssl` refuses
 * unencrypted connections, so the instances connect with `sslmode=require`.
 */
export class TallyPostgres extends Construct {
  /** Security group of the database. */
  readonly securityGroup: ec2.SecurityGroup;
  /** The generated credentials: JSON with `username` and `password` (and host, port…). */
  readonly secret: secretsmanager.ISecret;
  readonly instance: rds.DatabaseInstance;
  /** Endpoint host name (follows a Multi-AZ failover). */
  readonly host: string;
  readonly port: string;
  /** The database Tally uses. */
  readonly databaseName = 'tally';

  constructor(scope: Construct, id: string, props: TallyPostgresProps) {
    super(scope, id);
    this.securityGroup = new ec2.SecurityGroup(this, 'Sg', {
      vpc: props.vpc,
      description: 'Tally PostgreSQL: 5432 from the app instances only',
      allowAllOutbound: false,
    });
    const engine = rds.DatabaseInstanceEngine.postgres({
      version: rds.PostgresEngineVersion.VER_16,
    });
    const parameters = new rds.ParameterGroup(this, 'Params', {
      engine,
      description: 'Tally: TLS only',
      parameters: { 'rds.force_ssl': '1' },
    });
    this.instance = new rds.DatabaseInstance(this, 'Db', {
      engine,
      instanceType: new ec2.InstanceType(
        (props.instanceType ?? 'db.t4g.small').replace(/^db\./, ''),
      ),
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [this.securityGroup],
      credentials: rds.Credentials.fromGeneratedSecret('tally'),
      databaseName: this.databaseName,
      parameterGroup: parameters,
      multiAz: props.multiAz ?? true,
      allocatedStorage: props.storageGiB ?? 20,
      maxAllocatedStorage: (props.storageGiB ?? 20) * 4,
      storageEncrypted: true,
      backupRetention: Duration.days(props.backupRetentionDays ?? 7),
      preferredBackupWindow: '03:00-04:00',
      preferredMaintenanceWindow: 'sun:04:30-sun:05:30',
      autoMinorVersionUpgrade: true,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.SNAPSHOT,
      publiclyAccessible: false,
    });
    if (this.instance.secret === undefined) throw new Error('TallyPostgres: no generated secret');
    this.secret = this.instance.secret;
    this.host = this.instance.dbInstanceEndpointAddress;
    this.port = this.instance.dbInstanceEndpointPort;
  }

  /** A metric of the instance (`CPUUtilization`, `FreeStorageSpace`, …), 1-minute average. */
  metric(metricName: string): cloudwatch.Metric {
    return this.instance.metric(metricName, { period: Duration.minutes(1), statistic: 'Average' });
  }
}

/** @module deploy/aws/fleet — the ALB, the Auto Scaling group of Tally instances and their access. */
import { readFileSync } from 'node:fs';
import { Duration, Stack } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import type { TallyPostgres } from './postgres.js';
import type { TallyRedis } from './redis.js';

/** Port Tally listens on inside the VPC (TALLY_PORT in tally.env). */
export const APP_PORT = 8080;

/** The instance bootstrap script, embedded into the user data. */
const BOOTSTRAP_SCRIPT = fileURLToText(new URL('../../ec2/tally-bootstrap.sh', import.meta.url));

/** Options for {@link TallyFleet}. */
export interface TallyFleetProps {
  /** The VPC. */
  readonly vpc: ec2.IVpc;
  /** Subnets of the instances (isolated). */
  readonly appSubnets: ec2.SubnetSelection;
  /**
   * The store the instances connect to, Redis or PostgreSQL (exactly one); its security group
   * gets an ingress rule for them.
   */
  readonly redis?: TallyRedis;
  readonly postgres?: TallyPostgres;
  /** Admin token for Tally's admin endpoints, written into tally.env at boot. */
  readonly adminToken: secretsmanager.ISecret;
  /** SSM parameter holding the CloudWatch agent configuration. */
  readonly agentConfig: ssm.IStringParameter;
  /**
   * EC2 instance type. Must be x86_64: the CodeBuild image that compiles the native SQLite
   * module is x86_64 too.
   * @default t3.small
   */
  readonly instanceType?: ec2.InstanceType;
  /**
   * Fewest instances; two keep one serving while the other is being deployed.
   * @default 2
   */
  readonly minCapacity?: number;
  /**
   * Most instances the CPU target tracking may scale out to.
   * @default 6
   */
  readonly maxCapacity?: number;
  /**
   * Average CPU the group scales to hold, percent.
   * @default 60
   */
  readonly targetCpuPercent?: number;
  /**
   * ACM certificate for an HTTPS listener on 443 (HTTP on 80 then only redirects). Without one
   * the ALB serves plain HTTP on 80.
   * @default - HTTP only
   */
  readonly certificateArn?: string;
  /**
   * Who may reach the load balancer.
   * @default '0.0.0.0/0'
   */
  readonly ingressCidr?: string;
  /**
   * Size of the encrypted root volume (code, SQLite write-ahead data, logs), GiB.
   * @default 20
   */
  readonly rootVolumeGiB?: number;
  /**
   * TALLY_REDIS_WAIT_REPLICAS: a batch leaves an instance's log only once this many replicas
   * hold it, so a failover never loses acknowledged increments (docs/redis.md).
   * @default 1
   */
  readonly waitReplicas?: number;
}

/** Name of the termination lifecycle hook deploy/ec2/tally-lifecycle.sh completes. */
export const DRAIN_HOOK_NAME = 'tally-drain';

/**
 * An internet-facing ALB forwarding to an Auto Scaling group of Amazon Linux 2023 instances in
 * isolated subnets. Only the ALB reaches the app port; only the app reaches Redis.
 */
export class TallyFleet extends Construct {
  /** The load balancer. */
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  /** Target group of the instances; health check GET /readyz. */
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  /** The Auto Scaling group. */
  readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  /** Role of the instances. */
  readonly role: iam.Role;
  /** Security group of the instances. */
  readonly appSecurityGroup: ec2.SecurityGroup;
  /** Security group of the load balancer. */
  readonly albSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: TallyFleetProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const https = props.certificateArn !== undefined;
    const ingress = ec2.Peer.ipv4(props.ingressCidr ?? '0.0.0.0/0');

    this.albSecurityGroup = new ec2.SecurityGroup(this, 'AlbSg', {
      vpc: props.vpc,
      description: 'Tally ALB: HTTP(S) from clients, app port to the instances only',
      allowAllOutbound: false,
    });
    this.albSecurityGroup.addIngressRule(ingress, ec2.Port.tcp(80), 'HTTP from clients');
    if (https) this.albSecurityGroup.addIngressRule(ingress, ec2.Port.tcp(443), 'HTTPS');

    // Outbound stays open: the subnets have no route out of the VPC, so it only reaches the VPC
    // endpoints, the S3 gateway and Redis.
    this.appSecurityGroup = new ec2.SecurityGroup(this, 'AppSg', {
      vpc: props.vpc,
      description: 'Tally instances: app port from the ALB only',
      allowAllOutbound: true,
    });
    this.appSecurityGroup.addIngressRule(
      this.albSecurityGroup,
      ec2.Port.tcp(APP_PORT),
      'Tally from the ALB',
    );
    this.albSecurityGroup.addEgressRule(
      this.appSecurityGroup,
      ec2.Port.tcp(APP_PORT),
      'to the Tally instances',
    );
    const { redis, postgres } = props;
    if ((redis === undefined) === (postgres === undefined)) {
      throw new Error('TallyFleet: give exactly one store, redis or postgres');
    }
    redis?.securityGroup.addIngressRule(
      this.appSecurityGroup,
      ec2.Port.tcp(6379),
      'Redis from the Tally instances',
    );
    postgres?.securityGroup.addIngressRule(
      this.appSecurityGroup,
      ec2.Port.tcp(5432),
      'PostgreSQL from the Tally instances',
    );

    this.role = new iam.Role(this, 'InstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'Tally instances',
      managedPolicies: [
        // Session Manager replaces SSH: no key pairs, no port 22.
        iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'),
        iam.ManagedPolicy.fromAwsManagedPolicyName('CloudWatchAgentServerPolicy'),
      ],
    });
    // The CodeDeploy agent polls for work through the codedeploy-commands-secure endpoint.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        actions: [
          'codedeploy-commands-secure:GetDeploymentSpecification',
          'codedeploy-commands-secure:PollHostCommand',
          'codedeploy-commands-secure:PutHostCommandAcknowledgement',
          'codedeploy-commands-secure:PutHostCommandComplete',
        ],
        resources: ['*'],
      }),
    );
    redis?.authToken.grantRead(this.role);
    postgres?.secret.grantRead(this.role);
    props.adminToken.grantRead(this.role);
    props.agentConfig.grantRead(this.role);
    s3.Bucket.fromBucketName(
      this,
      'CodeDeployAgentBucket',
      `aws-codedeploy-${stack.region}`,
    ).grantRead(this.role, 'latest/*');

    const userData = ec2.UserData.forLinux();
    userData.addCommands(
      'set -euo pipefail',
      'install -d -m 0755 /etc/tally',
      heredoc('/etc/tally/bootstrap.env', [
        `TALLY_AWS_REGION=${stack.region}`,
        ...(redis === undefined
          ? []
          : [
              'TALLY_STORE_KIND=redis',
              `TALLY_REDIS_HOST=${redis.host}`,
              `TALLY_REDIS_PORT=${redis.port}`,
              `TALLY_REDIS_SECRET_ARN=${redis.authToken.secretArn}`,
              `TALLY_REDIS_WAIT_REPLICAS=${props.waitReplicas ?? 1}`,
            ]),
        ...(postgres === undefined
          ? []
          : [
              'TALLY_STORE_KIND=postgres',
              `TALLY_POSTGRES_HOST=${postgres.host}`,
              `TALLY_POSTGRES_PORT=${postgres.port}`,
              `TALLY_POSTGRES_DB=${postgres.databaseName}`,
              `TALLY_POSTGRES_SECRET_ARN=${postgres.secret.secretArn}`,
            ]),
        `TALLY_ADMIN_SECRET_ARN=${props.adminToken.secretArn}`,
        `TALLY_CW_AGENT_PARAM=${props.agentConfig.parameterName}`,
        `TALLY_PORT=${APP_PORT}`,
      ]),
      heredoc('/usr/local/sbin/tally-bootstrap', [BOOTSTRAP_SCRIPT.trimEnd()]),
      'chmod 0750 /usr/local/sbin/tally-bootstrap',
      '/usr/local/sbin/tally-bootstrap all',
    );

    const launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      machineImage: ec2.MachineImage.latestAmazonLinux2023({
        cpuType: ec2.AmazonLinuxCpuType.X86_64,
      }),
      instanceType: props.instanceType ?? new ec2.InstanceType('t3.small'),
      securityGroup: this.appSecurityGroup,
      role: this.role,
      userData,
      requireImdsv2: true,
      // The termination guard reads its Auto Scaling group's name from the instance tags.
      instanceMetadataTags: true,
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(props.rootVolumeGiB ?? 20, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            deleteOnTermination: true,
          }),
        },
      ],
    });

    this.autoScalingGroup = new autoscaling.AutoScalingGroup(this, 'Asg', {
      vpc: props.vpc,
      vpcSubnets: props.appSubnets,
      launchTemplate,
      minCapacity: props.minCapacity ?? 2,
      maxCapacity: props.maxCapacity ?? 6,
      // EC2 status checks only. /readyz answers 503 while Redis is down, on every instance at
      // once; with ELB health the group would replace them all, and each replacement would
      // terminate an instance whose log holds acknowledged increments it cannot flush. The
      // target group still routes around an unready instance; a new instance that never becomes
      // ready fails its deployment (ValidateService) instead. The grace period covers the boot.
      healthChecks: autoscaling.HealthChecks.ec2({ gracePeriod: Duration.minutes(15) }),
      defaultInstanceWarmup: Duration.minutes(5),
    });
    // Scale-in and replacement wait in Terminating:Wait until tally-lifecycle.sh on the instance
    // has emptied the log into Redis (heartbeats while Redis is down) and completes this hook.
    // A hook waits at most 100 heartbeat timeouts and 48 h: 30 minutes makes that 48 h of
    // Redis outage an instance can wait out; the guard sends a heartbeat every minute.
    this.autoScalingGroup.addLifecycleHook('Drain', {
      lifecycleHookName: DRAIN_HOOK_NAME,
      lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
      heartbeatTimeout: Duration.minutes(30),
      // Reached only when the guard is gone (the instance hung) for a whole heartbeat timeout.
      defaultResult: autoscaling.DefaultResult.CONTINUE,
    });
    // A policy of its own: in the role's default policy the group's ARN would make the launch
    // template (which waits for that policy) depend on the group it belongs to.
    new iam.Policy(this, 'DrainPolicy', {
      roles: [this.role],
      statements: [
        new iam.PolicyStatement({
          actions: [
            'autoscaling:CompleteLifecycleAction',
            'autoscaling:RecordLifecycleActionHeartbeat',
          ],
          resources: [this.autoScalingGroup.autoScalingGroupArn],
        }),
      ],
    });
    this.autoScalingGroup.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: props.targetCpuPercent ?? 60,
    });

    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
      vpc: props.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroup: this.albSecurityGroup,
      dropInvalidHeaderFields: true,
    });

    this.targetGroup = new elbv2.ApplicationTargetGroup(this, 'Targets', {
      vpc: props.vpc,
      port: APP_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targetType: elbv2.TargetType.INSTANCE,
      targets: [this.autoScalingGroup],
      // Tally answers 503 on /readyz as soon as SIGTERM arrives and while the store is down.
      healthCheck: {
        path: '/readyz',
        healthyHttpCodes: '200',
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 3,
      },
      // In-flight requests get 30 s after CodeDeploy blocks traffic, before ApplicationStop.
      deregistrationDelay: Duration.seconds(30),
    });

    let serving: elbv2.ApplicationListener;
    if (https) {
      serving = this.loadBalancer.addListener('Https', {
        port: 443,
        open: false,
        certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn!)],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        defaultTargetGroups: [this.targetGroup],
      });
      this.loadBalancer.addListener('Http', {
        port: 80,
        open: false,
        defaultAction: elbv2.ListenerAction.redirect({
          protocol: 'HTTPS',
          port: '443',
          permanent: true,
        }),
      });
    } else {
      serving = this.loadBalancer.addListener('Http', {
        port: 80,
        open: false,
        defaultTargetGroups: [this.targetGroup],
      });
    }
    // Prometheus metrics describe internals; they stay inside the VPC (scrape the instances).
    serving.addAction('HideMetrics', {
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(['/metrics', '/metrics/*'])],
      action: elbv2.ListenerAction.fixedResponse(404, {
        contentType: 'application/json',
        messageBody: '{"error":{"code":"NOT_FOUND","message":"Not Found"}}',
      }),
    });
  }
}

/** A shell heredoc writing `lines` to `path` verbatim (quoted delimiter: no expansion). */
function heredoc(path: string, lines: string[]): string {
  const marker = 'TALLY_EOF';
  for (const line of lines) {
    if (line.split('\n').includes(marker)) throw new Error(`heredoc body contains ${marker}`);
  }
  return [`cat > ${path} <<'${marker}'`, ...lines, marker].join('\n');
}

function fileURLToText(url: URL): string {
  return readFileSync(url, 'utf8');
}

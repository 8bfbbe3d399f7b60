// CDK assertion tests: the stack has the resources of the issue with the security properties
// that matter. Synthesized in-process, offline, without credentials.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { TallyStack } from '../../deploy/aws/lib/tally-stack.js';
import { REPO, runScript, tempDir } from './helpers.js';

type Resource = { Type: string; Properties: Record<string, unknown> };

let stack: TallyStack;
let template: Template;
let resources: Record<string, Resource>;

function ofType(type: string): Array<[string, Resource]> {
  return Object.entries(resources).filter(([, r]) => r.Type === type);
}

function only(type: string): Resource {
  const found = ofType(type);
  expect(found, type).toHaveLength(1);
  return found[0]![1];
}

/** Logical id behind a `{ Fn::GetAtt: [id, 'GroupId'] }` or `{ Ref: id }`. */
function logicalId(value: unknown): string {
  const v = value as { 'Fn::GetAtt'?: [string, string]; Ref?: string };
  const id = v['Fn::GetAtt']?.[0] ?? v.Ref;
  if (id === undefined) throw new Error(`not a reference: ${JSON.stringify(value)}`);
  return id;
}

function idOf(token: string): string {
  return logicalId(stack.resolve(token));
}

beforeAll(() => {
  const app = new App();
  stack = new TallyStack(app, 'Tally');
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources as Record<string, Resource>;
});

describe('offline synthesis', () => {
  it('needs no context lookups and no account or region', () => {
    const app = new App();
    const s = new TallyStack(app, 'Offline');
    const assembly = app.synth();
    expect(assembly.manifest.missing ?? []).toEqual([]);
    expect(s.resolve(s.account)).toEqual({ Ref: 'AWS::AccountId' });
    expect(s.resolve(s.region)).toEqual({ Ref: 'AWS::Region' });
  });
});

describe('synthesis warnings', () => {
  it('emits no CDK warning or error', () => {
    const annotations = Annotations.fromStack(stack);
    expect(annotations.findWarning('*', Match.anyValue())).toEqual([]);
    expect(annotations.findError('*', Match.anyValue())).toEqual([]);
  });
});

describe('network', () => {
  it('spreads over two AZs with no NAT gateway and no internet route for the instances', () => {
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 6);
    // Only the two public subnets route to the internet gateway.
    const routes = ofType('AWS::EC2::Route');
    expect(routes).toHaveLength(2);
    for (const [, route] of routes) expect(route.Properties.GatewayId).toBeDefined();
  });

  it('reaches every AWS API the instances use through VPC endpoints', () => {
    const names = ofType('AWS::EC2::VPCEndpoint').map(([, r]) =>
      JSON.stringify(r.Properties.ServiceName),
    );
    for (const service of [
      '.s3',
      '.ssm"',
      '.ssmmessages',
      '.ec2messages',
      '.ec2"',
      '.logs',
      '.monitoring',
      '.secretsmanager',
      '.codedeploy"',
      '.codedeploy-commands-secure',
      '.autoscaling"',
    ]) {
      expect(
        names.some((n) => n.includes(service)),
        service,
      ).toBe(true);
    }
  });
});

describe('redis', () => {
  it('is Multi-AZ with automatic failover, TLS, encryption at rest and an AUTH token', () => {
    const group = only('AWS::ElastiCache::ReplicationGroup').Properties;
    expect(group).toMatchObject({
      Engine: 'redis',
      MultiAZEnabled: true,
      AutomaticFailoverEnabled: true,
      NumCacheClusters: 2,
      TransitEncryptionEnabled: true,
      TransitEncryptionMode: 'required',
      AtRestEncryptionEnabled: true,
      Port: 6379,
      SnapshotRetentionLimit: 7,
    });
    // The token is a CloudFormation dynamic reference into Secrets Manager, never a literal.
    const token = JSON.stringify(group.AuthToken);
    expect(token).toContain('{{resolve:secretsmanager:');
    expect(token).toContain(idOf(stack.redis!.authToken.secretArn));
  });

  it('generates a URL-safe AUTH token of a length ElastiCache accepts', () => {
    const secret = resources[idOf(stack.redis!.authToken.secretArn)]!;
    expect(secret.Properties.GenerateSecretString).toMatchObject({
      PasswordLength: 64,
      ExcludePunctuation: true,
      IncludeSpace: false,
    });
  });

  it('never evicts counters', () => {
    template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', {
      CacheParameterGroupFamily: 'redis7',
      Properties: { 'maxmemory-policy': 'noeviction' },
    });
  });
});

describe('security groups', () => {
  function ingressRules(): Array<{ group: string; rule: Record<string, unknown> }> {
    const rules: Array<{ group: string; rule: Record<string, unknown> }> = [];
    for (const [id, sg] of ofType('AWS::EC2::SecurityGroup')) {
      const inline = (sg.Properties.SecurityGroupIngress ?? []) as Array<Record<string, unknown>>;
      for (const rule of inline) rules.push({ group: id, rule });
    }
    for (const [, r] of ofType('AWS::EC2::SecurityGroupIngress')) {
      rules.push({ group: logicalId(r.Properties.GroupId), rule: r.Properties });
    }
    return rules;
  }

  it('lets only the app instances reach Redis, on 6379', () => {
    const redisSg = idOf(stack.redis!.securityGroup.securityGroupId);
    const appSg = idOf(stack.fleet.appSecurityGroup.securityGroupId);
    const rules = ingressRules().filter((r) => r.group === redisSg);
    expect(rules).toHaveLength(1);
    expect(rules[0]!.rule).toMatchObject({ IpProtocol: 'tcp', FromPort: 6379, ToPort: 6379 });
    expect(logicalId(rules[0]!.rule.SourceSecurityGroupId)).toBe(appSg);
    // allowAllOutbound: false renders the "disallow all" placeholder, never 0.0.0.0/0.
    const egress = JSON.stringify(resources[redisSg]!.Properties.SecurityGroupEgress);
    expect(egress).not.toContain('0.0.0.0/0');
  });

  it('lets only the ALB reach the app, on the app port', () => {
    const appSg = idOf(stack.fleet.appSecurityGroup.securityGroupId);
    const albSg = idOf(stack.fleet.albSecurityGroup.securityGroupId);
    const rules = ingressRules().filter((r) => r.group === appSg);
    expect(rules).toHaveLength(1);
    expect(rules[0]!.rule).toMatchObject({ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080 });
    expect(logicalId(rules[0]!.rule.SourceSecurityGroupId)).toBe(albSg);
  });

  it('opens nothing to the internet but the ALB listener port', () => {
    const albSg = idOf(stack.fleet.albSecurityGroup.securityGroupId);
    const open = ingressRules().filter((r) => r.rule.CidrIp === '0.0.0.0/0');
    expect(open.map((r) => [r.group, r.rule.FromPort])).toEqual([[albSg, 80]]);
    expect(ingressRules().some((r) => r.rule.FromPort === 22)).toBe(false);
    // The ALB may only talk to the instances.
    const albEgress = ofType('AWS::EC2::SecurityGroupEgress').filter(
      ([, r]) => logicalId(r.Properties.GroupId) === albSg,
    );
    expect(albEgress).toHaveLength(1);
    expect(albEgress[0]![1].Properties).toMatchObject({ FromPort: 8080, ToPort: 8080 });
  });
});

describe('load balancer and fleet', () => {
  it('health-checks the instances on GET /readyz', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 8080,
      Protocol: 'HTTP',
      HealthCheckPath: '/readyz',
      Matcher: { HttpCode: '200' },
      HealthyThresholdCount: 2,
      UnhealthyThresholdCount: 3,
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'deregistration_delay.timeout_seconds', Value: '30' },
      ]),
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internet-facing',
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' },
      ]),
    });
  });

  it('keeps /metrics off the public listener', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::ListenerRule', {
      Conditions: [
        { Field: 'path-pattern', PathPatternConfig: { Values: ['/metrics', '/metrics/*'] } },
      ],
      Actions: [Match.objectLike({ Type: 'fixed-response' })],
    });
  });

  it('runs at least two instances, never replaced for a store outage (EC2 health only)', () => {
    const asg = only('AWS::AutoScaling::AutoScalingGroup').Properties;
    // ELB health would follow /readyz, which answers 503 on every instance while Redis is down.
    expect(asg).toMatchObject({ MinSize: '2', MaxSize: '6', HealthCheckType: 'EC2' });
    expect(asg.HealthCheckGracePeriod).toBe(900);
  });

  it('holds terminating instances until the guard on them completes the drain hook', () => {
    const asg = ofType('AWS::AutoScaling::AutoScalingGroup')[0]![0];
    const hook = only('AWS::AutoScaling::LifecycleHook').Properties;
    expect(hook).toMatchObject({
      LifecycleHookName: 'tally-drain',
      LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
      // 100 heartbeat timeouts ≥ 48 h, the most a hook can wait.
      HeartbeatTimeout: 1800,
      DefaultResult: 'CONTINUE',
    });
    expect(logicalId(hook.AutoScalingGroupName)).toBe(asg);
    // The guard (deploy/ec2/tally-lifecycle.sh) may heartbeat and complete on this group only.
    const role = idOf(stack.fleet.role.roleName);
    const drain = ofType('AWS::IAM::Policy').find(([, p]) =>
      JSON.stringify(p.Properties.PolicyDocument).includes('CompleteLifecycleAction'),
    );
    expect(drain).toBeDefined();
    const doc = drain![1].Properties as {
      Roles: unknown[];
      PolicyDocument: { Statement: Array<{ Action: string[]; Resource: unknown }> };
    };
    expect(doc.Roles.map(logicalId)).toEqual([role]);
    expect(doc.PolicyDocument.Statement).toHaveLength(1);
    const statement = doc.PolicyDocument.Statement[0]!;
    expect(statement.Action).toEqual([
      'autoscaling:CompleteLifecycleAction',
      'autoscaling:RecordLifecycleActionHeartbeat',
    ]);
    expect(JSON.stringify(statement.Resource)).toContain(asg);
    // It finds its group's name in the instance metadata tags.
    const data = only('AWS::EC2::LaunchTemplate').Properties.LaunchTemplateData as Record<
      string,
      unknown
    >;
    expect(data.MetadataOptions).toMatchObject({ InstanceMetadataTags: 'enabled' });
  });

  it('waits for a replica before a batch leaves an instance log (TALLY_REDIS_WAIT_REPLICAS=1)', () => {
    const data = only('AWS::EC2::LaunchTemplate').Properties.LaunchTemplateData as Record<
      string,
      unknown
    >;
    // In bootstrap.env; tally-bootstrap copies it into tally.env (test/deploy/bootstrap.test.ts).
    expect(JSON.stringify(data.UserData)).toContain('TALLY_REDIS_WAIT_REPLICAS=1\\n');
  });

  it('launches encrypted, IMDSv2-only instances that bootstrap Tally', () => {
    const data = only('AWS::EC2::LaunchTemplate').Properties.LaunchTemplateData as Record<
      string,
      unknown
    >;
    expect(data.MetadataOptions).toMatchObject({ HttpTokens: 'required' });
    expect(data.BlockDeviceMappings).toEqual([
      expect.objectContaining({
        Ebs: expect.objectContaining({ Encrypted: true, VolumeType: 'gp3' }),
      }),
    ]);
    const userData = JSON.stringify(data.UserData);
    expect(userData).toContain('/usr/local/sbin/tally-bootstrap all');
    expect(userData).toContain('step_codedeploy_agent');
    expect(userData).toContain('TALLY_REDIS_SECRET_ARN=');
    // EC2 rejects user data over 16 KiB; tokens (ARNs, host names) add at most a few hundred bytes.
    expect(userData.length).toBeLessThan(14 * 1024);
  });

  it('renders user data that is valid bash and embeds the bootstrap script verbatim', async () => {
    const data = only('AWS::EC2::LaunchTemplate').Properties.LaunchTemplateData as {
      UserData: { 'Fn::Base64': { 'Fn::Join': [string, unknown[]] } };
    };
    // Stand-ins for the values CloudFormation fills in (region, Redis host, secret ARNs).
    const parts = data.UserData['Fn::Base64']['Fn::Join'][1];
    const script = parts.map((p) => (typeof p === 'string' ? p : 'TOKEN')).join('');
    const dir = tempDir('userdata');
    try {
      const file = join(dir.path, 'user-data.sh');
      writeFileSync(file, script);
      const result = await runScript('bash', ['-n', file], { PATH: process.env.PATH ?? '' });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
    } finally {
      dir.remove();
    }
    const bootstrap = readFileSync(join(REPO, 'deploy/ec2/tally-bootstrap.sh'), 'utf8');
    expect(script).toContain(bootstrap.trimEnd());
    expect(script.startsWith('#!/bin/bash\n')).toBe(true);
  });

  it('lets the CodeDeploy agent poll through the VPC endpoint', () => {
    const role = idOf(stack.fleet.role.roleArn);
    const text = JSON.stringify(
      ofType('AWS::IAM::Policy').filter(([, p]) =>
        JSON.stringify(p.Properties.Roles).includes(role),
      ),
    );
    expect(text).toContain('codedeploy-commands-secure:PollHostCommand');
  });

  it('lets the instances read exactly the secrets they need', () => {
    const role = idOf(stack.fleet.role.roleArn);
    const statements = ofType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(role))
      .flatMap(([, p]) => (p.Properties.PolicyDocument as { Statement: unknown[] }).Statement);
    const secretReads = statements.filter((s) => JSON.stringify(s).includes('GetSecretValue'));
    const text = JSON.stringify(secretReads);
    expect(text).toContain(idOf(stack.redis!.authToken.secretArn));
    expect(text).toContain(idOf(stack.adminToken.secretArn));
    expect(ofType('AWS::SecretsManager::Secret')).toHaveLength(2);
  });

  it('serves HTTPS and redirects HTTP when given a certificate', () => {
    const app = new App();
    const s = new TallyStack(app, 'Https', {
      certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc',
    });
    const t = Template.fromStack(s);
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc' }],
    });
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'redirect' })],
    });
  });
});

describe('logs', () => {
  it('keeps app.log for a month and error.log for three', () => {
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: '/tally/Tally/app',
      RetentionInDays: 30,
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: '/tally/Tally/error',
      RetentionInDays: 90,
    });
  });

  it('ships app.log and error.log and publishes memory and disk metrics', () => {
    const param = only('AWS::SSM::Parameter').Properties;
    expect(param.Name).toBe('/tally/Tally/cloudwatch-agent');
    const config = JSON.parse(param.Value as string);
    const files = config.logs.logs_collected.files.collect_list;
    expect(files).toEqual([
      expect.objectContaining({
        file_path: '/var/log/tally/app.log',
        log_group_name: '/tally/Tally/app',
      }),
      expect.objectContaining({
        file_path: '/var/log/tally/error.log',
        log_group_name: '/tally/Tally/error',
      }),
      // One file per worker when TALLY_WORKERS > 1, each in its own stream.
      expect.objectContaining({
        file_path: '/var/log/tally/w*/app.log',
        log_group_name: '/tally/Tally/app',
        publish_multi_logs: true,
      }),
      expect.objectContaining({
        file_path: '/var/log/tally/w*/error.log',
        log_group_name: '/tally/Tally/error',
        publish_multi_logs: true,
      }),
    ]);
    // The SSM parameter (standard tier) holds at most 4 KiB.
    expect((param.Value as string).length).toBeLessThan(4096);
    expect(config.metrics.metrics_collected.mem.measurement).toContain('mem_used_percent');
    expect(config.metrics.metrics_collected.disk.measurement).toContain('used_percent');
  });

  it('counts flush_failed events of the error log as a metric', () => {
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      LogGroupName: { Ref: idOf(stack.logs.errorLogGroup.logGroupName) },
      FilterPattern: '{ $.event = "flush_failed" }',
      MetricTransformations: [
        Match.objectLike({ MetricNamespace: 'Tally', MetricName: 'FlushFailures' }),
      ],
    });
  });
});

describe('alarms', () => {
  function alarm(construct: { alarmArn: string }): Resource {
    return resources[idOf(construct.alarmArn)]!;
  }

  it('alarms on the 5xx rate from both the targets and the ALB itself', () => {
    const text = JSON.stringify(alarm(stack.alarms.http5xx).Properties.Metrics);
    expect(text).toContain('HTTPCode_Target_5XX_Count');
    expect(text).toContain('HTTPCode_ELB_5XX_Count');
    expect(text).toContain('RequestCount');
    expect(alarm(stack.alarms.http5xx).Properties.Threshold).toBe(1);
  });

  it('alarms on flush failures', () => {
    expect(alarm(stack.alarms.flushFailures).Properties).toMatchObject({
      Namespace: 'Tally',
      MetricName: 'FlushFailures',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
  });

  it('alarms on Redis engine CPU of whichever node is primary', () => {
    const text = JSON.stringify(alarm(stack.alarms.redisCpu!).Properties.Metrics);
    expect(text).toContain('EngineCPUUtilization');
    expect(text).toContain('tally-redis-001');
    expect(text).toContain('tally-redis-002');
    expect(alarm(stack.alarms.redisCpu!).Properties.Threshold).toBe(80);
  });

  it('notifies the SNS topic on alarm and on recovery', () => {
    const topic = idOf(stack.alarms.topic.topicArn);
    const alarms = ofType('AWS::CloudWatch::Alarm');
    expect(alarms).toHaveLength(5);
    for (const [, a] of alarms) {
      expect(a.Properties.AlarmActions).toEqual([{ Ref: topic }]);
      expect(a.Properties.OKActions).toEqual([{ Ref: topic }]);
    }
  });

  it('subscribes an e-mail address when given one', () => {
    const app = new App();
    const s = new TallyStack(app, 'Mail', { alarmEmail: 'ops@example.com' });
    Template.fromStack(s).hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
  });
});

describe('pipeline', () => {
  it('goes source, build, deploy', () => {
    const pipeline = only('AWS::CodePipeline::Pipeline').Properties;
    const stages = pipeline.Stages as Array<{
      Name: string;
      Actions: Array<{ ActionTypeId: { Provider: string } }>;
    }>;
    expect(stages.map((s) => [s.Name, s.Actions[0]!.ActionTypeId.Provider])).toEqual([
      ['Source', 'S3'],
      ['Build', 'CodeBuild'],
      ['Deploy', 'CodeDeploy'],
    ]);
  });

  it('builds on Amazon Linux 2023 and assembles the revision with appspec.yml at its root', () => {
    const project = only('AWS::CodeBuild::Project').Properties;
    expect(project.Environment).toMatchObject({
      Image: 'aws/codebuild/amazonlinux-x86_64-standard:5.0',
    });
    const spec = (project.Source as { BuildSpec: string }).BuildSpec;
    expect(spec).toContain('npm run -s build');
    // The revision is the npm package, assembled by the script test/deploy/artifact.test.ts runs.
    expect(spec).toContain('bash deploy/aws/assemble-revision.sh bundle');
  });

  it('deploys one instance at a time behind the target group and rolls back on alarms', () => {
    const group = only('AWS::CodeDeploy::DeploymentGroup').Properties;
    expect(group).toMatchObject({
      DeploymentConfigName: 'CodeDeployDefault.OneAtATime',
      DeploymentStyle: { DeploymentOption: 'WITH_TRAFFIC_CONTROL' },
      AutoRollbackConfiguration: {
        Enabled: true,
        Events: expect.arrayContaining(['DEPLOYMENT_FAILURE', 'DEPLOYMENT_STOP_ON_ALARM']),
      },
      TerminationHookEnabled: true,
    });
    const alarms = JSON.stringify(group.AlarmConfiguration);
    expect(alarms).toContain(idOf(stack.alarms.http5xx.alarmArn));
    expect(alarms).toContain(idOf(stack.alarms.flushFailures.alarmArn));
    expect(JSON.stringify(group.LoadBalancerInfo)).toContain(
      idOf(stack.fleet.targetGroup.targetGroupArn),
    );
  });

  it('keeps every bucket private, encrypted and TLS-only', () => {
    const buckets = ofType('AWS::S3::Bucket');
    expect(buckets.length).toBeGreaterThanOrEqual(2);
    for (const [id, bucket] of buckets) {
      expect(bucket.Properties.BucketEncryption, id).toBeDefined();
      expect(bucket.Properties.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      const policy = ofType('AWS::S3::BucketPolicy').find(
        ([, p]) => logicalId(p.Properties.Bucket) === id,
      );
      expect(JSON.stringify(policy?.[1].Properties), id).toContain('aws:SecureTransport');
    }
  });

  it('takes the source from GitHub through a CodeStar connection when configured', () => {
    const app = new App();
    const s = new TallyStack(app, 'GitHub', {
      source: {
        kind: 'github',
        connectionArn: 'arn:aws:codeconnections:eu-west-1:123456789012:connection/x',
        owner: 'acme',
        repo: 'tally',
      },
    });
    const t = Template.fromStack(s);
    t.hasResourceProperties('AWS::CodePipeline::Pipeline', {
      Stages: Match.arrayWith([
        Match.objectLike({
          Name: 'Source',
          Actions: [
            Match.objectLike({
              ActionTypeId: Match.objectLike({ Provider: 'CodeStarSourceConnection' }),
              Configuration: Match.objectLike({
                FullRepositoryId: 'acme/tally',
                BranchName: 'main',
              }),
            }),
          ],
        }),
      ]),
    });
  });
});

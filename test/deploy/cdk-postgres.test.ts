// The stack with `store: 'postgres'`: RDS for PostgreSQL instead of ElastiCache, reachable from
// the app instances only, TLS forced, and the instances told how to reach it.
import { App } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { TallyStack } from '../../deploy/aws/lib/tally-stack.js';

type Resource = { Type: string; Properties: Record<string, unknown> };

let stack: TallyStack;
let template: Template;
let resources: Record<string, Resource>;

beforeAll(() => {
  const app = new App();
  stack = new TallyStack(app, 'TallyPg', { store: 'postgres' });
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources as Record<string, Resource>;
});

function ofType(type: string): Resource[] {
  return Object.values(resources).filter((r) => r.Type === type);
}

describe('PostgreSQL store', () => {
  it('has an encrypted Multi-AZ PostgreSQL 16 instance and no ElastiCache', () => {
    expect(ofType('AWS::ElastiCache::ReplicationGroup')).toHaveLength(0);
    template.hasResourceProperties('AWS::RDS::DBInstance', {
      Engine: 'postgres',
      EngineVersion: Match.stringLikeRegexp('^16'),
      MultiAZ: true,
      StorageEncrypted: true,
      PubliclyAccessible: false,
      DeletionProtection: true,
      DBName: 'tally',
      BackupRetentionPeriod: 7,
    });
    expect(stack.redis).toBeUndefined();
    expect(stack.alarms.redisCpu).toBeUndefined();
  });

  it('forces TLS on the server', () => {
    template.hasResourceProperties('AWS::RDS::DBParameterGroup', {
      Parameters: { 'rds.force_ssl': '1' },
    });
  });

  it('lets only the app instances reach it, on 5432', () => {
    const pgSg = stack.resolve(stack.postgres!.securityGroup.securityGroupId) as {
      'Fn::GetAtt': [string, string];
    };
    const appSg = stack.resolve(stack.fleet.appSecurityGroup.securityGroupId) as {
      'Fn::GetAtt': [string, string];
    };
    const rules = ofType('AWS::EC2::SecurityGroupIngress').filter(
      (r) => JSON.stringify(r.Properties.GroupId) === JSON.stringify(pgSg),
    );
    expect(rules).toHaveLength(1);
    expect(rules[0]!.Properties).toMatchObject({ FromPort: 5432, ToPort: 5432, IpProtocol: 'tcp' });
    expect(rules[0]!.Properties.SourceSecurityGroupId).toEqual(appSg);
  });

  it('tells the instances the store and lets them read its credentials', () => {
    const userData = JSON.stringify(stack.resolve(template.toJSON()));
    expect(userData).toContain('TALLY_STORE_KIND=postgres');
    expect(userData).toContain('TALLY_POSTGRES_DB=tally');
    expect(userData).toContain('TALLY_POSTGRES_SECRET_ARN=');
    expect(userData).not.toContain('TALLY_REDIS_HOST=');
    const secretRef = JSON.stringify(stack.resolve(stack.postgres!.secret.secretArn));
    const policies = JSON.stringify(ofType('AWS::IAM::Policy'));
    expect(policies).toContain(secretRef);
  });

  it('alarms on its CPU and free storage', () => {
    expect(stack.alarms.postgresCpu).toBeDefined();
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'FreeStorageSpace',
      Namespace: 'AWS/RDS',
      ComparisonOperator: 'LessThanThreshold',
    });
  });

  it('synthesizes without CDK warnings', () => {
    const annotations = Annotations.fromStack(stack);
    expect(annotations.findWarning('*', Match.anyValue())).toEqual([]);
    expect(annotations.findError('*', Match.anyValue())).toEqual([]);
  });
});

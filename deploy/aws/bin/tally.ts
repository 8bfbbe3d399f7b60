/** @module deploy/aws/bin/tally — CDK app entry: `npm run synth`, `npx cdk deploy`. */
import { App } from 'aws-cdk-lib';
import type { TallySource } from '../lib/pipeline.js';
import { TallyStack } from '../lib/tally-stack.js';

// Settings come from context (`-c key=value` or cdk.json), never from lookups: synth stays
// offline. The stack is environment-agnostic; `cdk deploy` picks account and region from the
// credentials in use.
const app = new App();
const ctx = (key: string): string | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  return typeof value === 'string' && value !== '' ? value : undefined;
};
const int = (key: string): number | undefined => {
  const value = ctx(key);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new Error(`context ${key} must be a whole number, got ${value}`);
  return Number(value);
};

function storeKind(value: string | undefined): 'redis' | 'postgres' | undefined {
  if (value === undefined || value === 'redis' || value === 'postgres') return value;
  throw new Error(`context store must be redis or postgres, got ${value}`);
}

const connectionArn = ctx('githubConnectionArn');
const repository = ctx('githubRepo');
let source: TallySource = { kind: 's3' };
if (connectionArn !== undefined) {
  const [owner, repo] = repository?.split('/') ?? [];
  if (owner === undefined || repo === undefined) {
    throw new Error('context githubRepo must be owner/name when githubConnectionArn is set');
  }
  source = { kind: 'github', connectionArn, owner, repo, branch: ctx('githubBranch') };
}

new TallyStack(app, ctx('stackName') ?? 'Tally', {
  description:
    'Tally counter service: ALB, EC2 Auto Scaling, ElastiCache Redis or RDS PostgreSQL, CodePipeline',
  instanceType: ctx('instanceType'),
  minCapacity: int('minCapacity'),
  maxCapacity: int('maxCapacity'),
  store: storeKind(ctx('store')),
  redisNodeType: ctx('redisNodeType'),
  postgresInstanceType: ctx('postgresInstanceType'),
  certificateArn: ctx('certificateArn'),
  ingressCidr: ctx('ingressCidr'),
  alarmEmail: ctx('alarmEmail'),
  source,
});

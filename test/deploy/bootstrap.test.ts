// `tally-bootstrap env` renders tally.env from Secrets Manager (a stub aws CLI here) the way an
// EC2 instance does at boot and after a token rotation.
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { currentUserAndGroup, REPO, runScript, tempDir } from './helpers.js';

const BOOTSTRAP = join(REPO, 'deploy/ec2/tally-bootstrap.sh');
const REDIS_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:RedisAuth-abc';
const ADMIN_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:Admin-def';

const dirs: Array<{ remove(): void }> = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

function host(secrets: Record<string, string>, settings = true) {
  const dir = tempDir('bootstrap');
  dirs.push(dir);
  const root = join(dir.path, 'root');
  const stub = join(dir.path, 'stub');
  const bin = join(dir.path, 'bin');
  for (const d of [join(root, 'etc/tally'), join(stub, 'secrets'), bin]) {
    mkdirSync(d, { recursive: true });
  }
  for (const tool of ['aws', 'systemctl']) {
    copyFileSync(join(REPO, 'test/deploy/fixtures', tool), join(bin, tool));
    chmodSync(join(bin, tool), 0o755);
  }
  for (const [name, value] of Object.entries(secrets)) {
    writeFileSync(join(stub, 'secrets', name), `${value}\n`);
  }
  if (settings) {
    writeFileSync(
      join(root, 'etc/tally/bootstrap.env'),
      [
        'TALLY_AWS_REGION=eu-west-1',
        'TALLY_REDIS_HOST=master.tally-redis.abc123.euw1.cache.amazonaws.com',
        'TALLY_REDIS_PORT=6379',
        `TALLY_REDIS_SECRET_ARN=${REDIS_ARN}`,
        `TALLY_ADMIN_SECRET_ARN=${ADMIN_ARN}`,
        'TALLY_CW_AGENT_PARAM=/tally/Tally/cloudwatch-agent',
        'TALLY_PORT=8080',
        'TALLY_REDIS_WAIT_REPLICAS=1',
        '',
      ].join('\n'),
    );
  }
  const { user, group } = currentUserAndGroup();
  const run = (step: string) =>
    runScript(BOOTSTRAP, [step], {
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      TALLY_DEPLOY_ROOT: root,
      STUB_DIR: stub,
      TALLY_USER: user,
      TALLY_GROUP: group,
    });
  const envFile = join(root, 'etc/tally/tally.env');
  return { root, stub, run, envFile };
}

describe('tally-bootstrap env', () => {
  it('writes the Redis URL with the AUTH token, TLS and the admin token, readable by root and tally only', async () => {
    const h = host({ 'RedisAuth-abc': 'Zq8aToken', 'Admin-def': 'AdminSecret1' });
    const result = await h.run('env');
    expect(result.code, result.stderr).toBe(0);
    const text = readFileSync(h.envFile, 'utf8');
    expect(text).toContain(
      'TALLY_REDIS_URL=rediss://:Zq8aToken@master.tally-redis.abc123.euw1.cache.amazonaws.com:6379\n',
    );
    expect(text).toContain('TALLY_STORE=redis\n');
    expect(text).toContain('TALLY_HOST=0.0.0.0\n');
    expect(text).toContain('TALLY_PORT=8080\n');
    expect(text).toContain('TALLY_ADMIN_TOKEN=AdminSecret1\n');
    expect(text).toContain('TALLY_LOG_DIR=/var/log/tally\n');
    // From the stack (deploy/aws/lib/fleet.ts): batches wait for a replica.
    expect(text).toContain('TALLY_REDIS_WAIT_REPLICAS=1\n');
    expect(statSync(h.envFile).mode & 0o777).toBe(0o640);
    // No temp file left beside it, and the token never reaches the output.
    expect(readdirSync(join(h.root, 'etc/tally')).sort()).toEqual(['bootstrap.env', 'tally.env']);
    expect(result.stdout + result.stderr).not.toContain('Zq8aToken');
    // Re-rendering restarts Tally only if it runs.
    expect(readFileSync(join(h.stub, 'calls.log'), 'utf8')).toBe('try-restart tally.service\n');
  });

  it('percent-encodes a token with URL metacharacters', async () => {
    const h = host({ 'RedisAuth-abc': 'a:b#c%d?e', 'Admin-def': 'x' });
    const result = await h.run('env');
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(h.envFile, 'utf8')).toContain('rediss://:a%3Ab%23c%25d%3Fe@master.');
  });

  it('fails, leaving the old env file, when a secret cannot be read', async () => {
    const h = host({ 'Admin-def': 'x' });
    writeFileSync(h.envFile, 'TALLY_STORE=redis\n# previous\n');
    const result = await h.run('env');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot read the Redis AUTH token');
    expect(readFileSync(h.envFile, 'utf8')).toBe('TALLY_STORE=redis\n# previous\n');
  });

  it('writes the PostgreSQL URL from the RDS credentials, with TLS, for the postgres store', async () => {
    const h = host({
      'RdsCreds-xyz': JSON.stringify({
        username: 'tally',
        password: 'p@ss:w/rd',
        engine: 'postgres',
      }),
      'Admin-def': 'AdminSecret1',
    });
    writeFileSync(
      join(h.root, 'etc/tally/bootstrap.env'),
      [
        'TALLY_AWS_REGION=eu-west-1',
        'TALLY_STORE_KIND=postgres',
        'TALLY_POSTGRES_HOST=tally-db.abc.eu-west-1.rds.amazonaws.com',
        'TALLY_POSTGRES_PORT=5432',
        'TALLY_POSTGRES_DB=tally',
        'TALLY_POSTGRES_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:RdsCreds-xyz',
        `TALLY_ADMIN_SECRET_ARN=${ADMIN_ARN}`,
        'TALLY_PORT=8080',
        '',
      ].join('\n'),
    );
    const result = await h.run('env');
    expect(result.code, result.stderr).toBe(0);
    const text = readFileSync(h.envFile, 'utf8');
    expect(text).toContain('TALLY_STORE=postgres\n');
    expect(text).toContain(
      'TALLY_POSTGRES_URL=postgres://tally:p%40ss%3Aw%2Frd@tally-db.abc.eu-west-1.rds.amazonaws.com:5432/tally\n',
    );
    expect(text).toContain('TALLY_POSTGRES_SSL=require\n');
    expect(text).toContain('TALLY_ADMIN_TOKEN=AdminSecret1\n');
    expect(text).not.toContain('TALLY_REDIS');
    expect(result.stdout + result.stderr).not.toContain('p@ss');
  });

  it('refuses PostgreSQL credentials without a password, leaving the old env file', async () => {
    const h = host({ 'RdsCreds-xyz': JSON.stringify({ username: 'tally' }), 'Admin-def': 'x' });
    writeFileSync(
      join(h.root, 'etc/tally/bootstrap.env'),
      [
        'TALLY_AWS_REGION=eu-west-1',
        'TALLY_STORE_KIND=postgres',
        'TALLY_POSTGRES_HOST=db',
        'TALLY_POSTGRES_PORT=5432',
        'TALLY_POSTGRES_DB=tally',
        'TALLY_POSTGRES_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:1:secret:RdsCreds-xyz',
        `TALLY_ADMIN_SECRET_ARN=${ADMIN_ARN}`,
        '',
      ].join('\n'),
    );
    writeFileSync(h.envFile, '# previous\n');
    const result = await h.run('env');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('lack username or password');
    expect(readFileSync(h.envFile, 'utf8')).toBe('# previous\n');
  });

  it('names the missing settings file', async () => {
    const h = host({}, false);
    const result = await h.run('env');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('bootstrap.env is missing');
  });

  it('rejects an unknown step with its usage', async () => {
    const h = host({});
    const result = await h.run('nonsense');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('usage: tally-bootstrap all|');
  });
});

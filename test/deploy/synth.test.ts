// `cdk synth` through the CLI, the way an operator runs it: offline, without AWS credentials.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO, runScript, tempDir } from './helpers.js';

const dirs: Array<{ remove(): void }> = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

describe('cdk synth', () => {
  it('prints the template with no network and no credentials', async () => {
    const dir = tempDir('synth');
    dirs.push(dir);
    const out = join(dir.path, 'cdk.out');
    const tsx = join(REPO, 'node_modules/.bin/tsx');
    const app = `${tsx} ${join(REPO, 'deploy/aws/bin/tally.ts')}`;
    const result = await runScript(
      join(REPO, 'node_modules/.bin/cdk'),
      ['synth', '--app', app, '--output', out, '--no-notices', '--no-version-reporting'],
      {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: dir.path,
        // Any attempt to reach AWS or the internet goes to a closed local port and fails.
        HTTP_PROXY: 'http://127.0.0.1:9',
        HTTPS_PROXY: 'http://127.0.0.1:9',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_CONFIG_FILE: join(dir.path, 'none'),
        AWS_SHARED_CREDENTIALS_FILE: join(dir.path, 'none'),
        CDK_DISABLE_CLI_TELEMETRY: 'true',
      },
      120_000,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('AWS::ElastiCache::ReplicationGroup');
    expect(result.stdout).toContain('AWS::CodeDeploy::DeploymentGroup');
    expect(readdirSync(out)).toContain('Tally.template.json');
    // A context lookup would have been recorded here.
    expect(existsSync(join(dir.path, 'cdk.context.json'))).toBe(false);
  }, 120_000);
});

// Every shell script passes shellcheck; the appspec names executable hook scripts that follow
// the house rules (bash, strict mode).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, requireTool, runScript } from './helpers.js';

/** Shell scripts under deploy/ and the test doubles: by extension or by a shell shebang. */
function shellScripts(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'cdk.out') walk(path);
      } else if (
        entry.name.endsWith('.sh') ||
        /^#!.*\b(bash|sh)\b/.test(readFileSync(path, 'utf8').slice(0, 64))
      ) {
        found.push(path);
      }
    }
  };
  walk(join(REPO, 'deploy'));
  walk(join(REPO, 'test/deploy/fixtures'));
  return found.sort();
}

/** Hook name → script path, from appspec.yml. */
function appspecHooks(): Map<string, { location: string; timeout: number; runas: string }> {
  const hooks = new Map<string, { location: string; timeout: number; runas: string }>();
  const text = readFileSync(join(REPO, 'deploy/codedeploy/appspec.yml'), 'utf8');
  const pattern =
    /^ {2}(\w+):\n(?: +#.*\n)*\s+- location: (\S+)\n\s+timeout: (\d+)\n\s+runas: (\w+)/gm;
  for (const m of text.matchAll(pattern)) {
    hooks.set(m[1]!, { location: m[2]!, timeout: Number(m[3]), runas: m[4]! });
  }
  return hooks;
}

describe('shell scripts', () => {
  it('finds the hook scripts, the bootstrap and the test doubles', () => {
    const names = shellScripts().map((p) => relative(REPO, p));
    expect(names).toEqual(
      expect.arrayContaining([
        'deploy/codedeploy/scripts/application-stop.sh',
        'deploy/codedeploy/scripts/validate-service.sh',
        'deploy/ec2/tally-bootstrap.sh',
        'test/deploy/fixtures/systemctl',
        'test/deploy/fixtures/aws',
      ]),
    );
  });

  it('all pass shellcheck', async () => {
    const tool = requireTool('shellcheck', 'shellcheck');
    const scripts = shellScripts();
    const result = await runScript(
      tool,
      ['--external-sources', '--severity=style', '--format=gcc', ...scripts],
      { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    );
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('are executable bash in strict mode (sourced helpers excepted)', () => {
    for (const path of shellScripts()) {
      const text = readFileSync(path, 'utf8');
      if (path.endsWith('common.sh')) {
        expect(statSync(path).mode & 0o111, path).toBe(0);
        continue;
      }
      expect(text.startsWith('#!/usr/bin/env bash\n'), path).toBe(true);
      expect(text, path).toMatch(/^set -euo pipefail$/m);
      expect(statSync(path).mode & 0o100, path).not.toBe(0);
    }
  });
});

describe('appspec.yml', () => {
  it('wires all five hooks to existing scripts, run as root with bounded timeouts', () => {
    const hooks = appspecHooks();
    expect([...hooks.keys()]).toEqual([
      'ApplicationStop',
      'BeforeInstall',
      'AfterInstall',
      'ApplicationStart',
      'ValidateService',
    ]);
    for (const [name, hook] of hooks) {
      const path = join(REPO, hook.location);
      expect(statSync(path).isFile(), name).toBe(true);
      expect(hook.runas, name).toBe('root');
      expect(hook.timeout, name).toBeGreaterThan(0);
      expect(hook.timeout, name).toBeLessThanOrEqual(3600);
    }
    // ValidateService gives up on its own (60 s default) before CodeDeploy kills it.
    expect(hooks.get('ValidateService')!.timeout).toBeGreaterThan(60);
  });

  it('installs the revision into the staging directory the hooks read', () => {
    const text = readFileSync(join(REPO, 'deploy/codedeploy/appspec.yml'), 'utf8');
    expect(text).toMatch(/^version: 0\.0$/m);
    expect(text).toMatch(/^os: linux$/m);
    expect(text).toMatch(/- source: \/\n\s+destination: \/opt\/tally\/staging/);
    const common = readFileSync(join(REPO, 'deploy/codedeploy/scripts/common.sh'), 'utf8');
    expect(common).toContain('staging_dir="$app_dir/staging"');
    expect(common).toContain('app_dir="$deploy_root/opt/tally"');
  });
});

// The systemd unit passes `systemd-analyze verify`, scores well on `systemd-analyze security`
// and carries the settings a clean, hardened redeploy depends on.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, requireTool, runScript } from './helpers.js';

const UNIT = join(REPO, 'deploy/systemd/tally.service');

/** Every `Key=value` of a section, in order (keys may repeat). */
function section(name: string): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  let current = '';
  for (const raw of readFileSync(UNIT, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== name) continue;
    const eq = line.indexOf('=');
    entries.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return entries;
}

function value(sectionName: string, key: string): string | undefined {
  return section(sectionName).find(([k]) => k === key)?.[1];
}

describe('tally.service', () => {
  it('passes systemd-analyze verify without a single warning', async () => {
    const tool = requireTool('systemd-analyze', 'systemd');
    const result = await runScript(tool, ['verify', '--man=no', UNIT], {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('has an exposure score of at most 2.0 ("OK") in systemd-analyze security', async () => {
    const tool = requireTool('systemd-analyze', 'systemd');
    const result = await runScript(
      tool,
      ['security', '--offline=yes', '--threshold=20', '--no-pager', UNIT],
      { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    );
    const score = /Overall exposure level for tally\.service: ([\d.]+)/.exec(result.stdout);
    expect(score, result.stdout + result.stderr).not.toBeNull();
    expect(Number(score![1])).toBeLessThanOrEqual(2.0);
    expect(result.code).toBe(0);
  });

  it('runs the built server as the unprivileged tally user and restarts it on failure', () => {
    expect(value('Service', 'User')).toBe('tally');
    expect(value('Service', 'Group')).toBe('tally');
    expect(value('Service', 'ExecStart')).toBe(
      '/usr/bin/node /opt/tally/current/dist/main.js serve',
    );
    expect(value('Service', 'Restart')).toBe('on-failure');
    expect(value('Service', 'EnvironmentFile')).toBe('/etc/tally/tally.env');
  });

  it('stops with SIGTERM and waits longer than the drain timeout before SIGKILL', () => {
    expect(value('Service', 'KillSignal')).toBe('SIGTERM');
    // Only the primary gets systemd's SIGTERM; it forwards one to each worker. A worker handles
    // SIGTERM once, so a second one (KillMode=control-group) would end its drain early.
    expect(value('Service', 'KillMode')).toBe('mixed');
    const stopTimeout = Number.parseInt(value('Service', 'TimeoutStopSec') ?? '', 10);
    // TALLY_DRAIN_TIMEOUT_MS defaults to 10 s; the final flush must fit with room to spare.
    expect(stopTimeout).toBeGreaterThanOrEqual(20);
    // The CodeDeploy ApplicationStop hook must outlast systemd's stop timeout.
    const appspec = readFileSync(join(REPO, 'deploy/codedeploy/appspec.yml'), 'utf8');
    const hookTimeout = /application-stop\.sh\s+timeout: (\d+)/.exec(appspec);
    expect(Number(hookTimeout?.[1])).toBeGreaterThan(stopTimeout);
  });

  it('is hardened and may write only to its data and log directories', () => {
    const service = Object.fromEntries(section('Service'));
    expect(service).toMatchObject({
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      CapabilityBoundingSet: '',
      ReadWritePaths: '/var/lib/tally /var/log/tally',
    });
    expect(section('Service').filter(([k]) => k === 'ReadWritePaths')).toHaveLength(1);
    // V8's JIT needs writable and executable memory.
    expect(service.MemoryDenyWriteExecute).toBeUndefined();
  });
});

describe('tally-lifecycle.service', () => {
  it('passes systemd-analyze verify and runs the guard from the live release, always restarted', async () => {
    const tool = requireTool('systemd-analyze', 'systemd');
    const unit = join(REPO, 'deploy/systemd/tally-lifecycle.service');
    const result = await runScript(tool, ['verify', '--man=no', unit], {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const text = readFileSync(unit, 'utf8');
    expect(text).toContain(
      'ExecStart=/usr/bin/bash /opt/tally/current/deploy/ec2/tally-lifecycle.sh watch\n',
    );
    expect(text).toContain('Restart=always\n');
  });
});

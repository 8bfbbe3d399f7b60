#!/usr/bin/env node
/** @module main — the `tally` command: `serve` runs the server, the rest are HTTP clients. */
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { type ImportFlags, importCommand } from './cli/import.js';
import { backupSqlite, doctor, installService } from './cli/ops.js';
import { TallyApiError, TallyClient } from './client/index.js';
import { ConfigError, type ConfigInput, loadConfig, SETTINGS } from './config.js';
import { StartRefusedError } from './errors.js';
import { serve } from './serve.js';
import { VERSION } from './version.js';

const program = new Command('tally')
  .description('Tally: a high-throughput counter service')
  .version(VERSION, '-V, --version', 'print the version')
  .showHelpAfterError();

const serveCmd = program
  .command('serve')
  .description('run the server (config from TALLY_* environment variables; flags win)');
for (const [key, setting] of Object.entries(SETTINGS)) {
  serveCmd.option(`--${kebab(key)} <value>`, `${setting.doc} [${setting.env}]`);
}
serveCmd.action(async (flags: Record<string, string>) => {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env, flags as ConfigInput);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tally: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  try {
    await serve(config);
  } catch (err) {
    // Refusals that say what to do: no stack trace, a non-zero exit.
    if (err instanceof StartRefusedError) {
      process.stderr.write(`tally: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
});

const jsonOption = ['--json', 'print the answer as JSON'] as const;

const urlOption = [
  '--url <url>',
  'server URL',
  process.env.TALLY_URL ?? 'http://127.0.0.1:8080',
] as const;

program
  .command('get <name>')
  .description('print a counter value')
  .option(...urlOption)
  .option('--strong', 'flush the server’s pending increments first')
  .option(...jsonOption)
  .action((name: string, o: { url: string; strong?: boolean; json?: boolean }) =>
    run(o, async () => {
      const r = await client(o).get(name, { consistency: o.strong ? 'strong' : 'eventual' });
      return [String(r.value), r];
    }),
  );

program
  .command('inc <name> [by]')
  .description('add to a counter (default 1; negative subtracts)')
  .option(...urlOption)
  .option('--strong', 'wait until the store holds it')
  .option(...jsonOption)
  .action(
    (name: string, by: string | undefined, o: { url: string; strong?: boolean; json?: boolean }) =>
      run(o, async () => {
        const amount = by === undefined ? 1 : integer(by);
        const value = await client(o).increment(name, amount, {
          consistency: o.strong ? 'strong' : 'eventual',
        });
        return [String(value), { name, value }];
      }),
  );

program
  .command('set <name> <value>')
  .description('overwrite a counter (admin; token from TALLY_ADMIN_TOKEN or --token)')
  .option(...urlOption)
  .option('--token <token>', 'admin token', process.env.TALLY_ADMIN_TOKEN)
  .option(...jsonOption)
  .action((name: string, value: string, o: { url: string; token?: string; json?: boolean }) =>
    run(o, async () => {
      const stored = await client(o).set(name, integer(value));
      return [String(stored), { name, value: stored }];
    }),
  );

program
  .command('delete <name>')
  .description('delete a counter (admin; token from TALLY_ADMIN_TOKEN or --token)')
  .option(...urlOption)
  .option('--token <token>', 'admin token', process.env.TALLY_ADMIN_TOKEN)
  .option(...jsonOption)
  .action((name: string, o: { url: string; token?: string; json?: boolean }) =>
    run(o, async () => {
      const deleted = await client(o).delete(name);
      return [deleted ? 'deleted' : 'not found', { name, deleted }];
    }),
  );

program
  .command('list [prefix]')
  .description('list counters and values, one "name value" per line')
  .option(...urlOption)
  .option('--limit <n>', 'page size (1-1000)', '1000')
  .option(...jsonOption)
  .action((prefix: string | undefined, o: { url: string; limit: string; json?: boolean }) =>
    run(o, async () => {
      const lines: string[] = [];
      const items: { name: string; value: number }[] = [];
      const pageSize = Number(o.limit);
      for await (const item of client(o).list({ prefix: prefix ?? '', pageSize })) {
        lines.push(`${item.name} ${item.value}`);
        items.push({ name: item.name, value: item.value });
      }
      return [lines.join('\n'), { items }];
    }),
  );

program
  .command('import <file>')
  .description(
    'set counters from a CSV or JSON list, e.g. values collected from CountAPI or Abacus ("-" reads stdin; admin)',
  )
  .option(...urlOption)
  .option('--token <token>', 'admin token', process.env.TALLY_ADMIN_TOKEN)
  .option('--format <format>', 'csv or json (default: from the extension, else the content)')
  .option('--dry-run', 'print what would change and write nothing')
  .option('--concurrency <n>', 'counters read and set at once (1-64)', '8')
  .action(async (file: string, o: ImportFlags) => {
    process.exitCode = await importCommand(file, o);
  });

/**
 * Runs a client command: prints its text, or with `--json` its answer as one JSON line (errors
 * too, as `{"error":{"code","message"}}` on stderr); exit code 1 on an error.
 */
program
  .command('backup <file>')
  .description('copy the SQLite database while Tally runs (online backup API), then check the copy')
  .option(
    '--sqlite-path <path>',
    'the database',
    process.env.TALLY_SQLITE_PATH ?? './data/tally.db',
  )
  .option(...jsonOption)
  .action((file: string, o: { sqlitePath: string; json?: boolean }) =>
    run(o, async () => {
      try {
        const r = await backupSqlite(o.sqlitePath, file);
        return [`${r.destination}: ${r.counters} counters, ${r.bytes} bytes`, r];
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
    }),
  );

program
  .command('install-service')
  .description('write the systemd unit and /etc/tally/tally.env for this installation')
  .option('--root <dir>', 'prefix for the files written', '/')
  .option('--user <user>', 'the account the service runs as', 'tally')
  .option('--data-dir <dir>', 'data directory (SQLite file, write-ahead log)', '/var/lib/tally')
  .option('--log-dir <dir>', 'log directory', '/var/log/tally')
  .action((o: { root: string; user: string; dataDir: string; logDir: string }) =>
    run({}, async () => {
      const main = fileURLToPath(new URL('./main.js', import.meta.url));
      const written = installService({ ...o, node: process.execPath, main });
      const lines = written.map((f) => `wrote ${f}`);
      lines.push(
        '',
        'next, as root:',
        `  useradd --system --home-dir ${o.dataDir} --shell /usr/sbin/nologin ${o.user}`,
        `  install -d -o ${o.user} -g ${o.user} -m 0750 ${o.dataDir} ${o.logDir}`,
        '  systemctl daemon-reload && systemctl enable --now tally',
      );
      return [lines.join('\n'), { written }];
    }),
  );

program
  .command('openapi')
  .description('print the OpenAPI 3.1 document (what GET /openapi.json answers), no server needed')
  .action(async () => {
    // Loaded here, not at the top: the other commands start without the server's modules.
    const [{ buildApp }, { createLogger }, { Metrics }, { MemoryStore }] = await Promise.all([
      import('./app.js'),
      import('./obs/logger.js'),
      import('./obs/metrics.js'),
      import('./store/memory/index.js'),
    ]);
    // This environment's settings shape the document (TALLY_COMPAT_ROOT adds routes); nothing is
    // stored, logged or listened on.
    const config = loadConfig(process.env, { wal: false, logFiles: false });
    const { logger } = createLogger({ level: 'silent', stdout: false });
    const tally = await buildApp(config, {
      store: new MemoryStore(),
      logger,
      instanceId: 'openapi',
      metrics: new Metrics({ defaultMetrics: false }),
    });
    // `tally openapi | head` closes the pipe early: that is not an error.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
    try {
      process.stdout.write(`${JSON.stringify(tally.openapi(), null, 2)}\n`);
    } finally {
      await tally.close();
    }
  });

program
  .command('doctor')
  .description('check what running Tally here and `npm test` need, and say what to install')
  .option(...jsonOption)
  .action(async (o: { json?: boolean }) => {
    const config = loadConfig(process.env, {});
    const checks = await doctor({ host: config.host, port: config.port, dataDir: config.dataDir });
    const failing = checks.filter((c) => !c.ok && c.forTests !== true);
    if (o.json) process.stdout.write(`${JSON.stringify({ ok: failing.length === 0, checks })}\n`);
    else {
      for (const c of checks) {
        const mark = c.ok ? 'ok  ' : c.forTests ? 'test' : 'FAIL';
        process.stdout.write(
          `${mark}  ${c.name.padEnd(16)} ${c.detail}${c.ok || c.fix === undefined ? '' : `\n      → ${c.fix}`}\n`,
        );
      }
    }
    // Tools only the test suite needs are reported, not failed: a server runs without them.
    process.exitCode = failing.length === 0 ? 0 : 1;
  });

async function run(o: { json?: boolean }, fn: () => Promise<[string, unknown]>): Promise<void> {
  try {
    const [text, json] = await fn();
    if (o.json) process.stdout.write(`${JSON.stringify(json)}\n`);
    else if (text !== '') process.stdout.write(`${text}\n`);
  } catch (err) {
    if (err instanceof TallyApiError || err instanceof InvalidArgumentError) {
      const code = err instanceof InvalidArgumentError ? 'INVALID_ARGUMENT' : err.code;
      if (o.json) {
        process.stderr.write(`${JSON.stringify({ error: { code, message: err.message } })}\n`);
      } else {
        const shown = err instanceof InvalidArgumentError ? '' : ` (${err.code})`;
        process.stderr.write(`tally: ${err.message}${shown}\n`);
      }
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

/** The one HTTP client (src/client) the commands share: a few retries for what is safe. */
function client(o: { url: string; token?: string }): TallyClient {
  return new TallyClient({
    baseUrl: o.url,
    attempts: 3,
    ...(o.token === undefined ? {} : { token: o.token }),
  });
}

function integer(s: string): number {
  if (!/^-?\d+$/.test(s)) throw new InvalidArgumentError(`not an integer: ${s}`);
  return Number(s);
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

await program.parseAsync(process.argv);

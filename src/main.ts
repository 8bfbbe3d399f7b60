#!/usr/bin/env node
/** @module main — the `tally` command: `serve` runs the server, the rest are HTTP clients. */
import { Command, InvalidArgumentError } from 'commander';
import { ClientError, call, counterPath } from './cli/client.js';
import { type ImportFlags, importCommand } from './cli/import.js';
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
  .action((name: string, o: { url: string; strong?: boolean }) =>
    run(async () => {
      const q = o.strong ? '?consistency=strong' : '';
      const r = (await call(o, 'GET', counterPath(name) + q)) as { value: number };
      return String(r.value);
    }),
  );

program
  .command('inc <name> [by]')
  .description('add to a counter (default 1; negative subtracts)')
  .option(...urlOption)
  .option('--strong', 'wait until the store holds it')
  .action((name: string, by: string | undefined, o: { url: string; strong?: boolean }) =>
    run(async () => {
      const q = o.strong ? '?consistency=strong' : '';
      const body = by === undefined ? undefined : { by: integer(by) };
      const r = (await call(o, 'POST', counterPath(name, '/increment') + q, body)) as {
        value: number;
      };
      return String(r.value);
    }),
  );

program
  .command('set <name> <value>')
  .description('overwrite a counter (admin; token from TALLY_ADMIN_TOKEN or --token)')
  .option(...urlOption)
  .option('--token <token>', 'admin token', process.env.TALLY_ADMIN_TOKEN)
  .action((name: string, value: string, o: { url: string; token?: string }) =>
    run(async () => {
      const r = (await call(o, 'PUT', counterPath(name), { value: integer(value) })) as {
        value: number;
      };
      return String(r.value);
    }),
  );

program
  .command('delete <name>')
  .description('delete a counter (admin; token from TALLY_ADMIN_TOKEN or --token)')
  .option(...urlOption)
  .option('--token <token>', 'admin token', process.env.TALLY_ADMIN_TOKEN)
  .action((name: string, o: { url: string; token?: string }) =>
    run(async () => {
      const r = (await call(o, 'DELETE', counterPath(name))) as { deleted: boolean };
      return r.deleted ? 'deleted' : 'not found';
    }),
  );

program
  .command('list [prefix]')
  .description('list counters and values, one "name value" per line')
  .option(...urlOption)
  .option('--limit <n>', 'page size (1-1000)', '1000')
  .action((prefix: string | undefined, o: { url: string; limit: string }) =>
    run(async () => {
      const lines: string[] = [];
      let cursor: string | null = null;
      do {
        const q = new URLSearchParams({ prefix: prefix ?? '', limit: o.limit });
        if (cursor !== null) q.set('cursor', cursor);
        const page = (await call(o, 'GET', `/api/v1/counters?${q}`)) as {
          items: { name: string; value: number }[];
          nextCursor: string | null;
        };
        for (const item of page.items) lines.push(`${item.name} ${item.value}`);
        cursor = page.nextCursor;
      } while (cursor !== null);
      return lines.join('\n');
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

async function run(fn: () => Promise<string>): Promise<void> {
  try {
    const out = await fn();
    if (out !== '') process.stdout.write(`${out}\n`);
  } catch (err) {
    if (err instanceof ClientError || err instanceof InvalidArgumentError) {
      const code = err instanceof ClientError ? ` (${err.code})` : '';
      process.stderr.write(`tally: ${err.message}${code}\n`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

function integer(s: string): number {
  if (!/^-?\d+$/.test(s)) throw new InvalidArgumentError(`not an integer: ${s}`);
  return Number(s);
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

await program.parseAsync(process.argv);

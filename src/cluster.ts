/** @module cluster — `tally serve`: one process, or N workers sharing the port (node:cluster). */
import type { Config } from './config.js';
import { runServer } from './server.js';

/** Serves with the configured number of processes. */
export async function serve(config: Config): Promise<void> {
  const { url } = await runServer(config);
  process.stdout.write(`Tally listening on ${url}\n`);
}

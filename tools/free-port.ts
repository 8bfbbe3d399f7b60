/** @module tools/free-port — a loopback TCP port nothing listens on, for tests and the bench. */
import { createServer } from 'node:net';

/** A port on 127.0.0.1 nothing listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      if (address === null || typeof address === 'string') {
        probe.close();
        reject(new Error('no TCP port was assigned'));
        return;
      }
      probe.close(() => resolve(address.port));
    });
  });
}

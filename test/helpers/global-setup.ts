// Builds dist/ once, with `npm run build` itself (TypeScript, then the web pages into dist/web),
// so tests that spawn real server processes run what users and the package run.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
}

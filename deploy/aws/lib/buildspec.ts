/** @module deploy/aws/buildspec — the CodeBuild buildspec that turns the repository into a revision. */

/** Where the build assembles the CodeDeploy revision, relative to the source root. */
export const BUNDLE_DIR = 'bundle';

/**
 * Checks and builds Tally, then assembles the revision CodeDeploy copies to /opt/tally/staging
 * with deploy/aws/assemble-revision.sh: the files of the package `npm pack` makes (dist/ with the
 * web pages, deploy/codedeploy/, deploy/systemd/, deploy/ec2/tally-lifecycle.sh, docs/,
 * package.json), appspec.yml at the root, and production node_modules. The same script builds
 * the revision test/deploy/artifact.test.ts starts.
 *
 * node_modules is installed here, on an Amazon Linux 2023 x86_64 image, so the native SQLite
 * module matches the instances and they never need npm or the internet.
 */
export function tallyBuildSpec(): Record<string, unknown> {
  return {
    version: '0.2',
    env: { variables: { NODE_ENV: 'development', CI: 'true' } },
    phases: {
      install: {
        'runtime-versions': { nodejs: 20 },
        commands: ['node --version', 'npm ci --no-audit --no-fund'],
      },
      pre_build: {
        commands: ['npm run -s lint', 'npm run -s typecheck'],
      },
      build: {
        commands: ['npm run -s build'],
      },
      post_build: {
        commands: [
          `bash deploy/aws/assemble-revision.sh ${BUNDLE_DIR}`,
          `test -f ${BUNDLE_DIR}/appspec.yml -a -f ${BUNDLE_DIR}/dist/web/counter.html`,
        ],
      },
    },
    artifacts: {
      'base-directory': BUNDLE_DIR,
      files: ['**/*'],
      'enable-symlinks': 'yes',
    },
    cache: { paths: ['/root/.npm/**/*'] },
  };
}

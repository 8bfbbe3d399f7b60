/** @module deploy/aws/buildspec — the CodeBuild buildspec that turns the repository into a revision. */

/** Where the build assembles the CodeDeploy revision, relative to the source root. */
export const BUNDLE_DIR = 'bundle';

/**
 * Checks and builds Tally, then assembles the revision CodeDeploy copies to /opt/tally/staging:
 *
 * ```
 * appspec.yml                        (from deploy/codedeploy/)
 * dist/  node_modules/ (production)  package.json  package-lock.json
 * deploy/codedeploy/scripts/  deploy/systemd/tally.service  docs/deploying.md
 * ```
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
          `rm -rf ${BUNDLE_DIR} && mkdir -p ${BUNDLE_DIR}/deploy ${BUNDLE_DIR}/docs`,
          `cp -a dist package.json package-lock.json ${BUNDLE_DIR}/`,
          `cp deploy/codedeploy/appspec.yml ${BUNDLE_DIR}/appspec.yml`,
          `cp -a deploy/codedeploy deploy/systemd ${BUNDLE_DIR}/deploy/`,
          // CodeDeploy executes the hooks directly; never trust the archive to keep the x bit.
          `chmod 0755 ${BUNDLE_DIR}/deploy/codedeploy/scripts/*.sh`,
          `cp docs/deploying.md ${BUNDLE_DIR}/docs/`,
          `cd ${BUNDLE_DIR} && npm ci --omit=dev --no-audit --no-fund && cd ..`,
          `test -f ${BUNDLE_DIR}/dist/main.js`,
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

#!/usr/bin/env bash
# Assembles the CodeDeploy revision from the package `npm pack` makes, so the deployed files are
# the package's and nothing else: CodeBuild runs it (deploy/aws/lib/buildspec.ts), and
# test/deploy/artifact.test.ts runs it too, then starts the result with the systemd unit's
# command line.
#
# Usage: assemble-revision.sh <dir>     (after `npm run build`; <dir> is replaced)
#   <dir>/           the package's files (dist/ with the web pages, deploy/, docs/, package.json)
#   <dir>/appspec.yml                    CodeDeploy reads it at the revision's root
#   <dir>/node_modules/                  production dependencies from package-lock.json, built
#                                        here so instances never need npm or the internet
set -euo pipefail

out="${1:?usage: assemble-revision.sh <dir>}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
[[ -f dist/main.js && -f dist/web/counter.html ]] ||
  { echo "assemble-revision: dist/ is incomplete; run npm run build first" >&2; exit 1; }

packed="$(mktemp -d)"
trap 'rm -rf "$packed"' EXIT
npm pack --silent --pack-destination "$packed" >/dev/null
tarball="$(find "$packed" -maxdepth 1 -name '*.tgz' | head -n 1)"
[[ -n "$tarball" ]] || { echo "assemble-revision: npm pack made no tarball" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
tar -xzf "$tarball" -C "$out" --strip-components=1
cp package-lock.json "$out/"
cp "$out/deploy/codedeploy/appspec.yml" "$out/appspec.yml"
# CodeDeploy and systemd execute these directly; never trust the archive to keep the x bit.
chmod 0755 "$out"/deploy/codedeploy/scripts/*.sh "$out"/deploy/ec2/*.sh
(cd "$out" && npm ci --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error)
echo "assemble-revision: $(basename "$tarball") assembled in $out"

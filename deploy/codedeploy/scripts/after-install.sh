#!/usr/bin/env bash
# CodeDeploy AfterInstall: turn the staged revision into a release directory, point the
# `current` symlink at it, install the systemd unit and prune old releases.
#
# Layout: /opt/tally/releases/<deployment id>/ holds each revision, /opt/tally/current points at
# the live one, so a manual rollback is one `ln -sfn` and a restart.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

keep="${TALLY_KEEP_RELEASES:-3}"
release_id="${DEPLOYMENT_ID:-manual-$(date -u +%Y%m%dT%H%M%SZ)}"
[[ "$release_id" =~ ^[A-Za-z0-9._-]+$ ]] || die "unsafe release id: $release_id"
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "TALLY_KEEP_RELEASES must be a positive integer"
[[ -f "$staging_dir/dist/main.js" ]] ||
  die "$staging_dir/dist/main.js is missing: the revision must be the bundle CodeBuild produces"
[[ -f "$staging_dir/deploy/systemd/tally.service" ]] ||
  die "$staging_dir/deploy/systemd/tally.service is missing from the revision"

release_dir="$releases_dir/$release_id"
partial="$release_dir.partial"
# Copy into a scratch directory first so a failed copy never leaves a half release behind;
# re-running the hook for the same deployment replaces its release from scratch.
rm -rf "$partial"
install -d -m 0755 "$partial"
cp -a "$staging_dir/." "$partial/"
rm -rf "$release_dir"
mv "$partial" "$release_dir"
touch "$release_dir"
log "release $release_id installed"

# Relative target, swapped with rename(2) so `current` is never missing or half-written.
ln -sfn "releases/$release_id" "$app_dir/.current.new"
mv -Tf "$app_dir/.current.new" "$current_link"
log "current -> releases/$release_id"

install -m 0644 "$release_dir/deploy/systemd/tally.service" "$unit_file"
# The termination guard (deploy/ec2/tally-lifecycle.sh) runs from the live release; restarted
# so it runs this release's script.
install -m 0644 "$release_dir/deploy/systemd/$guard_service" "$guard_unit_file"
systemctl daemon-reload
systemctl enable "$service" "$guard_service"
systemctl restart "$guard_service"
log "$service and $guard_service installed and enabled"

# Keep the newest $keep releases (the live one always among them) for manual rollback.
live="$(basename "$(readlink "$current_link")")"
count=0
while IFS= read -r name; do
  [[ -n "$name" ]] || continue
  count=$((count + 1))
  if [[ "$name" != "$live" && "$count" -gt "$keep" ]]; then
    log "pruning release $name"
    rm -rf "${releases_dir:?}/$name"
  fi
done < <(find "$releases_dir" -mindepth 1 -maxdepth 1 -type d ! -name '*.partial' \
  -printf '%T@ %f\n' | sort -rn | cut -d' ' -f2-)

#!/usr/bin/env bash
# CodeDeploy BeforeInstall: prepare the host (runtime check, service user, directories, default
# environment file) and empty the staging directory the new revision is copied into.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

node_bin="${TALLY_NODE:-/usr/bin/node}"
[[ -x "$node_bin" ]] || die "$node_bin not found: install Node.js 20 (dnf install -y nodejs20)"
node_major="$("$node_bin" -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || die "Node.js $node_major at $node_bin is too old: Tally needs 20 or newer"

if ! getent group "$tally_group" >/dev/null; then
  log "creating system group $tally_group"
  groupadd --system "$tally_group"
fi
if ! getent passwd "$tally_user" >/dev/null; then
  log "creating system user $tally_user"
  useradd --system --gid "$tally_group" --home-dir /var/lib/tally --no-create-home \
    --shell /usr/sbin/nologin --comment "Tally counter service" "$tally_user"
fi

# Code is owned by root and read-only for the service; only data and logs belong to tally.
install -d -m 0755 "$app_dir" "$releases_dir" "$(dirname "$unit_file")"
install -d -m 0750 -g "$tally_group" "$etc_dir"
install -d -m 0750 -o "$tally_user" -g "$tally_group" "$data_dir" "$log_dir"

if [[ ! -f "$env_file" ]]; then
  log "writing default $env_file (SQLite store); on EC2 the instance bootstrap writes the real one"
  tmp="$(mktemp "$etc_dir/.tally.env.XXXXXX")"
  cat >"$tmp" <<'ENV'
# Tally configuration, read by systemd (EnvironmentFile= in tally.service).
# Written by the BeforeInstall hook because none existed. On EC2, `tally-bootstrap env` rewrites
# it at boot with the Redis endpoint and AUTH token. Put local overrides in /etc/tally/local.env.
TALLY_HOST=0.0.0.0
TALLY_PORT=8080
TALLY_STORE=sqlite
TALLY_SQLITE_PATH=/var/lib/tally/tally.db
TALLY_DATA_DIR=/var/lib/tally
TALLY_LOG_DIR=/var/log/tally
TALLY_LOG_LEVEL=info
TALLY_DRAIN_TIMEOUT_MS=10000
ENV
  chmod 0640 "$tmp"
  chgrp "$tally_group" "$tmp"
  mv -f "$tmp" "$env_file"
fi

# The Install step copies the whole revision here; starting empty means no file from an older
# revision (or a half-finished copy) can leak into the release built by AfterInstall.
rm -rf "$staging_dir"
install -d -m 0755 "$staging_dir"
log "host ready"

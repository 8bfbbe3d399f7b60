# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables below are used by the hooks that source this file
# Shared paths and helpers for the CodeDeploy lifecycle hooks. Sourced by every hook, never run.
#
# Every path sits under TALLY_DEPLOY_ROOT, a DESTDIR-style prefix that is empty on a real host,
# so the hooks run unchanged against a temporary directory in the tests.

deploy_root="${TALLY_DEPLOY_ROOT:-}"
service="${TALLY_SERVICE:-tally.service}"
tally_user="${TALLY_USER:-tally}"
tally_group="${TALLY_GROUP:-$tally_user}"

app_dir="$deploy_root/opt/tally"
staging_dir="$app_dir/staging"
releases_dir="$app_dir/releases"
current_link="$app_dir/current"
etc_dir="$deploy_root/etc/tally"
env_file="$etc_dir/tally.env"
data_dir="$deploy_root/var/lib/tally"
log_dir="$deploy_root/var/log/tally"
unit_file="$deploy_root/etc/systemd/system/$service"
guard_service="tally-lifecycle.service"
guard_unit_file="$deploy_root/etc/systemd/system/$guard_service"

hook_name="${LIFECYCLE_EVENT:-$(basename "$0" .sh)}"

# CodeDeploy keeps each hook's output in the deployment log; one timestamped line per step.
log() {
  printf '%s tally %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$hook_name" "$*"
}

die() {
  log "FAILED: $*" >&2
  exit 1
}

# Prints the value of KEY from the systemd environment file, or DEFAULT when it is not set there.
# Reads the file as data (no `source`): values such as the Redis URL may hold shell metacharacters.
env_value() {
  local key="$1" default="$2" line value
  if [[ -r "$env_file" ]]; then
    line="$(grep -E "^[[:space:]]*${key}=" "$env_file" | tail -n 1 || true)"
    if [[ -n "$line" ]]; then
      value="${line#*=}"
      value="${value%\"}"
      value="${value#\"}"
      printf '%s\n' "$value"
      return 0
    fi
  fi
  printf '%s\n' "$default"
}

#!/usr/bin/env bash
# Termination guard: an instance the Auto Scaling group terminates (scale-in, replacement) keeps
# running until its write-ahead log is in Redis, so a store outage never deletes acknowledged
# increments with the root volume. Runs as tally-lifecycle.service (deploy/systemd/).
#
# Usage: tally-lifecycle.sh watch|drain
#   watch  polls the instance metadata every TALLY_LIFECYCLE_POLL_S (5 s); once the group's
#          target state is Terminated (the termination lifecycle hook holds the instance in
#          Terminating:Wait), runs `drain` and exits
#   drain  keeps the hook alive with heartbeats while Tally cannot reach the store (starting Tally
#          again if it stopped with a log left), then stops Tally once /readyz answers 200 (its
#          final flush empties the log), checks that no log segment is left, and completes the
#          lifecycle action with CONTINUE. It never completes while a segment is left.
#
# Settings (environment): TALLY_IMDS_URL (http://169.254.169.254), TALLY_LIFECYCLE_HOOK
# (tally-drain), TALLY_LIFECYCLE_POLL_S (5), TALLY_LIFECYCLE_HEARTBEAT_S (60); paths as in the
# CodeDeploy hooks (TALLY_DEPLOY_ROOT, for the tests).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../codedeploy/scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../codedeploy/scripts/common.sh"

hook_name="tally-lifecycle"
imds="${TALLY_IMDS_URL:-http://169.254.169.254}"
lifecycle_hook="${TALLY_LIFECYCLE_HOOK:-tally-drain}"
poll_s="${TALLY_LIFECYCLE_POLL_S:-5}"
heartbeat_s="${TALLY_LIFECYCLE_HEARTBEAT_S:-60}"

# One IMDSv2 read (the launch template requires tokens).
metadata() {
  local token
  token="$(curl -sf -X PUT "$imds/latest/api/token" \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')" || return 1
  curl -sf -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"
}

# Log segments Tally has not emptied, under every instance id's directory.
segments_left() {
  local dir
  dir="$(env_value TALLY_DATA_DIR "$data_dir")/wal"
  [[ -d "$dir" ]] || {
    echo 0
    return 0
  }
  find "$dir" -type f -name 'segment-*.log' | wc -l
}

ready() {
  local port
  port="$(env_value TALLY_PORT 8080)"
  curl -sf -o /dev/null --max-time 3 "http://127.0.0.1:$port/readyz"
}

lifecycle() {
  local action="$1"
  shift
  aws autoscaling "$action" --region "$region" --lifecycle-hook-name "$lifecycle_hook" \
    --auto-scaling-group-name "$group" --instance-id "$instance" "$@"
}

drain() {
  instance="$(metadata instance-id)" || die "cannot read the instance id from $imds"
  group="$(metadata tags/instance/aws:autoscaling:groupName)" ||
    die "cannot read the Auto Scaling group name (instance metadata tags must be on)"
  region="$(metadata placement/region)" || die "cannot read the region from $imds"
  log "terminating: draining the log before completing $lifecycle_hook"
  local last_beat=$SECONDS left
  while true; do
    if ((SECONDS - last_beat >= heartbeat_s)); then
      lifecycle record-lifecycle-action-heartbeat || log "WARNING: heartbeat failed"
      last_beat=$SECONDS
    fi
    if ready; then
      log "store reachable: stopping $service for its final flush"
      systemctl stop "$service" || true
    fi
    left="$(segments_left)"
    if systemctl is-active --quiet "$service"; then
      log "waiting: the store is unreachable, $left log segment(s) held"
    elif [[ "$left" == 0 ]]; then
      log "$service is stopped and its log is empty; completing $lifecycle_hook with CONTINUE"
      lifecycle complete-lifecycle-action --lifecycle-action-result CONTINUE
      return 0
    else
      log "$service is stopped with $left log segment(s) left; starting it to replay them"
      systemctl start "$service"
    fi
    sleep "$poll_s"
  done
}

watch() {
  local state
  while true; do
    state="$(metadata autoscaling/target-lifecycle-state || true)"
    if [[ "$state" == "Terminated" ]]; then
      drain
      return 0
    fi
    sleep "$poll_s"
  done
}

case "${1:-}" in
  watch) watch ;;
  drain) drain ;;
  *) die "usage: tally-lifecycle.sh watch|drain" ;;
esac

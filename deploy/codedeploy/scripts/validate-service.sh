#!/usr/bin/env bash
# CodeDeploy ValidateService: wait until Tally answers 200 on /readyz (store reachable), or fail
# the deployment on this instance, which makes CodeDeploy stop and roll back.
#
# TALLY_READY_URL     URL to poll; default http://127.0.0.1:<TALLY_PORT from tally.env>/readyz
# TALLY_VALIDATE_TIMEOUT_S   give up after this many seconds; default 60
# TALLY_VALIDATE_INTERVAL_S  pause between attempts in seconds; default 1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v curl >/dev/null || die "curl is required (dnf install -y curl-minimal)"
timeout_s="${TALLY_VALIDATE_TIMEOUT_S:-60}"
interval_s="${TALLY_VALIDATE_INTERVAL_S:-1}"
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "TALLY_VALIDATE_TIMEOUT_S must be whole seconds"
port="$(env_value TALLY_PORT 8080)"
url="${TALLY_READY_URL:-http://127.0.0.1:$port/readyz}"

log "waiting up to ${timeout_s}s for 200 from $url"
# Milliseconds: bash's SECONDS ticks on whole seconds, so a deadline in it can come up to a second
# early.
now_ms() { date +%s%3N; }
deadline=$(($(now_ms) + timeout_s * 1000))
attempts=0
code=000
while :; do
  attempts=$((attempts + 1))
  code="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 2 "$url" || true)"
  if [[ "$code" == 200 ]]; then
    log "ready after $attempts attempt(s)"
    exit 0
  fi
  # A unit that hit its restart limit will not come back inside this window: stop waiting.
  if systemctl is-failed --quiet "$service"; then
    systemctl status --no-pager "$service" || true
    die "$service failed while waiting for readiness (last HTTP status $code)"
  fi
  if (($(now_ms) >= deadline)); then
    break
  fi
  sleep "$interval_s"
done

systemctl status --no-pager "$service" || true
die "$url did not answer 200 within ${timeout_s}s ($attempts attempts, last HTTP status $code)"

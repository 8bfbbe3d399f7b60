#!/usr/bin/env bash
# CodeDeploy ApplicationStop: stop the running Tally through systemd so it drains and flushes.
#
# CodeDeploy runs this hook from the revision that is currently installed, before the new files
# land; on an instance that never ran Tally there is nothing to stop and the hook succeeds.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ ! -f "$unit_file" ]]; then
  log "$service is not installed; nothing to stop"
  exit 0
fi

# `systemctl stop` blocks until the unit is down: SIGTERM, Tally's final flush, and SIGKILL only
# after TimeoutStopSec. Stopping a unit that is already stopped succeeds.
log "stopping $service"
systemctl stop "$service"

if systemctl is-active --quiet "$service"; then
  die "$service is still active after stop"
fi
if systemctl is-failed --quiet "$service"; then
  # A non-zero exit on SIGTERM means the final flush may not have completed; say so loudly but
  # let the deploy go on: failing here cannot bring those deltas back.
  log "WARNING: $service exited uncleanly; check error.log for flush_failed events"
fi
log "$service stopped"

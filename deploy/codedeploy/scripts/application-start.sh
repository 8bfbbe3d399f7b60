#!/usr/bin/env bash
# CodeDeploy ApplicationStart: start Tally from the release `current` points at.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ -f "$unit_file" ]] || die "$unit_file is missing: AfterInstall did not run"
# restart, not start: when this hook is retried with Tally already up, the process must still be
# replaced so it runs the code `current` points at now.
log "starting $service"
systemctl restart "$service"
log "$service started; ValidateService waits for /readyz"

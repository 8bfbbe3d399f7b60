#!/usr/bin/env bash
# Instance bootstrap for Tally on Amazon Linux 2023, installed as /usr/local/sbin/tally-bootstrap
# by the launch template's user data and run once at first boot with `all`.
#
# Usage: tally-bootstrap all|packages|user|env|cloudwatch|codedeploy-agent
#   env   re-renders /etc/tally/tally.env from Secrets Manager and restarts Tally if it runs;
#         run it by hand after rotating the Redis AUTH token or the admin token.
#
# Settings come from /etc/tally/bootstrap.env, written by the user data from stack outputs:
#   TALLY_AWS_REGION, TALLY_ADMIN_SECRET_ARN, TALLY_CW_AGENT_PARAM, TALLY_PORT, and the store's:
#   TALLY_STORE_KIND=redis (the default): TALLY_REDIS_HOST, TALLY_REDIS_PORT,
#     TALLY_REDIS_SECRET_ARN, TALLY_REDIS_WAIT_REPLICAS
#   TALLY_STORE_KIND=postgres: TALLY_POSTGRES_HOST, TALLY_POSTGRES_PORT, TALLY_POSTGRES_DB,
#     TALLY_POSTGRES_SECRET_ARN (the RDS-generated JSON with username and password)
# All paths sit under TALLY_DEPLOY_ROOT (empty on a real host) so the tests can run `env`.
set -euo pipefail

deploy_root="${TALLY_DEPLOY_ROOT:-}"
etc_dir="$deploy_root/etc/tally"
settings_file="$etc_dir/bootstrap.env"
env_file="$etc_dir/tally.env"
tally_user="${TALLY_USER:-tally}"
tally_group="${TALLY_GROUP:-$tally_user}"
service="tally.service"

log() {
  printf '%s tally-bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

die() {
  log "FAILED: $*" >&2
  exit 1
}

load_settings() {
  [[ -r "$settings_file" ]] || die "$settings_file is missing: it is written by the user data"
  set -a
  # shellcheck source=/dev/null
  . "$settings_file"
  set +a
  local name required=(TALLY_AWS_REGION TALLY_ADMIN_SECRET_ARN)
  case "${TALLY_STORE_KIND:=redis}" in
    redis) required+=(TALLY_REDIS_HOST TALLY_REDIS_PORT TALLY_REDIS_SECRET_ARN) ;;
    postgres)
      required+=(TALLY_POSTGRES_HOST TALLY_POSTGRES_PORT TALLY_POSTGRES_DB TALLY_POSTGRES_SECRET_ARN)
      ;;
    *) die "TALLY_STORE_KIND must be redis or postgres, not $TALLY_STORE_KIND" ;;
  esac
  for name in "${required[@]}"; do
    [[ -n "${!name:-}" ]] || die "$name is not set in $settings_file"
  done
}

# The environment lines of the store, from its secret: the Redis AUTH token, or the RDS
# credentials (JSON, read with the node the packages step installed).
store_env() {
  if [[ "$TALLY_STORE_KIND" == postgres ]]; then
    local credentials user password
    credentials="$(secret_value "$TALLY_POSTGRES_SECRET_ARN")" ||
      die "cannot read the PostgreSQL credentials"
    user="$(printf '%s' "$credentials" | node -e \
      'process.stdout.write(String(JSON.parse(require("fs").readFileSync(0, "utf8")).username ?? ""))')" ||
      die "the PostgreSQL credentials are not JSON"
    password="$(printf '%s' "$credentials" | node -e \
      'process.stdout.write(String(JSON.parse(require("fs").readFileSync(0, "utf8")).password ?? ""))')" ||
      die "the PostgreSQL credentials are not JSON"
    [[ -n "$user" && -n "$password" ]] || die "the PostgreSQL credentials lack username or password"
    echo "TALLY_STORE=postgres"
    # RDS forces TLS (rds.force_ssl); `require` encrypts without checking the certificate,
    # since the instances hold no RDS CA bundle (docs/postgres.md).
    echo "TALLY_POSTGRES_URL=postgres://$(urlencode "$user"):$(urlencode "$password")@$TALLY_POSTGRES_HOST:$TALLY_POSTGRES_PORT/$TALLY_POSTGRES_DB"
    echo "TALLY_POSTGRES_SSL=require"
    return
  fi
  local redis_token
  redis_token="$(secret_value "$TALLY_REDIS_SECRET_ARN")" || die "cannot read the Redis AUTH token"
  [[ -n "$redis_token" ]] || die "the Redis AUTH token came back empty"
  echo "TALLY_STORE=redis"
  echo "TALLY_REDIS_URL=rediss://:$(urlencode "$redis_token")@$TALLY_REDIS_HOST:$TALLY_REDIS_PORT"
  # Batches leave the log only once this many replicas hold them (failover-safe; docs/redis.md).
  echo "TALLY_REDIS_WAIT_REPLICAS=${TALLY_REDIS_WAIT_REPLICAS:-0}"
}

# Percent-encodes everything but RFC 3986 unreserved characters, for the userinfo of a URL.
urlencode() {
  local input="$1" out="" char i
  for ((i = 0; i < ${#input}; i++)); do
    char="${input:i:1}"
    case "$char" in
      [A-Za-z0-9._~-]) out+="$char" ;;
      *) out+="$(printf '%%%02X' "'$char")" ;;
    esac
  done
  printf '%s' "$out"
}

secret_value() {
  aws secretsmanager get-secret-value --region "$TALLY_AWS_REGION" --secret-id "$1" \
    --query SecretString --output text
}

step_packages() {
  log "installing Node.js 20, the CloudWatch agent and ruby (for the CodeDeploy agent)"
  dnf install -y -q nodejs20 amazon-cloudwatch-agent ruby
  # AL2023 ships Node 20 as /usr/bin/node-20; the unit runs /usr/bin/node.
  local major=0
  if [[ -x /usr/bin/node ]]; then
    major="$(/usr/bin/node -p 'process.versions.node.split(".")[0]')"
  fi
  if ((major < 20)); then
    alternatives --set node /usr/bin/node-20 2>/dev/null || ln -sfn /usr/bin/node-20 /usr/bin/node
  fi
}

step_user() {
  getent group "$tally_group" >/dev/null || groupadd --system "$tally_group"
  getent passwd "$tally_user" >/dev/null ||
    useradd --system --gid "$tally_group" --home-dir /var/lib/tally --no-create-home \
      --shell /usr/sbin/nologin --comment "Tally counter service" "$tally_user"
  install -d -m 0750 -g "$tally_group" "$etc_dir"
  install -d -m 0750 -o "$tally_user" -g "$tally_group" \
    "$deploy_root/var/lib/tally" "$deploy_root/var/log/tally"
}

step_env() {
  load_settings
  local store_lines admin_token tmp
  store_lines="$(store_env)" || exit 1
  admin_token="$(secret_value "$TALLY_ADMIN_SECRET_ARN")" || die "cannot read the admin token"
  [[ -n "$admin_token" ]] || die "the admin token came back empty"

  # Written beside the target and renamed, so systemd never reads a half-written file; the
  # umask keeps the secrets unreadable to anyone but root and the tally group.
  tmp="$(umask 0027 && mktemp "$etc_dir/.tally.env.XXXXXX")"
  {
    echo "# Written by tally-bootstrap at $(date -u +%Y-%m-%dT%H:%M:%SZ); refresh with: tally-bootstrap env"
    echo "# Do not edit: put overrides in /etc/tally/local.env (read after this file)."
    echo "TALLY_HOST=0.0.0.0"
    # One hop: the ALB. Per-client limits then see the browser's address, not the ALB node's.
    echo "TALLY_TRUST_PROXY=1"
    echo "TALLY_PORT=${TALLY_PORT:-8080}"
    printf '%s\n' "$store_lines"
    echo "TALLY_ADMIN_TOKEN=$admin_token"
    echo "TALLY_DATA_DIR=/var/lib/tally"
    echo "TALLY_LOG_DIR=/var/log/tally"
    echo "TALLY_LOG_LEVEL=info"
    echo "TALLY_DRAIN_TIMEOUT_MS=10000"
  } >"$tmp"
  chmod 0640 "$tmp"
  chgrp "$tally_group" "$tmp"
  mv -f "$tmp" "$env_file"
  log "wrote $env_file"

  # Picks up a rotated token; does nothing at first boot, before Tally is installed.
  systemctl try-restart "$service"
}

step_cloudwatch() {
  load_settings
  [[ -n "${TALLY_CW_AGENT_PARAM:-}" ]] || die "TALLY_CW_AGENT_PARAM is not set in $settings_file"
  log "starting the CloudWatch agent with ssm:$TALLY_CW_AGENT_PARAM"
  /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
    -c "ssm:$TALLY_CW_AGENT_PARAM"
}

step_codedeploy_agent() {
  load_settings
  if systemctl is-active --quiet codedeploy-agent; then
    log "CodeDeploy agent already running"
    return 0
  fi
  local dir
  dir="$(mktemp -d)"
  # The installer comes from the regional CodeDeploy bucket, reached through the S3 endpoint.
  aws s3 cp --region "$TALLY_AWS_REGION" \
    "s3://aws-codedeploy-$TALLY_AWS_REGION/latest/install" "$dir/install"
  chmod +x "$dir/install"
  "$dir/install" auto
  rm -rf "$dir"
  # Without internet access the agent polls through the codedeploy-commands-secure endpoint,
  # which it only uses with IAM auth enabled.
  local conf=/etc/codedeploy-agent/conf/codedeployagent.yml
  grep -q '^:enable_auth_policy: true' "$conf" || echo ':enable_auth_policy: true' >>"$conf"
  systemctl enable codedeploy-agent
  systemctl restart codedeploy-agent
  log "CodeDeploy agent running"
}

main() {
  local step="${1:-}"
  case "$step" in
    all)
      step_packages
      step_user
      step_env
      step_cloudwatch
      # Last: the agent pulls the current revision as soon as it starts (the Auto Scaling
      # lifecycle hook), and that deployment needs the env file and the log shipping in place.
      step_codedeploy_agent
      ;;
    packages) step_packages ;;
    user) step_user ;;
    env) step_env ;;
    cloudwatch) step_cloudwatch ;;
    codedeploy-agent) step_codedeploy_agent ;;
    *) die "usage: tally-bootstrap all|packages|user|env|cloudwatch|codedeploy-agent" ;;
  esac
}

main "$@"

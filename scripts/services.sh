#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer, starting them if needed.
# Skipped for a service whose URL is given in the environment (DATABASE_URL / REDIS_URL).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() {
  local name=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then echo "$name is up"; return 0; fi
    sleep 0.5
  done
  echo "error: $name did not come up on 127.0.0.1; start it and re-run" >&2
  return 1
}

install_missing() {
  local packages=()
  command -v pg_ctlcluster >/dev/null || packages+=(postgresql)
  command -v redis-server >/dev/null || packages+=(redis-server)
  if [ ${#packages[@]} -gt 0 ]; then
    echo "installing ${packages[*]} from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
  fi
}

if [ -z "${DATABASE_URL:-}" ] && ! pg_up; then
  install_missing
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL pg_up
else
  echo "PostgreSQL: ${DATABASE_URL:-127.0.0.1:5432 is up}"
fi

if [ -z "${REDIS_URL:-}" ] && ! redis_up; then
  install_missing
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
else
  echo "Redis: ${REDIS_URL:-127.0.0.1:6379 is up}"
fi

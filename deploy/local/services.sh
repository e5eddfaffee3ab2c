#!/usr/bin/env bash
# Make sure MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) answer: start them
# when installed but down, install them with apt-get when missing.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""

need_pkg() {  # command, package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  echo "installing $2" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
}

wait_for() {  # description, command...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "$what did not come up" >&2
  return 1
}

mariadb_up() { mysqladmin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }

need_pkg mysqladmin mariadb-client
need_pkg redis-cli redis-tools

if ! mariadb_up; then
  [ -x /usr/sbin/mariadbd ] || need_pkg /usr/sbin/mariadbd mariadb-server
  echo "starting MariaDB" >&2
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB mariadb_up
fi

if ! redis_up; then
  command -v redis-server >/dev/null 2>&1 || need_pkg redis-server redis-server
  echo "starting Redis" >&2
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
    --maxmemory-policy noeviction
  wait_for Redis redis_up
fi
echo "MariaDB and Redis are up" >&2

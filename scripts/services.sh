#!/usr/bin/env bash
# Start the real services the integration tests use, on loopback only, when they are not
# already running: PostgreSQL 15, Redis, a Docker engine with host networking only, and a
# moto S3 server.  Writes the environment the tests read to .build/services/env.sh (the Makefile's
# integration and bench targets source it; so can you: `source .build/services/env.sh`).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.build/services"
mkdir -p "$state"
venv="${VENV:-$here/.venv}"

PG_PORT=5432
PG_USER=rbops_test
PG_PASSWORD_FILE="$state/pg_password"
REDIS_PORT=6379
S3_PORT=${RBOPS_S3_PORT:-5055}

wait_for() {  # wait_for <seconds> <description> <command...>
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "services: $what did not come up within ${limit}s" >&2
    return 1
}

start_postgres() {
    local version
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
    if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
        pg_createcluster "$version" main >/dev/null
    fi
    if ! pg_isready -q -h 127.0.0.1 -p $PG_PORT; then
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    wait_for 30 PostgreSQL pg_isready -q -h 127.0.0.1 -p $PG_PORT
    [ -s "$PG_PASSWORD_FILE" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$PG_PASSWORD_FILE")
    local pw
    pw=$(cat "$PG_PASSWORD_FILE")
    # The password goes through psql's stdin, never its arguments.
    su postgres -c "psql -q -v ON_ERROR_STOP=1 -d postgres" <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER;
  END IF;
END \$\$;
ALTER ROLE $PG_USER PASSWORD '$pw';
SQL
}

start_redis() {
    if ! redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null | grep -q PONG; then
        redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
            --logfile "$state/redis.log"
    fi
    wait_for 15 Redis sh -c "redis-cli -h 127.0.0.1 -p $REDIS_PORT ping | grep -q PONG"
}

start_docker() {
    if ! docker info >/dev/null 2>&1; then
        # --bridge=none: no docker0 and no private address range; containers use host networking.
        nohup dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
            >"$state/dockerd.log" 2>&1 &
        echo $! > "$state/dockerd.pid"
    fi
    wait_for 60 "Docker engine" docker info
}

start_s3() {
    if ! curl -fsS "http://127.0.0.1:$S3_PORT/moto-api/" >/dev/null 2>&1; then
        nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$state/moto.log" 2>&1 &
        echo $! > "$state/moto.pid"
    fi
    wait_for 30 "moto S3 server" curl -fsS "http://127.0.0.1:$S3_PORT/moto-api/"
}

case "${1:-start}" in
    start)
        start_postgres
        start_redis
        start_docker
        start_s3
        # The sample service's images for the deploy tests (built once, then cached by tag and input hash).
        "$here/scripts/sample-images.sh"
        cat > "$state/env.sh" <<ENV
export RBOPS_TEST_PG_HOST=127.0.0.1
export RBOPS_TEST_PG_PORT=$PG_PORT
export RBOPS_TEST_PG_USER=$PG_USER
export RBOPS_TEST_PG_PASSWORD_FILE=$PG_PASSWORD_FILE
export RBOPS_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export RBOPS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
ENV
        echo "services: PostgreSQL :$PG_PORT, Redis :$REDIS_PORT, Docker (host network), S3 :$S3_PORT on 127.0.0.1"
        ;;
    *) echo "usage: $0 start" >&2; exit 2 ;;
esac

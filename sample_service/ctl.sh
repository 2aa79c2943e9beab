#!/usr/bin/env bash
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Run the sample service as a local background process.
#   ctl.sh start|stop|status|restart ENV_FILE
# The env file (KEY=VALUE) configures the service; DATA_DIR from it holds the pidfile
# (DATA_DIR/<SERVICE_NAME>.pid) and the process log (DATA_DIR/logs/<SERVICE_NAME>.log).
# PYTHON selects the interpreter (default python3; it needs the `cryptography` package).
# Exit codes: 0 ok / running, 1 failure, 2 usage, 3 stopped (status).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
app="$here/app.py"
python=${PYTHON:-python3}
start_timeout=${START_TIMEOUT:-20}
stop_timeout=${STOP_TIMEOUT:-15}

usage() {
    echo "usage: $0 start|stop|status|restart ENV_FILE" >&2
    exit 2
}

[ $# -eq 2 ] || usage
action=$1
env_file=$(cd "$(dirname "$2")" 2>/dev/null && pwd)/$(basename "$2")
[ -r "$env_file" ] || { echo "ctl.sh: env file $2 is not readable" >&2; exit 1; }

# The app parses the env file itself, so ctl.sh and the service always agree on DATA_DIR etc.
settings=$("$python" "$app" --env-file "$env_file" settings) || { echo "ctl.sh: cannot read settings from $env_file" >&2; exit 1; }
DATA_DIR=; SERVICE_NAME=; LOCK_FILE=
while IFS='=' read -r key value; do
    case $key in
        DATA_DIR) DATA_DIR=$value ;;
        SERVICE_NAME) SERVICE_NAME=$value ;;
        LOCK_FILE) LOCK_FILE=$value ;;
    esac
done <<<"$settings"
pidfile="$DATA_DIR/$SERVICE_NAME.pid"
logfile="$DATA_DIR/logs/$SERVICE_NAME.log"

alive() {  # a zombie (exited, not yet reaped by its parent) counts as dead
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
    [ "$state" != "Z" ]
}

running_pid() {  # prints the pid and returns 0 when our service process is alive
    local pid
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && alive "$pid" || return 1
    # Guard against pid reuse: the process must be this app.py.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$app" || return 1
    echo "$pid"
}

do_status() {
    local pid
    if pid=$(running_pid); then
        echo "$SERVICE_NAME is running (pid $pid)"
        return 0
    fi
    echo "$SERVICE_NAME is stopped"
    return 3
}

do_start() {
    local pid lock_pid
    if pid=$(running_pid); then
        echo "$SERVICE_NAME is already running (pid $pid)"
        return 0
    fi
    (umask 077; mkdir -p "$DATA_DIR/logs")
    # setsid: the service must outlive the shell (and the Ansible task) that started it.
    (umask 077; exec setsid "$python" "$app" --env-file "$env_file" serve </dev/null >>"$logfile" 2>&1) &
    pid=$!
    (umask 077; echo "$pid" >"$pidfile")
    local deadline=$((SECONDS + start_timeout))
    while [ $SECONDS -lt $deadline ]; do
        if ! alive "$pid"; then
            rm -f "$pidfile"
            echo "ctl.sh: $SERVICE_NAME exited during start-up; last lines of $logfile:" >&2
            tail -n 20 "$logfile" >&2
            return 1
        fi
        # The service writes its pid into the lock file before it listens; /healthz must be
        # answered by that process (not by something else already on the port).
        lock_pid=$(tr -dc '0-9' <"$LOCK_FILE" 2>/dev/null || true)
        if [ -n "$lock_pid" ] && "$python" "$app" --env-file "$env_file" healthcheck --path /healthz --timeout 1 \
                --expect-pid "$lock_pid" >/dev/null 2>&1; then
            (umask 077; echo "$lock_pid" >"$pidfile")
            echo "$SERVICE_NAME started (pid $lock_pid)"
            return 0
        fi
        sleep 0.2
    done
    echo "ctl.sh: $SERVICE_NAME did not answer /healthz within ${start_timeout}s (pid $pid left running); last lines of $logfile:" >&2
    tail -n 20 "$logfile" >&2
    return 1
}

do_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$pidfile"
        echo "$SERVICE_NAME is not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # Count 0.2 s steps: $SECONDS ticks in whole seconds, so a deadline on it can come up to 1 s early.
    local steps=$((stop_timeout * 5))
    while alive "$pid" && [ "$steps" -gt 0 ]; do
        sleep 0.2
        steps=$((steps - 1))
    done
    if alive "$pid"; then
        echo "ctl.sh: $SERVICE_NAME (pid $pid) ignored SIGTERM for ${stop_timeout}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if alive "$pid"; then
            echo "ctl.sh: $SERVICE_NAME (pid $pid) survived SIGKILL" >&2
            return 1
        fi
    fi
    rm -f "$pidfile"
    echo "$SERVICE_NAME stopped"
}

case $action in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    restart) do_stop && do_start ;;
    *) usage ;;
esac

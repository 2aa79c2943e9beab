#!/usr/bin/env bash
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# `make demo`: the backup runbook end to end on this host, with no root, no Docker and no PostgreSQL.
# Starts the sample service on SQLite from .demo/, then runs the real playbooks against
# inventories/local: back up, list backups, verify the latest, break the live database (an operator's
# bad `DELETE FROM items`), restore (stop, safety backup, restore, start, health, data check), shows
# the service healthy with its data back, then probes it: the health check (liveness, readiness, metrics
# behind the token, error rate, DATA_DIR) and the daily check, whose Markdown and JSON reports land in
# .demo/reports/, and finally rotates the service's API token (the old one refused, the new one
# accepted).  One line per step; full logs in .demo/logs/.
#
# The Makefile puts .venv/bin first on PATH and exports ANSIBLE_COLLECTIONS_PATH and ANSIBLE_CONFIG.
# DEMO_PORT changes the port (default 8780), DEMO_DIR the working directory (default .demo; the tests use
# a temporary one).  A previous demo service in DEMO_DIR is stopped and the directory recreated.  Exit status 0 only when every step passed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo=${DEMO_DIR:-$repo/.demo}
logs="$demo/logs"
env_file="$demo/app.env"
ctl="$repo/sample_service/ctl.sh"
port=${DEMO_PORT:-8780}
items=${DEMO_ITEMS:-25}
python=$(command -v python3)
export PYTHON="$python"  # ctl.sh runs the service with it (it needs `cryptography`)
export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$repo/tests/ansible.cfg}
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$repo/.build/collections}
# Logs in Ansible's JSON result format; set_stats results are printed at the end of each run.
export ANSIBLE_CALLBACK_RESULT_FORMAT=json ANSIBLE_SHOW_CUSTOM_STATS=true ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

if [ -t 1 ]; then ok=$'\e[32m✓\e[0m'; bad=$'\e[31m✗\e[0m'; else ok='✓'; bad='✗'; fi

step() { printf '%s %-10s %s\n' "$ok" "$1" "$2"; }

fail() {  # fail STEP MESSAGE [LOG]
    printf '%s %-10s %s\n' "$bad" "$1" "$2" >&2
    if [ -n "${3:-}" ]; then
        echo "  last lines of $3:" >&2
        grep -E 'fatal:|FAILED!|"msg"|ERROR' "$3" | tail -n 5 | cut -c1-400 | sed 's/^/    /' >&2 || tail -n 15 "$3" | sed 's/^/    /' >&2
        echo "  full log: $3" >&2
    fi
    stop_service
    exit 1
}

stop_service() {
    if [ -f "$env_file" ]; then
        "$ctl" stop "$env_file" >>"$logs/service.log" 2>&1 || true
    fi
}

api() {  # api METHOD PATH [JSON]: prints the JSON answer of the service
    "$python" - "$port" "$env_file" "$@" <<'EOF'
import json, sys, urllib.request
port, env_file, method, path = sys.argv[1:5]
body = sys.argv[5].encode() if len(sys.argv) > 5 else None
token = next(l.split("=", 1)[1].strip() for l in open(env_file) if l.startswith("API_TOKEN="))
req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=body, method=method,
                             headers={"X-Api-Token": token, "Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as resp:
    print(resp.read().decode())
EOF
}

item_count() { api GET /api/items | "$python" -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }

stats() {  # stats LOG KEY FIELD...: a field of this host's set_stats result in a playbook log
    "$python" - "$@" <<'EOF'
import json, sys
log, key, fields = sys.argv[1], sys.argv[2], sys.argv[3:]
line = [l for l in open(log, encoding="utf-8") if l.strip().startswith("RUN: ")][-1]
value = json.loads(line.strip()[len("RUN: "):])[key]["localhost"]
for field in fields:
    value = value[field] if not isinstance(value, list) else value[int(field)]
print(json.dumps(value) if isinstance(value, (dict, list)) else value)
EOF
}

playbook() {  # playbook LOGNAME PLAYBOOK [ARGS...]: runs it against inventories/local, logs everything
    local log="$logs/$1.log"
    shift
    (cd "$repo" && ansible-playbook -i inventories/local "playbooks/$1" -e "app_port=$port" -e "app_demo_dir=$demo" "${@:2}") >"$log" 2>&1
}

human_size() {  # human_size BYTES
    "$python" -c '
import sys
n = float(sys.argv[1])
for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
        print("%d %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit))
        break
    n /= 1024
' "$1"
}

echo "runbook.ops demo: the sample service on SQLite, real playbooks against inventories/local"

# --- a fresh .demo/ ------------------------------------------------------------------------------
if [ -f "$env_file" ]; then  # a previous demo's service may still run
    "$ctl" stop "$env_file" >/dev/null 2>&1 || true
fi
rm -rf "$demo"
mkdir -p "$logs"
chmod 700 "$demo"
if "$python" -c 'import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$port"; then
    fail service "port $port on 127.0.0.1 is already in use by another process: stop it, or run with DEMO_PORT=<free port>"
fi

"$python" - "$env_file" "$demo/data" "$port" <<'EOF'
import os, secrets, sys
from cryptography.fernet import Fernet
path, data_dir, port = sys.argv[1:4]
settings = {"DATA_DIR": data_dir, "LISTEN_HOST": "127.0.0.1", "PORT": port, "SERVICE_NAME": "app",
            "API_TOKEN": secrets.token_urlsafe(24), "ENCRYPTION_KEY": Fernet.generate_key().decode(), "VERSION": "1.0.0"}
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w") as handle:
    handle.write("# sample service settings written by scripts/demo.sh\n")
    handle.writelines("%s=%s\n" % item for item in settings.items())
EOF

# --- the service and its data --------------------------------------------------------------------
"$ctl" start "$env_file" >"$logs/service.log" 2>&1 || fail service "the sample service did not start" "$logs/service.log"
pid=$(tr -dc '0-9' <"$demo/data/app.pid")
step service "sample service started on http://127.0.0.1:$port (pid $pid, SQLite in ${demo#"$repo"/}/data/app.db)"

for i in $(seq 1 "$items"); do
    api POST /api/items "{\"name\": \"item-$i\", \"secret\": \"s3cret-$i\"}" >/dev/null || fail seed "creating item $i through the API failed"
done
before=$(item_count)
[ "$before" -eq "$items" ] || fail seed "the API lists $before items after creating $items"
step seed "created $before items through the API (secrets encrypted with ENCRYPTION_KEY)"

# --- back up, list, verify -----------------------------------------------------------------------
playbook 1-backup backup.yml || fail backup "playbooks/backup.yml failed" "$logs/1-backup.log"
backup_id=$(stats "$logs/1-backup.log" runbook_backup id)
size=$(stats "$logs/1-backup.log" runbook_backup size)
rows=$(stats "$logs/1-backup.log" runbook_backup row_counts | "$python" -c 'import json,sys; print(" ".join("%s=%s" % kv for kv in sorted(json.load(sys.stdin).items())))')
step backup "playbooks/backup.yml: $backup_id ($(human_size "$size"), rows $rows) in ${demo#"$repo"/}/backups"

playbook 2-list list_backups.yml || fail list "playbooks/list_backups.yml failed" "$logs/2-list.log"
complete=$(stats "$logs/2-list.log" runbook_backups complete)
latest=$(stats "$logs/2-list.log" runbook_backups latest)
[ "$latest" = "$backup_id" ] || fail list "the latest backup is $latest, expected $backup_id" "$logs/2-list.log"
step list "playbooks/list_backups.yml: $complete complete backup(s), latest $latest"

playbook 3-verify verify_backups.yml || fail verify "playbooks/verify_backups.yml failed" "$logs/3-verify.log"
report="$demo/reports/localhost-app-$backup_id.json"
[ -f "$report" ] || fail verify "no verification report at $report" "$logs/3-verify.log"
verified=$("$python" - "$report" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["passed"], r["failures"]
print("checksum %s, %d/%d tables match the manifest, %d assertion(s) pass, scratch restore in %.3f s"
      % (r["checksum"], sum(t["ok"] for t in r["tables"]), len(r["tables"]),
         sum(a["ok"] for a in r["assertions"]), r["restore_seconds"]))
EOF
) || fail verify "the report $report does not say passed" "$logs/3-verify.log"
step verify "playbooks/verify_backups.yml: $verified"

# --- the incident: an operator's bad DELETE on the live database ----------------------------------
"$python" - "$demo/data/app.db" <<'EOF'
import sqlite3, sys
with sqlite3.connect(sys.argv[1], timeout=10) as db:
    db.execute("DELETE FROM items")
EOF
after=$(item_count)
[ "$after" -eq 0 ] || fail break "the API still lists $after items after DELETE FROM items"
step break "DELETE FROM items on the live database (service running): the API now lists $after items"

# --- restore -------------------------------------------------------------------------------------
playbook 4-restore-check restore.yml --check -e restore_force=true || fail check "playbooks/restore.yml --check -e restore_force=true failed" "$logs/4-restore-check.log"
[ "$(item_count)" -eq 0 ] || fail check "check mode changed the data"
step check "playbooks/restore.yml --check -e restore_force=true: would restore $(stats "$logs/4-restore-check.log" runbook_restore backup_id); nothing changed"

start=$SECONDS
playbook 5-restore restore.yml -e restore_force=true -e "restore_verify_min=$before" \
    || fail restore "playbooks/restore.yml failed" "$logs/5-restore.log"
restored=$(stats "$logs/5-restore.log" runbook_restore backup_id)
safety=$(stats "$logs/5-restore.log" runbook_restore safety_backup)
step restore "playbooks/restore.yml: stopped the service, safety backup $safety, restored $restored, started, /readyz ok ($((SECONDS - start)) s)"

# --- the data is back ----------------------------------------------------------------------------
now=$(item_count)
[ "$now" -eq "$before" ] || fail data "the API lists $now items after the restore, expected $before"
secret=$(api GET /api/items/1 | "$python" -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
[ "$secret" = "s3cret-1" ] || fail data "item 1's secret does not decrypt to what was stored"
new_pid=$(tr -dc '0-9' <"$demo/data/app.pid")
step healthy "service healthy again (pid $new_pid): $now items (was $before before the DELETE), secrets decrypt"

# --- probing: the health check and the morning checklist -----------------------------------------
playbook 6-health health_check.yml || fail health "playbooks/health_check.yml failed (the service is not healthy)" "$logs/6-health.log"
health=$(stats "$logs/6-health.log" runbook_health_check | "$python" -c '
import json, sys
r = json.load(sys.stdin)
print("%s/%s checks ok, overall %s (liveness, readiness, metrics behind the token, error rate, DATA_DIR)"
      % (r["counts"]["ok"], r["counts"]["total"], r["state"]))
') || fail health "no health summary in the log" "$logs/6-health.log"
step health "playbooks/health_check.yml: $health"

# The daily check also rates this host's memory, CPU and disk: on a busy machine those may be warning or
# critical, which is the report's business, not a failure of the demo (a scheduled run fails on critical).
playbook 7-daily daily_check.yml -e daily_check_fail_on_critical=false \
    || fail daily "playbooks/daily_check.yml failed" "$logs/7-daily.log"
daily=$(stats "$logs/7-daily.log" runbook_daily_check | "$python" -c '
import json, sys
r = json.load(sys.stdin)
print(r["report"]["markdown"])
print("%s/%s checks ok, overall %s%s" % (r["counts"]["ok"], r["counts"]["total"], r["state"],
                                 " (%s)" % "; ".join(p.split(":")[0] for p in r["problems"]) if r["problems"] else ""))
') || fail daily "no daily check summary in the log" "$logs/7-daily.log"
daily_report=$(head -n 1 <<<"$daily")
[ -f "$daily_report" ] || fail daily "no daily report at $daily_report" "$logs/7-daily.log"
step daily "playbooks/daily_check.yml: $(tail -n 1 <<<"$daily"); report ${daily_report#"$repo"/} (and .json)"

# --- rotation: a new API token, the old one refused -------------------------------------------------
token_status() {  # token_status: the status of GET /api/items with the token in $DEMO_TOKEN (never in argv)
    "$python" - "$port" <<'EOF'
import os, sys, urllib.error, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/api/items" % sys.argv[1], headers={"X-Api-Token": os.environ["DEMO_TOKEN"]})
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        print(resp.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
EOF
}
env_token() { "$python" -c 'import sys; print(next(l.split("=", 1)[1].strip() for l in open(sys.argv[1]) if l.startswith("API_TOKEN=")))' "$env_file"; }
old_token=$(env_token)
playbook 8-rotate rotate_secrets.yml || fail rotate "playbooks/rotate_secrets.yml failed" "$logs/8-rotate.log"
new_token=$(env_token)
[ "$new_token" != "$old_token" ] || fail rotate "API_TOKEN did not change" "$logs/8-rotate.log"
old_status=$(DEMO_TOKEN=$old_token token_status)
new_status=$(DEMO_TOKEN=$new_token token_status)
[ "$old_status" = 401 ] || fail rotate "the old API token still gets $old_status from /api/items" "$logs/8-rotate.log"
[ "$new_status" = 200 ] || fail rotate "the new API token gets $new_status from /api/items" "$logs/8-rotate.log"
old_fp=$(DEMO_TOKEN=$old_token "$python" -c 'import hashlib, os; print("sha256:" + hashlib.sha256(os.environ["DEMO_TOKEN"].encode()).hexdigest()[:12])')
new_fp=$(stats "$logs/8-rotate.log" runbook_rotation fingerprints API_TOKEN)
if grep -qF -e "$old_token" -e "$new_token" "$logs/8-rotate.log"; then
    fail rotate "a token value appears in the log" "$logs/8-rotate.log"
fi
unset old_token new_token
step rotate "playbooks/rotate_secrets.yml: API_TOKEN $old_fp -> $new_fp, service restarted; old token refused ($old_status), new accepted ($new_status)"

# --- maintenance window: integrity check, VACUUM, optimize, with the service stopped around it ------------
playbook 9-maintenance db_maintenance.yml || fail maintain "playbooks/db_maintenance.yml failed" "$logs/9-maintenance.log"
maintenance=$(stats "$logs/9-maintenance.log" runbook_db_maintenance | "$python" -c '
import json, sys
r = json.load(sys.stdin)
print("%s/%s findings ok, overall %s; %d -> %d bytes; report %s (and .json)" % (
    r["counts"]["ok"], r["counts"]["total"], r["state"], r["database_bytes_before"], r["database_bytes_after"],
    r["report"]["markdown"]))
') || fail maintain "no maintenance summary in the log" "$logs/9-maintenance.log"
[ "$(item_count)" = "$before" ] || fail maintain "the service does not list $before items after the window" "$logs/9-maintenance.log"
step maintain "playbooks/db_maintenance.yml: backup, service stopped, integrity check, VACUUM, optimize, started; ${maintenance/"$repo"\//}"

# --- an incident: the service goes down, the triage says what is wrong and records it --------------------
stop_service
playbook 10-incident incident.yml -e incident_type=api_unavailable || fail incident "playbooks/incident.yml failed" "$logs/10-incident.log"
incident=$(stats "$logs/10-incident.log" runbook_incident | "$python" -c '
import json, sys
r = json.load(sys.stdin)
print("%s %s, wrong: %s; record %s" % (r["id"], r["severity"], ", ".join(r["wrong"]) or "nothing", r["record"]["markdown"]))
') || fail incident "no incident summary in the log" "$logs/10-incident.log"
case $incident in *SEV-1*service*) ;; *) fail incident "the triage of a stopped service did not say SEV-1 service: $incident" "$logs/10-incident.log" ;; esac
step incident "service stopped on purpose; playbooks/incident.yml: ${incident/"$repo"\//}"

show=${demo#"$repo"/}
echo "Done: the service is stopped. Start it again: PYTHON=$python sample_service/ctl.sh start $show/app.env"
echo "Logs: $show/logs/  Backups: $show/backups/  Reports (verification, daily check, maintenance): $show/reports/  Incidents: $show/incidents/"

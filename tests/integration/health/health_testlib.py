# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the health_check and daily_check tests: inventories for a sample service, results, backups."""

from __future__ import annotations

import datetime
import os
import re
import sys
import uuid

import yaml

from harness import REPO

HEALTH_PLAYBOOK = os.path.join(REPO, "playbooks", "health_check.yml")
DAILY_PLAYBOOK = os.path.join(REPO, "playbooks", "daily_check.yml")


def health_vars(svc, **overrides):
    """health_check_* settings for a running sample service (what inventories/local sets for the demo)."""
    values = {
        "health_check_base_url": svc.url,
        "health_check_readiness_path": "/ready",
        "health_check_readiness_json": [{"path": "status", "equals": "ready"},
                                        {"path": "checks.database", "equals": "ok"}],
        "health_check_metrics_token": svc.token,
        "health_check_metrics_checks": [
            {"name": "database up", "metric": "app_database_up", "expect": {"op": "==", "value": 1}},
            {"name": "queued jobs", "metric": "app_jobs_queued", "warn": 100, "crit": 1000}],
        "health_check_error_rate_metric": "app_http_requests_total",
        "health_check_error_rate_label": "status",
        "health_check_data_dir": svc.data_dir,
        "health_check_data_dir_mode": "0700",
        "health_check_data_dir_file_mode": "0600",
        "health_check_data_dir_recurse": True,
    }
    values.update(overrides)
    return values


def write_inventory(tmp_path, host_vars):
    """An inventory with localhost carrying ``host_vars`` (like group_vars, below extra-vars precedence)."""
    path = tmp_path / ("inventory-%s.yml" % uuid.uuid4().hex[:8])
    values = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    values.update(host_vars)
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": values}}}))
    return str(path)


def findings_by_check(result):
    return {finding["check"]: finding for finding in result["checks" if "checks" in result else "findings"]}


def fact(run, task_name, name):
    """A fact set by a set_fact task (the callback records its result)."""
    return run.task(task_name)["result"]["ansible_facts"][name]


def stats_of(run, task_name):
    record = run.task(task_name)
    assert record["status"] == "ok", record
    return record["result"]["ansible_stats"]["data"]


def age_backup(store_dir, service, hours):
    """Rename the single backup of ``service`` in a local store as if it were taken ``hours`` ago."""
    folder = os.path.join(store_dir, service)
    names = os.listdir(folder)
    stamp = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ")
    for name in names:
        os.rename(os.path.join(folder, name), os.path.join(folder, re.sub(r"\d{8}T\d{6}Z", stamp, name, count=1)))

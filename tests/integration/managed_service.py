# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample service run through its ctl.sh (as the restore role's `command` writer stops and starts it),
with the inventory variables of the backup, backup_verify and restore roles that describe it.

Fixture ``managed_service`` (import it into a conftest.py: ``from managed_service import managed_service``;
it needs the ``sample_service`` fixture, which tests/integration/conftest.py registers)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from sample_service_fixture import CTL_PATH, clean_environ, http_request


class ManagedService:
    """A SampleService started and stopped with sample_service/ctl.sh, plus its inventory vars."""

    def __init__(self, svc, store_dir):
        self.svc = svc
        self.store_dir = str(store_dir)
        self.report_dir = os.path.join(os.path.dirname(self.store_dir), "reports")

    def ctl(self, action):
        return subprocess.run([CTL_PATH, action, self.svc.env_file], env=clean_environ({"PYTHON": sys.executable}),
                              capture_output=True, text=True, timeout=60, check=False)

    def start(self):
        proc = self.ctl("start")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return self

    def stop(self):
        return self.ctl("stop")

    @property
    def pid(self):
        try:
            with open(os.path.join(self.svc.data_dir, "app.pid"), encoding="ascii") as handle:
                return int(handle.read().strip() or 0)
        except FileNotFoundError:
            return None

    @property
    def running(self):
        return self.ctl("status").returncode == 0

    def healthy(self):
        try:
            return http_request(self.svc.url + "/readyz", timeout=2).status == 200
        except OSError:
            return False

    def add_items(self, count, prefix="item"):
        for i in range(count):
            resp = self.svc.api("POST", "/api/items", json={"name": "%s-%d" % (prefix, i), "secret": "s-%d" % i})
            assert resp.status == 201, resp

    def item_count(self):
        resp = self.svc.api("GET", "/api/items")
        assert resp.status == 200, resp
        return resp.json["count"]

    def item_names(self):
        return sorted(item["name"] for item in self.svc.api("GET", "/api/items").json["items"])

    def delete_items_sqlite(self):
        """An operator's bad `DELETE FROM items` on the live SQLite database."""
        with sqlite3.connect(self.svc.db_path, timeout=10) as db:
            db.execute("DELETE FROM items")

    def manifests(self, service="app"):
        folder = os.path.join(self.store_dir, service)
        if not os.path.isdir(folder):
            return []
        found = []
        for name in sorted(os.listdir(folder)):
            if name.endswith(".manifest.json"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    found.append(json.load(handle))
        return found

    def vars(self, engine="sqlite", pg=None, database=None):
        """Inventory variables for the three roles, like inventories/local's."""
        store = {"type": "local", "path": self.store_dir}
        common = {"service": "app", "engine": engine, "store": store}
        if engine == "sqlite":
            common["path"] = self.svc.db_path
        else:
            common["database"] = database
            common.update({"login_host": pg["login_host"], "login_port": pg["login_port"],
                           "login_user": pg["login_user"], "login_password": pg["login_password"]})
        values = {}
        for prefix in ("backup", "backup_verify", "restore"):
            values.update({"%s_%s" % (prefix, key): value for key, value in common.items()})
        values.pop("backup_verify_path", None)
        if engine == "sqlite":
            values["backup_verify_database"] = "app"
        values.update({
            "backup_verify_report_dir": self.report_dir,
            "restore_writer": "command",
            "restore_stop_command": [CTL_PATH, "stop", self.svc.env_file],
            "restore_start_command": [CTL_PATH, "start", self.svc.env_file],
            "restore_writer_environment": {"PYTHON": sys.executable},
            "restore_health_url": self.svc.url + "/readyz",
            "restore_health_timeout": 30,
            "restore_verify_url": self.svc.url + "/api/items",
            "restore_verify_api_token": self.svc.token,
            "restore_verify_json_path": "count",
        })
        return values


@pytest.fixture()
def managed_service(sample_service, tmp_path):
    """managed_service(database_url=None) -> ManagedService, started with ctl.sh and stopped at teardown."""
    started = []

    def factory(database_url=None):
        svc = sample_service(database_url=database_url, start=False)
        managed = ManagedService(svc, tmp_path / ("store-%d" % len(started)))
        started.append(managed)
        return managed.start()

    yield factory
    for managed in started:
        managed.stop()

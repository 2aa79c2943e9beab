# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rotate_tls.yml against a real nginx: replace, probe through https, revert when the probe fails."""

from __future__ import annotations

import os
import sys

import yaml

from harness import REPO, run_playbook
from test_tls_certificate import stage

PLAYBOOK = os.path.join(REPO, "playbooks", "rotate_tls.yml")


def rotate(tmp_path, nginx, staged, check=False, **extra):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"proxy": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    values = {
        "rotate_tls_certificate_src": staged["certificate_src"],
        "rotate_tls_private_key_src": staged["private_key_src"],
        "rotate_tls_chain_src": staged.get("chain_src", ""),
        "rotate_tls_certificate_path": nginx.cert_path,
        "rotate_tls_private_key_path": nginx.key_path,
        "rotate_tls_names": ["localhost"],
        "rotate_tls_nginx_conf": nginx.conf,
        "rotate_tls_served_port": nginx.port,
        "rotate_tls_probe_path": "/",
        "rotate_tls_wait_timeout": 5,
    }
    values.update(extra)
    return run_playbook(tmp_path, PLAYBOOK, inventory=str(inventory), extra_vars=values, check=check, verbosity=2)


def root_ca(tmp_path, cert_factory):
    from cryptography.hazmat.primitives import serialization
    path = tmp_path / "root-ca.pem"
    path.write_bytes(cert_factory.root.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_replace_and_probe_through_https(tmp_path, private_nginx, cert_factory):
    cert, key, chain, serial = cert_factory.leaf(days=45)
    before = private_nginx.files()
    check = rotate(tmp_path, private_nginx, stage(tmp_path, cert, key, chain), check=True,
                   rotate_tls_probe_ca_path=root_ca(tmp_path, cert_factory))
    assert check.rc == 0, check.output
    assert private_nginx.files() == before and private_nginx.served_serial() == private_nginx.serial
    run = rotate(tmp_path, private_nginx, stage(tmp_path, cert, key, chain),
                 rotate_tls_probe_ca_path=root_ca(tmp_path, cert_factory))
    assert run.rc == 0, run.output
    assert private_nginx.served_serial() == serial
    probe = run.task("Probe the service through the proxy over HTTPS")["result"]
    assert probe["state"] == "ok" and 44 <= probe["targets"][0]["cert"]["days_left"] <= 45, probe
    assert private_nginx.files() == (cert + chain, key)


def test_probe_failure_puts_the_previous_certificate_back(tmp_path, private_nginx, cert_factory):
    """Clients that do not trust the new certificate's CA: the probe (system trust store) fails, the old pair returns."""
    before = private_nginx.files()
    cert, key, chain, serial = cert_factory.leaf()
    run = rotate(tmp_path, private_nginx, stage(tmp_path, cert, key, chain))
    assert run.rc != 0
    assert 'failed at "Probe the service through the proxy over HTTPS' in run.output
    assert "the previous certificate was put back and nginx serves it again" in run.output
    assert private_nginx.files() == before
    assert private_nginx.served_serial() == private_nginx.serial != serial

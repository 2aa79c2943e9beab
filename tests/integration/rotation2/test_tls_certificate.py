# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tls_certificate against a real nginx with its own configuration on a loopback port."""

from __future__ import annotations

import json
import os

MODULE = "runbook.ops.tls_certificate"


def stage(tmp_path, cert, key, chain=None, label="new"):
    paths = {"certificate_src": tmp_path / ("%s.crt" % label), "private_key_src": tmp_path / ("%s.key" % label)}
    paths["certificate_src"].write_bytes(cert)
    paths["private_key_src"].write_bytes(key)
    os.chmod(paths["private_key_src"], 0o600)
    if chain is not None:
        paths["chain_src"] = tmp_path / ("%s-chain.pem" % label)
        paths["chain_src"].write_bytes(chain)
    return {name: str(path) for name, path in paths.items()}


def params(nginx, staged, **extra):
    values = dict(staged, certificate_path=nginx.cert_path, private_key_path=nginx.key_path, names=["localhost", "127.0.0.1"],
                  nginx_conf=nginx.conf, served_port=nginx.port, wait_timeout=10)
    values.update(extra)
    return values


def test_install_reload_and_verify(tmp_path, private_nginx, cert_factory, ansible_module):
    cert, key, chain, serial = cert_factory.leaf(days=60)
    staged = stage(tmp_path, cert, key, chain)
    before = private_nginx.files()
    check = ansible_module(MODULE, params(private_nginx, staged), check=True)
    assert not check.failed and check.result["changed"], check.output
    assert private_nginx.files() == before and private_nginx.served_serial() == private_nginx.serial

    run = ansible_module(MODULE, params(private_nginx, staged), verbosity=3)
    result = run.result
    assert not run.failed and result["changed"], run.output
    assert result["served"]["serial"] == serial == result["certificate"]["serial"]
    assert 59 < result["served"]["days_left"] <= 60
    assert private_nginx.served_serial() == serial
    assert private_nginx.files() == (cert + chain, key)
    assert os.stat(private_nginx.key_path).st_mode & 0o777 == 0o600
    backups = result["backups"]
    assert open(backups[private_nginx.key_path], "rb").read() == before[1]
    assert os.stat(backups[private_nginx.cert_path]).st_mode & 0o777 == 0o600
    key_body = key.decode().split("-----")[2].strip().splitlines()[1]
    assert key_body not in run.output and key_body not in json.dumps(run.records)

    again = ansible_module(MODULE, params(private_nginx, staged))
    assert not again.failed and not again.result["changed"] and again.result["served"]["serial"] == serial, again.output


def test_key_that_does_not_match_is_refused(tmp_path, private_nginx, cert_factory, ansible_module):
    cert, _key, chain, _serial = cert_factory.leaf()
    _cert, other_key, _chain, _other = cert_factory.leaf()
    before = private_nginx.files()
    run = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, other_key, chain)))
    assert run.failed
    assert "the private key does not belong to the certificate (their public keys differ)" in run.result["msg"]
    assert run.result["msg"].endswith("nothing was changed")
    assert private_nginx.files() == before and private_nginx.served_serial() == private_nginx.serial
    assert [n for n in os.listdir(os.path.dirname(private_nginx.cert_path)) if ".bak" in n] == []


def test_expired_uncovered_and_wrong_chain_are_refused(tmp_path, private_nginx, cert_factory, ansible_module):
    before = private_nginx.files()
    cert, key, chain, _serial = cert_factory.leaf(names=("other.example",), days=-1, start_days=-30)
    run = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, key, chain)))
    assert run.failed
    msg = run.result["msg"]
    assert "do not cover localhost, 127.0.0.1" in msg and "the certificate expired on" in msg
    # issued by the root directly, but shipped with the intermediate as its chain
    cert, key, chain, _serial = cert_factory.leaf(issuer=(cert_factory.root_key, cert_factory.root))
    run = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, key, chain, label="b")))
    assert run.failed and "was not issued by the next chain certificate CN=rbops test intermediate" in run.result["msg"]
    cert, key, chain, _serial = cert_factory.leaf(days=3)
    run = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, key, chain, label="c"), min_days=7))
    assert run.failed and "less than the 7 required" in run.result["msg"]
    assert private_nginx.files() == before and private_nginx.served_serial() == private_nginx.serial


def test_broken_nginx_config_is_refused_and_files_reverted(tmp_path, private_nginx, cert_factory, ansible_module):
    before = private_nginx.files()
    with open(private_nginx.conf, "a", encoding="utf-8") as handle:
        handle.write("this_is_not_a_directive on;\n")
    cert, key, chain, _serial = cert_factory.leaf()
    run = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, key, chain)))
    assert run.failed
    msg = run.result["msg"]
    assert "the proxy's config test" in msg and "this_is_not_a_directive" in msg, msg
    assert msg.endswith("the new certificate was not loaded; the previous files were put back")
    assert private_nginx.files() == before and private_nginx.served_serial() == private_nginx.serial
    assert [n for n in os.listdir(os.path.dirname(private_nginx.cert_path)) if ".bak" in n] == []


def test_served_certificate_mismatch_reverts_and_reloads(tmp_path, private_nginx, cert_factory, ansible_module):
    before = private_nginx.files()
    cert, key, chain, serial = cert_factory.leaf()
    # a reload that does nothing: nginx keeps presenting the old certificate
    run = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, key, chain), reload_command=["true"], wait_timeout=2))
    assert run.failed
    msg = run.result["msg"]
    assert "presents another certificate (serial %s" % private_nginx.serial in msg and "expected serial %s" % serial in msg
    assert msg.endswith("the previous files were put back and the proxy reloaded")
    assert private_nginx.files() == before and private_nginx.served_serial() == private_nginx.serial


def test_revert_puts_the_previous_certificate_back(tmp_path, private_nginx, cert_factory, ansible_module):
    before = private_nginx.files()
    cert, key, chain, serial = cert_factory.leaf()
    installed = ansible_module(MODULE, params(private_nginx, stage(tmp_path, cert, key, chain)))
    assert not installed.failed and private_nginx.served_serial() == serial, installed.output
    revert = {"state": "reverted", "backups": installed.result["backups"], "certificate_path": private_nginx.cert_path,
              "private_key_path": private_nginx.key_path, "names": ["localhost"], "nginx_conf": private_nginx.conf,
              "served_port": private_nginx.port}
    check = ansible_module(MODULE, revert, check=True)
    assert check.result["changed"] and private_nginx.served_serial() == serial
    run = ansible_module(MODULE, revert)
    assert not run.failed and run.result["changed"], run.output
    assert run.result["served"]["serial"] == private_nginx.serial == private_nginx.served_serial()
    assert private_nginx.files() == before
    assert not ansible_module(MODULE, revert).result["changed"]

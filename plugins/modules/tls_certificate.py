#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tls_certificate
short_description: Replace the TLS certificate and key of a reverse proxy (nginx) only when they check out, and prove it serves them
version_added: 0.2.0
description:
  - Checks a new certificate, private key and chain before anything changes - the key belongs to the
    certificate, each chain certificate issued the one before it, the subject alternative names cover every name
    in O(names), the certificate is valid now and for at least O(min_days) more. A pair that fails any check is
    refused with every reason named, and no file is touched.
  - Then installs it. 0600 backups of the current files, atomic writes (the key 0600 when new, an existing file
    keeps its owner and mode), the proxy's own config test (C(nginx -t)), a reload (C(nginx -s reload)), and a
    TLS handshake with the proxy that must show the new certificate's serial and expiry.
  - A failing config test, a failing reload, or a proxy that still presents another certificate after
    O(wait_timeout) puts the previous files back byte-identical (and reloads once more when a reload had
    happened), then fails with the reason.
  - Installing the files that are already in place is no change. The private key never appears in output.
author: runbook.ops contributors (!UNKNOWN)
options:
  state:
    description:
      - V(installed) checks and installs the new pair.
      - V(checked) only checks it (and, with O(verify_served), that the proxy already serves it); changes nothing.
      - V(reverted) puts the files of an earlier V(installed) back from its O(backups) (RV(backups)), tests and
        reloads the proxy and checks it presents the restored certificate; for a later check that failed.
    type: str
    choices: [installed, checked, reverted]
    default: installed
  certificate_src:
    description:
      - PEM file on the managed host with the new certificate (optionally followed by its chain).
      - Required unless O(state=reverted).
    type: path
  private_key_src:
    description:
      - PEM file on the managed host with the new, unencrypted private key.
      - Required unless O(state=reverted).
    type: path
  backups:
    description: With O(state=reverted), the RV(backups) of the V(installed) run to undo.
    type: dict
  chain_src:
    description: PEM file with the intermediate certificates, leaf's issuer first.
    type: path
  certificate_path:
    description:
      - Where the proxy reads the certificate (C(ssl_certificate)). Without O(chain_path) the chain is appended to it
        (a full chain, as nginx wants).
    type: path
    required: true
  private_key_path:
    description: Where the proxy reads the private key (C(ssl_certificate_key)).
    type: path
    required: true
  chain_path:
    description: A separate file for the chain, for proxies that read it apart from the certificate.
    type: path
  names:
    description: Host names (or IP addresses) the proxy serves; the certificate's subjectAltName must cover each.
    type: list
    elements: str
    default: []
  min_days:
    description: Refuse a certificate that expires within this many days.
    type: int
    default: 7
  nginx_binary:
    description: The nginx program.
    type: str
    default: nginx
  nginx_conf:
    description: The nginx configuration file (C(-c)); the binary's default when not given.
    type: path
  nginx_args:
    description: More arguments for both C(nginx -t) and C(nginx -s reload), for example V(["-g", "pid /run/app-nginx.pid;"]).
    type: list
    elements: str
    default: []
  test_command:
    description: The proxy's config test as an argument list, instead of C(nginx -t) (for another proxy).
    type: list
    elements: str
  reload_command:
    description: The proxy's reload as an argument list, instead of C(nginx -s reload).
    type: list
    elements: str
  verify_served:
    description: After the reload, handshake with O(served_host):O(served_port) and compare the certificate presented.
    type: bool
    default: true
  served_host:
    description: Address the proxy listens on.
    type: str
    default: 127.0.0.1
  served_port:
    description: TLS port of the proxy.
    type: int
    default: 443
  served_name:
    description: SNI name to ask for; the first of O(names) by default.
    type: str
  wait_timeout:
    description: Seconds to wait for the reloaded proxy to present the new certificate.
    type: float
    default: 15.0
  keep_backups:
    description: Keep the 0600 copies of the replaced files (their paths are returned).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Runs every check on the new pair and reports which files would change; writes and reloads nothing.
  diff_mode:
    support: none
    description: RV(files) and RV(certificate) say what changes; the key is never shown.
  idempotent:
    support: full
    description: Files already in place are no change; V(reverted) with the files already as in the backups is no change.
requirements:
  - cryptography (Python library)
  - nginx, or the proxy named in O(test_command) and O(reload_command)
seealso:
  - module: runbook.ops.http_probe
"""

EXAMPLES = r"""
- name: Replace the certificate nginx serves for app.example.com
  runbook.ops.tls_certificate:
    certificate_src: /root/incoming/app.crt
    private_key_src: /root/incoming/app.key
    chain_src: /root/incoming/intermediate.pem
    certificate_path: /etc/nginx/tls/app.fullchain.pem
    private_key_path: /etc/nginx/tls/app.key
    names: [app.example.com, www.app.example.com]
    min_days: 30

- name: An nginx of its own (config and pid file outside /etc)
  runbook.ops.tls_certificate:
    certificate_src: /srv/edge/new/cert.pem
    private_key_src: /srv/edge/new/key.pem
    certificate_path: /srv/edge/tls/cert.pem
    private_key_path: /srv/edge/tls/key.pem
    names: [localhost]
    nginx_conf: /srv/edge/nginx.conf
    served_port: 8443

- name: Undo the replacement after a later check failed
  runbook.ops.tls_certificate:
    state: reverted
    backups: "{{ tls_install.backups }}"
    certificate_path: /etc/nginx/tls/app.fullchain.pem
    private_key_path: /etc/nginx/tls/app.key
    names: [app.example.com]

- name: Only check a pair before a change window
  runbook.ops.tls_certificate:
    state: checked
    certificate_src: /root/incoming/app.crt
    private_key_src: /root/incoming/app.key
    certificate_path: /etc/nginx/tls/app.fullchain.pem
    private_key_path: /etc/nginx/tls/app.key
    names: [app.example.com]
    verify_served: false
"""

RETURN = r"""
certificate:
  description: Facts about the new certificate.
  returned: when state is installed or checked
  type: dict
  sample:
    serial: 5f1c0a9e2b
    subject: CN=app.example.com
    issuer: CN=Example Intermediate CA
    not_before: "2026-11-30T00:00:00+00:00"
    not_after: "2027-02-28T00:00:00+00:00"
    days_left: 89.6
    sans: [app.example.com]
    fingerprint: sha256:6b0c...
files:
  description: The files that changed (or would change).
  returned: always
  type: list
  elements: str
  sample: [/etc/nginx/tls/app.fullchain.pem, /etc/nginx/tls/app.key]
backups:
  description: The 0600 copies of the replaced files, by path; give them to O(state=reverted) to undo.
  returned: when state is installed
  type: dict
  sample: {/etc/nginx/tls/app.key: /etc/nginx/tls/app.key.20261130T183000Z-a1b2c3.bak}
served:
  description: Serial, expiry and days left of the certificate the proxy presents after the reload.
  returned: when verify_served is true and not in check mode
  type: dict
  sample: {serial: 5f1c0a9e2b, not_after: "2027-02-28T00:00:00+00:00", days_left: 89.6}
msg:
  description: What was done.
  returned: always
  type: str
  sample: installed the certificate serial 5f1c0a9e2b (89.6 days left) and reloaded nginx; 127.0.0.1:443 serves it
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _tls
from ansible_collections.runbook.ops.plugins.module_utils._errors import RotationError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def read(path, what):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise RotationError("cannot read the %s %s: %s" % (what, path, exc.strerror)) from None


def proxy_commands(params):
    nginx = [params["nginx_binary"]] + (["-c", params["nginx_conf"]] if params["nginx_conf"] else []) + params["nginx_args"]
    test = params["test_command"] or nginx + ["-t", "-q"]
    reload_ = params["reload_command"] or nginx + ["-s", "reload"]
    return test, reload_


def revert(module, params, served):
    files = _tls.TargetFiles(params["certificate_path"], params["private_key_path"], params["chain_path"])
    test, reload_ = proxy_commands(params)
    installer = _tls.CertificateInstaller(files, test, reload_, module.run_command, check_mode=module.check_mode)
    changed, details = installer.revert(params["backups"], served=served, wait_timeout=params["wait_timeout"])
    result = {"changed": changed, "files": details["files"]}
    if "served" in details:
        result["served"] = details["served"]
    if not changed:
        result["msg"] = "the files are already as in the backups"
    else:
        result["msg"] = "%s the previous certificate files and reload%s the proxy" % (
            ("would put back", "") if module.check_mode else ("put back", "ed"))
    return result


def run(module, params):
    served = None
    if params["verify_served"]:
        served = (params["served_host"], params["served_port"], params["served_name"] or (params["names"] or [None])[0])
    if params["state"] == "reverted":
        return revert(module, params, served)
    pair = _tls.CertificatePair(read(params["certificate_src"], "certificate"), read(params["private_key_src"], "private key"),
                                read(params["chain_src"], "chain") if params["chain_src"] else b"",
                                cert_label=params["certificate_src"], key_label=params["private_key_src"])
    facts = _tls.describe(pair.cert)
    problems = pair.problems(names=params["names"], min_days=params["min_days"])
    if problems:
        raise RotationError("refusing the new certificate %s (serial %s): %s; nothing was changed"
                            % (params["certificate_src"], facts["serial"], "; ".join(problems)), certificate=facts)
    files = _tls.TargetFiles(params["certificate_path"], params["private_key_path"], params["chain_path"])
    test, reload_ = proxy_commands(params)
    installer = _tls.CertificateInstaller(files, test, reload_, module.run_command,
                                          check_mode=module.check_mode or params["state"] == "checked")
    if params["state"] == "checked":
        pending = installer.pending(pair)
        result = {"changed": False, "certificate": facts, "files": sorted(pending),
                  "msg": "the certificate serial %s (%.1f days left) passes every check" % (facts["serial"], facts["days_left"])}
        if served and not module.check_mode:
            result["served"] = installer.wait_served(pair, served, 0)
            result["msg"] += "; %s:%s serves it" % served[:2]
        return result
    changed, details = installer.install(pair, served=served, wait_timeout=params["wait_timeout"],
                                         keep_backups=params["keep_backups"])
    result = {"changed": changed, "certificate": facts, "files": details["files"], "backups": details["backups"]}
    if not changed:
        result["msg"] = "the certificate serial %s is already installed" % facts["serial"]
        if served and not module.check_mode:
            result["served"] = installer.wait_served(pair, served, params["wait_timeout"])
    elif module.check_mode:
        result["msg"] = "would install the certificate serial %s (%.1f days left) and reload the proxy" % (
            facts["serial"], facts["days_left"])
    else:
        result["msg"] = "installed the certificate serial %s (%.1f days left) and reloaded the proxy" % (
            facts["serial"], facts["days_left"])
        if "served" in details:
            result["served"] = details["served"]
            result["msg"] += "; %s:%s serves it" % served[:2]
    return result


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "default": "installed", "choices": ["installed", "checked", "reverted"]},
            "certificate_src": {"type": "path"},
            "private_key_src": {"type": "path", "no_log": False},
            "backups": {"type": "dict"},
            "chain_src": {"type": "path"},
            "certificate_path": {"type": "path", "required": True},
            "private_key_path": {"type": "path", "required": True, "no_log": False},
            "chain_path": {"type": "path"},
            "names": {"type": "list", "elements": "str", "default": []},
            "min_days": {"type": "int", "default": 7},
            "nginx_binary": {"type": "str", "default": "nginx"},
            "nginx_conf": {"type": "path"},
            "nginx_args": {"type": "list", "elements": "str", "default": []},
            "test_command": {"type": "list", "elements": "str"},
            "reload_command": {"type": "list", "elements": "str"},
            "verify_served": {"type": "bool", "default": True},
            "served_host": {"type": "str", "default": "127.0.0.1"},
            "served_port": {"type": "int", "default": 443},
            "served_name": {"type": "str"},
            "wait_timeout": {"type": "float", "default": 15.0},
            "keep_backups": {"type": "bool", "default": True},
        },
        required_if=[["state", "installed", ["certificate_src", "private_key_src"]],
                     ["state", "checked", ["certificate_src", "private_key_src"]],
                     ["state", "reverted", ["backups"]]],
        supports_check_mode=True,
    )
    if _tls.x509 is None:
        module.fail_json(msg=missing_required_lib("cryptography"))
    try:
        result = run(module, module.params)
    except RunbookError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

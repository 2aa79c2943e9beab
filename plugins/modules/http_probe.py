#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: http_probe
short_description: Probe many HTTP(S) endpoints concurrently and rate them ok, warning or critical
version_added: 0.1.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Sends one request to each target, at the same time (a bounded pool of threads), and checks the status code,
    body text or regex, JSON fields by JMESPath, response headers, latency against warning and critical levels,
    and for C(https) the days left on the server certificate.
  - Each target gets a state V(ok), V(warning) or V(critical) with human reasons; the overall state is the worst.
  - In wait mode it keeps probing the targets that have not passed, with exponential backoff, until all pass or
    O(wait_timeout) elapses. Use it as a health gate after a deploy or restart.
  - "Shared defaults: every per-target option (connection, auth, checks, thresholds) may also be given at the top
    level, where it applies to every target that does not set it itself. O(headers) are merged by name."
  - Give either O(targets) or a single O(url).
  - Read-only; it never changes anything and always reports C(changed=false).
extends_documentation_fragment:
  - runbook.ops.read_only_check
  - runbook.ops.http_target
options:
  targets:
    description:
      - The endpoints to probe. Each item takes O(targets[].url) and any of the per-target options.
    type: list
    elements: dict
    suboptions:
      name:
        description: A label for results and messages. Defaults to the URL (without any password).
        type: str
      url:
        description: The C(http://) or C(https://) URL to request.
        type: str
        required: true
      method:
        description: See O(method).
        type: str
      headers:
        description: See O(headers). Merged over the top-level O(headers).
        type: dict
      body:
        description: See O(body).
        type: raw
      host:
        description: See O(host).
        type: str
      timeout:
        description: See O(timeout).
        type: float
      validate_certs:
        description: See O(validate_certs).
        type: bool
      ca_path:
        description: See O(ca_path).
        type: path
      api_token:
        description: See O(api_token).
        type: str
      bearer_token:
        description: See O(bearer_token).
        type: str
      metrics_secret:
        description: See O(metrics_secret).
        type: str
      status:
        description: See O(status).
        type: list
        elements: int
      body_contains:
        description: See O(body_contains).
        type: str
      body_regex:
        description: See O(body_regex).
        type: str
      json:
        description: See O(json).
        type: list
        elements: dict
        suboptions:
          path:
            description: "See O(json[].path)."
            type: str
            required: true
          equals:
            description: "See O(json[].equals)."
            type: raw
          op:
            description: See O(json[].op).
            type: str
            choices: ['==', '!=', '>', '>=', '<', '<=', contains, regex, exists]
          value:
            description: "See O(json[].value)."
            type: raw
          severity:
            description: "See O(json[].severity)."
            type: str
            choices: [critical, warning]
            default: critical
      headers_match:
        description: See O(headers_match).
        type: list
        elements: dict
        suboptions:
          name:
            description: "See O(headers_match[].name)."
            type: str
            required: true
          equals:
            description: "See O(headers_match[].equals)."
            type: raw
          op:
            description: See O(headers_match[].op).
            type: str
            choices: ['==', '!=', '>', '>=', '<', '<=', contains, regex, exists]
          value:
            description: "See O(headers_match[].value)."
            type: raw
          severity:
            description: "See O(headers_match[].severity)."
            type: str
            choices: [critical, warning]
            default: critical
      warn_ms:
        description: See O(warn_ms).
        type: float
      crit_ms:
        description: See O(crit_ms).
        type: float
      warn_days:
        description: See O(warn_days).
        type: int
      crit_days:
        description: See O(crit_days).
        type: int
      return_body:
        description: See O(return_body).
        type: bool
  url:
    description:
      - A single URL to probe, instead of O(targets).
    type: str
  name:
    description:
      - The name of the single O(url) target.
    type: str
  status:
    description:
      - Status codes that count as passing. When neither the target nor the top level sets it, V([200]).
      - Any other code makes the target critical.
    type: list
    elements: int
  body_contains:
    description: Text the body must contain (critical otherwise).
    type: str
  body_regex:
    description: A Python regular expression the body must match somewhere (critical otherwise).
    type: str
  json:
    description:
      - Checks on the JSON body, each on the value a JMESPath expression selects. A check states what must hold.
      - A body that is not JSON makes the target critical.
    type: list
    elements: dict
    suboptions:
      path:
        description: A JMESPath expression, for example V(checks.database) or V(length(workers)).
        type: str
        required: true
      equals:
        description: Shorthand for O(json[].op=="==") with this O(json[].value).
        type: raw
      op:
        description:
          - The comparison. V(==) and V(!=) compare values (numbers match numeric strings, so V(200) equals V("200")).
          - V(>), V(>=), V(<), V(<=) compare numbers. V(contains) tests a substring, a list member or a mapping key.
          - V(regex) searches a Python regular expression in the value (non-strings as JSON text).
          - V(exists) checks the path selects something (not null); with O(json[].value=false), that it does not.
        type: str
        choices: ['==', '!=', '>', '>=', '<', '<=', contains, regex, exists]
      value:
        description: The value to compare with.
        type: raw
      severity:
        description: The state the target gets when this check fails; V(warning) suits optional dependencies.
        type: str
        choices: [critical, warning]
        default: critical
  headers_match:
    description:
      - Checks on response headers, like O(json) but by header name (case-insensitive).
      - Values of headers whose names look secret (cookies, tokens, keys, auth) are never shown in reasons.
    type: list
    elements: dict
    suboptions:
      name:
        description: The response header name.
        type: str
        required: true
      equals:
        description: Shorthand for O(headers_match[].op=="==") with this O(headers_match[].value).
        type: raw
      op:
        description: The comparison, as for O(json[].op).
        type: str
        choices: ['==', '!=', '>', '>=', '<', '<=', contains, regex, exists]
      value:
        description: The value to compare with.
        type: raw
      severity:
        description: The state the target gets when this check fails.
        type: str
        choices: [critical, warning]
        default: critical
  warn_ms:
    description: A response slower than this many milliseconds (the whole exchange) is a warning.
    type: float
  crit_ms:
    description: A response slower than this many milliseconds is critical.
    type: float
  warn_days:
    description: An C(https) certificate with fewer days left than this is a warning. When not set, V(30).
    type: int
  crit_days:
    description: An C(https) certificate with fewer days left than this (or expired) is critical. When not set, V(7).
    type: int
  return_body:
    description:
      - Return the first 4096 characters of the body as RV(targets[].body), and the parsed JSON as RV(targets[].json)
        when the body is JSON. When not set, V(false).
    type: bool
  concurrency:
    description: How many targets are probed at the same time.
    type: int
    default: 16
  wait:
    description:
      - Keep probing the targets that have not passed until all pass or O(wait_timeout) elapses.
      - A target passes when its state would not fail the task under O(fail_on) (with O(fail_on=never), when it is
        not critical).
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to keep trying in wait mode (0 or more). A probe that starts before the deadline runs to its own
        O(timeout), so the task may take up to one O(timeout) longer.
    type: float
    default: 60
  wait_delay:
    description: Seconds (0 or more) between the first and second attempt in wait mode; the delay doubles after each attempt.
    type: float
    default: 1
  wait_max_delay:
    description: The longest delay between attempts in wait mode.
    type: float
    default: 10
requirements:
  - jmespath (for O(json) checks)
  - cryptography (to read C(https) certificates; without it an C(https) target fails before any probing)
seealso:
  - module: runbook.ops.metrics_probe
'''

EXAMPLES = r'''
- name: Liveness and readiness of the app, with per-field readiness checks
  runbook.ops.http_probe:
    targets:
      - name: live
        url: http://127.0.0.1:8000/healthz
        body_contains: ok
      - name: ready
        url: http://127.0.0.1:8000/readyz
        json:
          - {path: status, equals: ready}
          - {path: checks.database, equals: ok}
          - {path: checks.redis, equals: ok, severity: warning}
    warn_ms: 500
    crit_ms: 1000

- name: Health gate after a deploy - wait up to two minutes for every target to pass
  runbook.ops.http_probe:
    url: https://app.example.com/health/ready
    wait: true
    wait_timeout: 120

- name: An app that checks ALLOWED_HOSTS, probed on one backend, behind a token
  runbook.ops.http_probe:
    url: http://10.0.0.12:8000/api/status
    host: app.internal
    api_token: "{{ app_api_token }}"
    json:
      - {path: queue.length, op: "<", value: 1000}

- name: TLS expiry of public endpoints, as a report that never fails the play
  runbook.ops.http_probe:
    targets:
      - url: https://www.example.com/
      - url: https://api.example.com/healthz
    warn_days: 30
    crit_days: 7
    fail_on: never
  register: tls

- name: A private CA
  runbook.ops.http_probe:
    url: https://db-admin.internal:8443/healthz
    ca_path: /etc/ssl/private-ca.pem
'''

RETURN = r'''
state:
  description: The worst state of all targets.
  returned: always
  type: str
  sample: warning
summary:
  description: How many targets are in each state.
  returned: always
  type: dict
  sample: {total: 3, ok: 2, warning: 1, critical: 0}
attempts:
  description: How many rounds of probing ran (1 without wait mode).
  returned: always
  type: int
  sample: 3
elapsed_ms:
  description: Wall time of the whole task in milliseconds.
  returned: always
  type: int
  sample: 1840
msg:
  description: One line with the counts and the reasons of every target that is not ok.
  returned: always
  type: str
  sample: "2 of 3 targets ok, overall warning - ready warning: JSON checks.redis is 'down', expected 'ok'"
targets:
  description: One result per target, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The target's name.
      type: str
      sample: ready
    url:
      description: The URL, with any password replaced by C(********).
      type: str
      sample: http://127.0.0.1:8000/readyz
    method:
      description: The HTTP method used.
      type: str
      sample: GET
    host:
      description: The C(Host) header sent, when overridden.
      type: str
      sample: app.internal
    status:
      description: The HTTP status code, or null when no response came back.
      type: int
      sample: 200
    latency_ms:
      description: Milliseconds for the whole exchange, or null without a response.
      type: float
      sample: 12.4
    state:
      description: V(ok), V(warning) or V(critical).
      type: str
      sample: critical
    reasons:
      description: Why the target is not ok, one human sentence per problem.
      type: list
      elements: str
      sample: ["status 500 not in [200]", "latency 734 ms over warning 500 ms"]
    cert:
      description:
        - The server certificate, for C(https) targets (read even when it failed verification).
        - C(days_left) counts whole days left, never rounded up; after expiry, C(expired) is true and C(days_left)
          is minus the whole days since.
      type: dict
      sample: {not_after: "2026-12-03T09:00:00Z", days_left: 9, expired: false, subject: CN=app.internal,
               issuer: CN=app.internal, dns_names: [app.internal]}
    attempts:
      description: How many times this target was probed.
      returned: when O(wait=true)
      type: int
      sample: 2
    body:
      description: The start of the body (4096 characters).
      returned: when O(return_body=true) and a response came back
      type: str
      sample: '{"status": "ready"}'
    body_truncated:
      description: Whether RV(targets[].body) is shorter than the real body.
      returned: when O(return_body=true) and a response came back
      type: bool
      sample: false
    json:
      description: The parsed JSON body.
      returned: when O(return_body=true) and the body is JSON
      type: raw
      sample: {status: ready}
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils import _http, _probe, _probe_target, _status


def argument_spec():
    per_target = dict(_probe_target.CONNECTION_ARGSPEC, **_probe_target.CHECK_ARGSPEC)
    spec = dict(per_target)
    spec.update(
        targets={"type": "list", "elements": "dict",
                 "options": dict(per_target, name={"type": "str"}, url={"type": "str", "required": True})},
        url={"type": "str"},
        name={"type": "str"},
        concurrency={"type": "int", "default": 16},
        wait={"type": "bool", "default": False},
        wait_timeout={"type": "float", "default": 60},
        wait_delay={"type": "float", "default": 1},
        wait_max_delay={"type": "float", "default": 10},
        fail_on=dict(_status.FAIL_ON_ARGSPEC),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[("targets", "url")], mutually_exclusive=[("targets", "url")])
    params = module.params
    shared = {key: params[key] for key in list(_probe_target.CONNECTION_ARGSPEC) + list(_probe_target.CHECK_ARGSPEC)}
    raw_targets = params["targets"] or [{"name": params["name"], "url": params["url"]}]
    if not _probe_target.HAS_JMESPATH and (shared["json"] or any(t.get("json") for t in raw_targets)):
        module.fail_json(msg=missing_required_lib("jmespath", reason="for json checks"))
    try:
        targets = [_probe_target.ProbeTarget.from_dict(t, shared, i) for i, t in enumerate(raw_targets)]
        if not _http.HAS_CRYPTOGRAPHY and any(target.scheme == "https" for target in targets):
            # Without it no certificate expiry is checked: an https target would read ok regardless.
            module.fail_json(msg=missing_required_lib("cryptography", reason="to read the certificates of https targets"))
        report = _probe.Prober(params["concurrency"]).run(
            targets, wait=params["wait"], wait_timeout=params["wait_timeout"], wait_delay=params["wait_delay"],
            wait_max_delay=params["wait_max_delay"], fail_on=params["fail_on"])
    except RunbookError as exc:
        fail_with(module, exc)
    failed = report.pop("failed")
    if failed:
        module.fail_json(changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()

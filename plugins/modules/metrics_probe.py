#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: metrics_probe
short_description: Scrape a Prometheus metrics endpoint and check values against warning and critical levels
version_added: 0.1.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Fetches one C(/metrics) endpoint (Prometheus text format; OpenMetrics output is tolerated), with the same
    connection, token, C(Host) and TLS options as M(runbook.ops.http_probe), parses it, and evaluates checks.
  - A check selects series by metric name and label matchers, aggregates them (V(sum) by default), or divides
    two such selections (a ratio such as 5xx responses over all responses), then compares the value with
    warning and critical levels.
  - "Levels describe the problem, like a Prometheus alerting rule: with O(checks[].op=>) and O(checks[].crit=0.05)
    the check is critical when the value is above 0.05. O(checks[].expect) is the opposite: an assertion that must
    hold (O(checks[].expect={op: '==', value: 1}) is critical unless the value is 1)."
  - The endpoint itself is critical when it cannot be reached, answers another status than 200 (a wrong token
    gives 401 or 403), or returns no valid samples; then every check is reported as not evaluated.
  - Lines that are not valid exposition text are skipped and listed in RV(parse_errors).
  - Read-only; it never changes anything and always reports C(changed=false).
extends_documentation_fragment:
  - runbook.ops.read_only_check
  - runbook.ops.http_target
options:
  url:
    description: The metrics URL, for example V(http://127.0.0.1:8000/metrics).
    type: str
    required: true
  checks:
    description: The checks to evaluate. Without checks the module only scrapes (see O(return_samples)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A label for results and messages. Defaults to the metric name.
        type: str
      metric:
        description:
          - The sample name to select, exactly as exposed (V(http_requests_total), V(request_seconds_bucket)).
          - Give either this or O(checks[].ratio).
        type: str
      labels:
        description:
          - Label matchers. A value is matched for equality; a value starting with V(=~) is an anchored regular
            expression, V(!~) a negated one, V(!=) inequality. An absent label matches V("").
          - "Example: V({code: '=~5..', method: GET})."
        type: dict
      ratio:
        description:
          - Divide two selections, each aggregated with O(checks[].aggregate). A numerator that matches no series
            counts as 0 (a counter that has not been incremented yet), unless the selection is a mistake (see
            O(checks[].missing)).
          - A denominator that matches nothing or sums to 0 leaves the ratio undefined (null); the check then
            takes the state O(checks[].missing).
        type: dict
        suboptions:
          numerator:
            description: The selection on top.
            type: dict
            required: true
            suboptions:
              metric:
                description: Sample name.
                type: str
                required: true
              labels:
                description: Label matchers, as in O(checks[].labels).
                type: dict
          denominator:
            description: The selection below.
            type: dict
            required: true
            suboptions:
              metric:
                description: Sample name.
                type: str
                required: true
              labels:
                description: Label matchers, as in O(checks[].labels).
                type: dict
      aggregate:
        description: How the matched series become one value. V(count) counts series (0 when none match).
        type: str
        choices: [sum, max, min, avg, count]
        default: sum
      op:
        description: The comparison used by numeric O(checks[].warn) and O(checks[].crit) levels.
        type: str
        choices: ['>', '>=', '<', '<=', '==', '!=']
        default: '>'
      warn:
        description:
          - "The warning condition. A number is compared with O(checks[].op); a mapping is V({op, value}),
            V({between: [low, high]}) or V({outside: [low, high]}) (bounds included in the range)."
        type: raw
      crit:
        description: The critical condition, in the same forms as O(checks[].warn). Checked before the warning.
        type: raw
      expect:
        description: A condition that must hold, in the same forms as O(checks[].warn); critical when it does not.
        type: raw
      missing:
        description:
          - The state when there is no value to compare - no series matched, an undefined ratio, or NaN
            (a summary without observations). Use V(ok) for error rates of services that may have had no traffic.
          - "A selection that matches nothing because it cannot match this scrape is unknown, never V(ok): the metric
            is not in the scrape at all (a misspelt name; a close name is suggested), or a label matcher names a label
            that none of the metric's series carry (V(code) where the service says V(status); the reason lists the
            labels it has). Such a check takes this state, or V(warning) when this is V(ok), and its reason starts
            with C(unknown:). A metric declared by C(# TYPE) without series yet is no mistake."
        type: str
        choices: [ok, warning, critical]
        default: critical
  return_samples:
    description: Sample names whose series to return in RV(samples), for later tasks or reports.
    type: list
    elements: str
    default: []
requirements:
  - cryptography (to read C(https) certificates; without it an C(https) target fails before any probing)
seealso:
  - module: runbook.ops.http_probe
'''

EXAMPLES = r'''
- name: Error rate, queue length and up, from a token-guarded endpoint that checks ALLOWED_HOSTS
  runbook.ops.metrics_probe:
    url: http://127.0.0.1:8000/metrics
    host: app.internal
    metrics_secret: "{{ metrics_secret }}"
    checks:
      - name: error rate
        ratio:
          numerator: {metric: http_requests_total, labels: {code: "=~5.."}}
          denominator: {metric: http_requests_total}
        warn: 0.01
        crit: 0.05
        missing: ok
      - name: queue length
        metric: app_queue_length
        warn: 100
        crit: 1000
      - name: database up
        metric: app_database_up
        expect: {op: "==", value: 1}

- name: Memory use of the host from the node exporter, as a report
  runbook.ops.metrics_probe:
    url: http://127.0.0.1:9100/metrics
    checks:
      - name: load average
        metric: node_load1
        crit: {outside: [0, 8]}
    return_samples: [node_memory_MemAvailable_bytes]
    fail_on: never
  register: node
'''

RETURN = r'''
state:
  description: The worst state of the endpoint and all checks.
  returned: always
  type: str
  sample: warning
msg:
  description: One line with the counts and the reasons of every check that is not ok.
  returned: always
  type: str
  sample: "2 of 3 checks ok, overall critical - error rate critical: ratio ... = 0.0909 (30 / 330) is > 0.05 (critical)"
url:
  description: The URL scraped, with any password replaced by C(********).
  returned: always
  type: str
  sample: http://127.0.0.1:8000/metrics
status:
  description: The HTTP status, or null when no response came back.
  returned: always
  type: int
  sample: 200
latency_ms:
  description: Milliseconds for the scrape.
  returned: always
  type: float
  sample: 8.2
cert:
  description: The server certificate for C(https) (not_after, days_left, subject, issuer, dns_names).
  returned: always
  type: dict
  sample: null
reasons:
  description: Problems of the endpoint itself (unreachable, status, TLS, not Prometheus text, skipped lines).
  returned: always
  type: list
  elements: str
  sample: ["status 401 not in [200] (the server refused the request: check the token and the Host header)"]
series:
  description: How many samples the scrape held.
  returned: always
  type: int
  sample: 271
parse_errors:
  description: Up to 20 skipped lines, each as C(line N, why, the line).
  returned: always
  type: list
  elements: str
  sample: []
summary:
  description: How many checks are in each state.
  returned: always
  type: dict
  sample: {total: 3, ok: 2, warning: 0, critical: 1}
checks:
  description: One result per check, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: error rate
    selector:
      description: What was selected, in PromQL-like notation.
      type: str
      sample: http_requests_total{code=~"5.."} / http_requests_total
    aggregate:
      description: The aggregation used.
      type: str
      sample: sum
    value:
      description: The value compared, or null when there was none. V(+Inf)/V(-Inf) come back as strings.
      type: float
      sample: 0.0909
    numerator:
      description: The aggregated numerator of a ratio.
      returned: for ratio checks that were evaluated
      type: float
      sample: 30
    denominator:
      description: The aggregated denominator of a ratio (null when nothing matched).
      returned: for ratio checks that were evaluated
      type: float
      sample: 330
    series:
      description: How many series matched (numerator and denominator together for a ratio).
      type: int
      sample: 4
    state:
      description: V(ok), V(warning) or V(critical).
      type: str
      sample: critical
    breached:
      description: The level that was breached (V(warning) or V(critical)), or null.
      type: str
      sample: critical
    reasons:
      description: Why the check is not ok.
      type: list
      elements: str
      sample: ["app_queue_length = 150 (sum of 2 series) is > 100 (warning)",
               "unknown: numerator http_requests_total{code=~\"5..\"} matched no series; no http_requests_total series
                has the label code (its labels: method, path, status) (warning)"]
samples:
  description: For each name in O(return_samples), its series (name, labels, value, timestamp).
  returned: always
  type: dict
  sample: {node_load1: [{name: node_load1, labels: {}, value: 0.42, timestamp: null}]}
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils import _http, _probe_target, _prometheus, _status

_SELECTION = {"type": "dict", "required": True,
              "options": {"metric": {"type": "str", "required": True}, "labels": {"type": "dict"}}}


def argument_spec():
    spec = dict(_probe_target.CONNECTION_ARGSPEC)
    spec.update(
        url={"type": "str", "required": True},
        checks={"type": "list", "elements": "dict", "default": [], "options": {
            "name": {"type": "str"},
            "metric": {"type": "str"},
            "labels": {"type": "dict"},
            "ratio": {"type": "dict", "options": {"numerator": _SELECTION, "denominator": _SELECTION}},
            "aggregate": {"type": "str", "choices": list(_prometheus.AGGREGATIONS), "default": "sum"},
            "op": {"type": "str", "choices": list(_prometheus.COMPARISONS), "default": ">"},
            "warn": {"type": "raw"},
            "crit": {"type": "raw"},
            "expect": {"type": "raw"},
            "missing": {"type": "str", "choices": list(_status.STATES), "default": "critical"},
        }},
        return_samples={"type": "list", "elements": "str", "default": []},
        fail_on=dict(_status.FAIL_ON_ARGSPEC),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    target_spec = {key: params[key] for key in _probe_target.CONNECTION_ARGSPEC}
    target_spec["url"] = params["url"]
    try:
        target = _probe_target.ProbeTarget.from_dict(target_spec)
        if not _http.HAS_CRYPTOGRAPHY and target.scheme == "https":
            module.fail_json(msg=missing_required_lib("cryptography", reason="to read the certificate of an https url"))
        checks = [_prometheus.MetricCheck.from_dict(c, i) for i, c in enumerate(params["checks"])]
        report = _prometheus.scrape_and_check(target, checks, params["return_samples"], params["fail_on"])
    except RunbookError as exc:
        fail_with(module, exc)
    if report["parse_errors"]:
        module.warn("%s: %d line(s) of the scrape were skipped; see parse_errors"
                    % (report["url"], len(report["parse_errors"])))
    failed = report.pop("failed")
    if failed:
        module.fail_json(changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()

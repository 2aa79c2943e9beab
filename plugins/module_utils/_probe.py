# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP probes: the evaluation of a response against its target, and the concurrent runner with its
wait loop.

What to probe is a ``_probe_target.ProbeTarget``; the request itself is ``_http.fetch``.  Plain Python,
no Ansible imports.  Secrets of a target never appear in results or reasons: any text that may hold
one goes through ``_http.redact()``.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time

from ansible_collections.runbook.ops.plugins.module_utils import _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError
from ansible_collections.runbook.ops.plugins.module_utils._http import fetch, redact
from ansible_collections.runbook.ops.plugins.module_utils._probe_target import MISSING, positive_number, show

# Response headers whose values are never echoed in reasons.
SENSITIVE_HEADER_RE = re.compile(r"cookie|auth|token|secret|key|session|password", re.I)
BODY_EXCERPT_CHARS = 4096


def _redact_tree(value, secrets):
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [_redact_tree(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(k, secrets): _redact_tree(v, secrets) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------
# Evaluation

def evaluate(target, response):
    """The per-target result dict for a response."""
    result = {"name": target.name, "url": target.display_url, "method": target.method, "host": target.host,
              "status": response.status, "latency_ms": response.latency_ms, "state": "ok", "reasons": [],
              "cert": response.cert.as_dict() if response.cert else None}
    found = []  # (severity, reason)
    if response.error:
        found.append(("critical", response.error))
    if response.cert is not None:
        days = response.cert.days_left
        if response.cert.expired:
            found.append(("critical", "certificate expired %s ago (%s)" % (_days(-days), response.cert.not_after)))
        elif days < target.crit_days:
            found.append(("critical", "certificate expires in %d days, under critical %d days (%s)"
                          % (days, target.crit_days, response.cert.not_after)))
        elif days < target.warn_days:
            found.append(("warning", "certificate expires in %d days, under warning %d days (%s)"
                          % (days, target.warn_days, response.cert.not_after)))
    if response.error is None:
        found += _check_response(target, response, result)
    result["reasons"] = [reason for _severity, reason in found]
    result["state"] = _status.worst(severity for severity, _reason in found)
    return result


def _days(count):
    return "less than a day" if count == 0 else "1 day" if count == 1 else "%d days" % count


def _check_response(target, response, result):
    found = []
    if response.status not in target.status:
        hint = ""
        if response.status in (401, 403):
            hint = " (the server refused the request: check the token and the Host header)"
        found.append(("critical", "status %d not in [%s]%s"
                      % (response.status, ", ".join(map(str, target.status)), hint)))
    latency = response.latency_ms
    if target.crit_ms is not None and latency > target.crit_ms:
        found.append(("critical", "latency %d ms over critical %d ms" % (round(latency), target.crit_ms)))
    elif target.warn_ms is not None and latency > target.warn_ms:
        found.append(("warning", "latency %d ms over warning %d ms" % (round(latency), target.warn_ms)))
    text = response.text()
    if response.truncated and (target.body_contains or target.body_regex or target.json_checks):
        found.append(("warning", "body longer than the read limit; checks saw only the start of it"))
    if target.body_contains is not None and target.body_contains not in text:
        found.append(("critical", "body does not contain %s" % show(target.body_contains)))
    if target.body_regex is not None and not target.body_regex.search(text):
        found.append(("critical", "body does not match regex %s" % show(target.body_regex.pattern)))
    document = MISSING
    if target.json_checks or target.return_body:
        try:
            document = json.loads(text)
        except ValueError as exc:
            if target.json_checks:
                found.append(("critical", "body is not valid JSON (%s)" % exc.msg))
    if document is not MISSING:
        for check in target.json_checks:
            reason = check.evaluate_document(document)
            if reason:
                found.append((check.severity, redact(reason, target.secrets)))
    for check in target.header_checks:
        actual = response.header(check.subject)
        reason = check.evaluate(MISSING if actual is None else actual,
                                redact_value=bool(SENSITIVE_HEADER_RE.search(check.subject)))
        if reason:
            found.append((check.severity, redact(reason, target.secrets)))
    if target.return_body:
        result["body"] = redact(text[:BODY_EXCERPT_CHARS], target.secrets)
        result["body_truncated"] = response.truncated or len(text) > BODY_EXCERPT_CHARS
        if document is not MISSING:
            result["json"] = _redact_tree(document, target.secrets)
    return found


def probe(target):
    return evaluate(target, fetch(target))


# ----------------------------------------------------------------------------------------------
# Many targets at once

class Prober:
    """Probes targets concurrently with a bounded pool of ``concurrency`` threads."""

    def __init__(self, concurrency=16, clock=time.monotonic, sleep=time.sleep):
        if int(concurrency) < 1:
            raise ProbeError("concurrency must be at least 1")
        self.concurrency = int(concurrency)
        self.clock = clock
        self.sleep = sleep

    def probe_all(self, targets):
        if not targets:
            return []
        workers = min(self.concurrency, len(targets))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(probe, targets))

    def run(self, targets, wait=False, wait_timeout=60.0, wait_delay=1.0, wait_max_delay=10.0,
            fail_on="critical"):
        """Probe every target once, or (wait) until all pass or ``wait_timeout`` elapses.

        Returns a report dict: targets (results in input order), state, summary, attempts, elapsed_ms.
        In wait mode each result also has ``attempts``; targets that passed are not probed again.
        """
        if fail_on not in _status.FAIL_ON:
            raise ProbeError("fail_on must be one of %s" % ", ".join(_status.FAIL_ON))
        wait_timeout, wait_delay, wait_max_delay = (
            positive_number(value, name, zero_allowed=True)
            for name, value in (("wait_timeout", wait_timeout), ("wait_delay", wait_delay),
                                ("wait_max_delay", wait_max_delay)))
        started = self.clock()
        results = [None] * len(targets)
        tries = [0] * len(targets)
        pending = list(range(len(targets)))
        attempts = 0
        delay = max(float(wait_delay), 0.05)
        while pending:
            attempts += 1
            for index, result in zip(pending, self.probe_all([targets[i] for i in pending])):
                results[index] = result
                tries[index] += 1
            pending = [i for i in pending if not _status.passes(results[i]["state"], fail_on)]
            if not wait or not pending:
                break
            remaining = float(wait_timeout) - (self.clock() - started)
            if remaining <= 0:
                break
            self.sleep(min(delay, remaining))
            delay = min(delay * 2, max(float(wait_max_delay), float(wait_delay)))
        if wait:
            for result, count in zip(results, tries):
                result["attempts"] = count
        return report(results, attempts, (self.clock() - started) * 1000, fail_on)


def report(results, attempts, elapsed_ms, fail_on="critical"):
    """The task result: per-target results, the overall state, counts and one line for the person on call."""
    overview = _status.overview(results, "targets")
    return {"targets": results, "state": overview["state"], "summary": overview["summary"], "attempts": attempts,
            "elapsed_ms": round(elapsed_ms), "msg": overview["msg"],
            "failed": _status.fails(overview["state"], fail_on)}

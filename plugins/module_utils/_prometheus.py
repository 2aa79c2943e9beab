# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus text exposition format: parser, series selectors and threshold checks.

Plain Python, no Ansible imports.

Parsing policy: a line that is not valid exposition text is skipped and recorded in
``Exposition.errors`` as ``"line N: <why>"`` (``parse(text, strict=True)`` raises ProbeError on the
first one instead).  One odd line from an exporter should not blind every check, but the caller must
see it: metrics_probe reports the errors, and treats a body without any valid sample as not being
Prometheus text at all.

Check semantics: ``warn`` and ``crit`` are alert conditions, like Prometheus alerting rules: the
check is in that state when the value *satisfies* the condition (``op: ">"``, ``crit: 0.05`` means
"critical when the value is above 0.05").  ``expect`` is the opposite, an assertion that must hold
(``expect: {op: "==", value: 1}`` means "critical unless the value is 1").
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils import _http, _probe, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError

METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped",
                # OpenMetrics types, tolerated so its output parses too.
                "unknown", "info", "stateset", "gaugehistogram")
COMPARISONS = (">", ">=", "<", "<=", "==", "!=")  # the order the metrics_probe docs list them in
AGGREGATIONS = ("sum", "max", "min", "avg", "count")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum")

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass
class Sample:
    """One line of exposition: ``name{labels} value [timestamp]``."""

    name: str
    labels: dict
    value: float
    timestamp: float | int | None = None

    def as_dict(self):
        return {"name": self.name, "labels": dict(self.labels), "value": _json_number(self.value),
                "timestamp": self.timestamp}


@dataclass
class MetricFamily:
    name: str
    type: str = "untyped"
    help: str = ""


@dataclass
class Exposition:
    """The parsed document: samples in order, families by name, skipped lines with reasons."""

    samples: list = field(default_factory=list)
    families: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    def family_of(self, sample_name):
        """The family a sample belongs to (``x_bucket`` -> histogram ``x``), or an untyped one."""
        return self.declared_family(sample_name) or MetricFamily(sample_name)

    def declared_family(self, sample_name):
        """The family that a ``# TYPE`` or ``# HELP`` line declares for a sample name, or None."""
        if sample_name in self.families:
            return self.families[sample_name]
        for suffix in _SUFFIXES:
            if sample_name.endswith(suffix):
                base = self.families.get(sample_name[:-len(suffix)])
                if base is not None:
                    return base
        return None

    def select(self, selector):
        return [sample for sample in self.samples if selector.matches(sample)]

    def series_of(self, name):
        return [sample for sample in self.samples if sample.name == name]

    def exposes(self, name):
        """Whether the scrape has this metric: series of it, or a declaration (a metric without series yet)."""
        return self.declared_family(name) is not None or any(sample.name == name for sample in self.samples)


class _ParseError(Exception):
    pass


def parse(text, strict=False):
    """Parse Prometheus (or OpenMetrics) text into an Exposition.

    Bad lines are skipped and listed in ``errors``; with ``strict=True`` the first one raises ProbeError.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    result = Exposition()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            if line.startswith("#"):
                if line == "# EOF":  # OpenMetrics end marker: anything after it is not part of the document.
                    break
                _parse_comment(line, result)
            else:
                result.samples.append(_parse_sample(line))
        except _ParseError as exc:
            message = "line %d: %s: %s" % (number, exc, _excerpt(line))
            if strict:
                raise ProbeError("invalid Prometheus exposition text, " + message) from None
            result.errors.append(message)
    return result


def _excerpt(line, limit=80):
    return line if len(line) <= limit else line[:limit] + "..."


def _parse_comment(line, result):
    parts = line[1:].lstrip().split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
        return  # an ordinary comment
    keyword, name = parts[0], parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    if not _NAME_RE.fullmatch(name):
        raise _ParseError("invalid metric name %r in %s" % (name, keyword))
    family = result.families.setdefault(name, MetricFamily(name))
    if keyword == "HELP":
        family.help = _unescape_help(rest)
    else:
        kind = rest.strip().lower()
        if kind not in METRIC_TYPES:
            raise _ParseError("unknown metric type %r" % rest.strip())
        family.type = kind


def _unescape_help(text):
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in ("\\", "n"):
            out.append("\n" if text[index + 1] == "n" else "\\")
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _parse_quoted(line, index):
    """Parse a double-quoted string starting at ``line[index] == '"'``; return (value, next index)."""
    out = []
    index += 1
    while index < len(line):
        char = line[index]
        if char == "\\":
            if index + 1 >= len(line):
                break
            escaped = line[index + 1]
            if escaped not in _LABEL_ESCAPES:
                raise _ParseError("invalid escape sequence '\\%s' in label value" % escaped)
            out.append(_LABEL_ESCAPES[escaped])
            index += 2
            continue
        if char == '"':
            return "".join(out), index + 1
        out.append(char)
        index += 1
    raise _ParseError("unterminated quoted string")


def _skip_blanks(line, index):
    while index < len(line) and line[index] in " \t":
        index += 1
    return index


def _parse_labels(line, index):
    """Parse ``{a="1",b="2"}`` starting at ``line[index] == '{'``.

    Returns (quoted metric name or None, labels, next index); the quoted name is the Prometheus 3
    UTF-8 form ``{"my.metric", a="1"}``.
    """
    labels = {}
    quoted_name = None
    index += 1
    while True:
        index = _skip_blanks(line, index)
        if index >= len(line):
            raise _ParseError("unterminated label set")
        if line[index] == "}":
            return quoted_name, labels, index + 1
        if line[index] == '"':
            label, index = _parse_quoted(line, index)
            index = _skip_blanks(line, index)
            if index < len(line) and line[index] in ",}":
                if quoted_name is not None or labels:
                    raise _ParseError("unexpected quoted metric name in label set")
                quoted_name = label
                if line[index] == ",":
                    index += 1
                continue
        else:
            match = _LABEL_NAME_RE.match(line, index)
            if not match:
                raise _ParseError("invalid label name")
            label, index = match.group(0), match.end()
        index = _skip_blanks(line, index)
        if index >= len(line) or line[index] != "=":
            raise _ParseError("expected '=' after label %r" % label)
        index = _skip_blanks(line, index + 1)
        if index >= len(line) or line[index] != '"':
            raise _ParseError("label %r value is not quoted" % label)
        value, index = _parse_quoted(line, index)
        if label in labels:
            raise _ParseError("duplicate label %r" % label)
        labels[label] = value
        index = _skip_blanks(line, index)
        if index < len(line) and line[index] == ",":
            index += 1
        elif index < len(line) and line[index] != "}":
            raise _ParseError("expected ',' or '}' after label %r" % label)


def parse_float(token):
    """A sample value as Go's ParseFloat reads it (NaN, +Inf, -Inf, exponents, hex floats)."""
    lowered = token.lower()
    if "_" in token or not token:
        raise ValueError(token)
    if lowered in ("nan", "+nan", "-nan"):
        return math.nan
    if lowered.lstrip("+-") in ("inf", "infinity"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered.lstrip("+-").startswith("0x"):
        return float.fromhex(token)
    return float(token)


def _parse_sample(line):
    if line.startswith("{"):
        name, labels, index = _parse_labels(line, 0)
        if name is None:
            raise _ParseError("label set without a metric name")
    else:
        match = _NAME_RE.match(line)
        if not match:
            raise _ParseError("invalid metric name")
        name, index = match.group(0), match.end()
        labels = {}
        if index < len(line) and line[index] == "{":
            quoted, labels, index = _parse_labels(line, index)
            if quoted is not None:
                raise _ParseError("metric name given twice")
    # OpenMetrics exemplars (" # {trace_id="..."} 0.09 ...") come after the value; they are ignored.
    rest = line[index:]
    hash_at = rest.find(" # ")
    if hash_at >= 0:
        rest = rest[:hash_at]
    if rest and rest[0] not in " \t":
        raise _ParseError("expected a space before the value")
    tokens = rest.split()
    if not tokens:
        raise _ParseError("missing value")
    if len(tokens) > 2:
        raise _ParseError("unexpected text after the timestamp")
    try:
        value = parse_float(tokens[0])
    except ValueError:
        raise _ParseError("invalid value %r" % tokens[0]) from None
    timestamp = None
    if len(tokens) == 2:
        try:
            timestamp = int(tokens[1])
        except ValueError:
            try:
                timestamp = float(tokens[1])
            except ValueError:
                raise _ParseError("invalid timestamp %r" % tokens[1]) from None
            if "_" in tokens[1] or not math.isfinite(timestamp):
                raise _ParseError("invalid timestamp %r" % tokens[1])
    return Sample(name, labels, value, timestamp)


# ----------------------------------------------------------------------------------------------
# Selectors

@dataclass
class LabelMatcher:
    label: str
    op: str  # one of = != =~ !~
    value: str
    pattern: re.Pattern | None = None

    def matches(self, labels):
        actual = labels.get(self.label, "")  # an absent label matches "" as in PromQL
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = self.pattern.fullmatch(actual) is not None  # PromQL regexes are anchored
        return found if self.op == "=~" else not found

    def describe(self):
        return '%s%s"%s"' % (self.label, self.op, self.value.replace("\\", "\\\\").replace('"', '\\"'))


def _label_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Selector:
    """A metric name plus label matchers.

    ``labels`` maps a label to a value; a value may start with ``=~`` (anchored regex), ``!~``,
    ``!=`` or ``=`` (the default, equality).  ``{"code": "=~5.."}`` selects every 5xx series.
    """

    metric: str
    matchers: list = field(default_factory=list)

    @classmethod
    def from_spec(cls, metric, labels=None, where="selector"):
        if not isinstance(metric, str) or not _NAME_RE.fullmatch(metric or ""):
            raise ProbeError("%s: invalid metric name %r" % (where, metric))
        if labels is not None and not isinstance(labels, dict):
            raise ProbeError("%s: labels must be a mapping of label name to value" % where)
        matchers = []
        for label, raw in (labels or {}).items():
            if not _LABEL_NAME_RE.fullmatch(str(label)):
                raise ProbeError("%s: invalid label name %r" % (where, label))
            text = _label_text(raw)
            op = "="
            for prefix in ("=~", "!~", "!=", "="):
                if text.startswith(prefix):
                    op, text = prefix, text[len(prefix):]
                    break
            pattern = None
            if op in ("=~", "!~"):
                try:
                    pattern = re.compile(text)
                except re.error as exc:
                    raise ProbeError("%s: invalid regex %r for label %r: %s" % (where, text, label, exc)) from None
            matchers.append(LabelMatcher(str(label), op, text, pattern))
        return cls(metric, matchers)

    def matches(self, sample):
        return sample.name == self.metric and all(m.matches(sample.labels) for m in self.matchers)

    def mistake(self, exposition):
        """Why this selector cannot match anything in ``exposition`` - the metric is not there, or a matcher
        asks for a label that none of its series has - or None when matching nothing may be true data."""
        if not exposition.exposes(self.metric):
            names = sorted({sample.name for sample in exposition.samples} | set(exposition.families))
            close = difflib.get_close_matches(self.metric, names, n=1, cutoff=0.85)
            hint = " (did you mean %s?)" % close[0] if close else ""
            return "the scrape has no metric %s%s" % (self.metric, hint)
        series = exposition.series_of(self.metric)
        if not series:
            return None  # declared without series: nothing counted yet
        present = sorted(set().union(*(sample.labels for sample in series)))
        absent = [m.label for m in self.matchers if m.label not in present and not m.matches({})]
        if not absent:
            return None
        return "no %s series has the label %s (its labels: %s)" % (
            self.metric, ", ".join(absent), ", ".join(present) or "none")

    def describe(self):
        if not self.matchers:
            return self.metric
        return "%s{%s}" % (self.metric, ",".join(m.describe() for m in self.matchers))


def aggregate(values, how):
    if how == "count":
        return float(len(values))
    if not values:
        return None
    if how == "sum":
        return math.fsum(values) if all(math.isfinite(v) for v in values) else sum(values)
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return sum(values) / len(values)


# ----------------------------------------------------------------------------------------------
# Conditions and checks

def _number(value, where):
    if isinstance(value, bool):
        raise ProbeError("%s: %r is not a number" % (where, value))
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return parse_float(str(value).strip())
    except ValueError:
        raise ProbeError("%s: %r is not a number" % (where, value)) from None


@dataclass
class Condition:
    """``value <op> threshold``, or a closed range ``between``/``outside`` [low, high]."""

    kind: str  # compare | between | outside
    op: str = ">"
    threshold: float = 0.0
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def from_spec(cls, spec, default_op, where):
        if isinstance(spec, dict):
            unknown = set(spec) - {"op", "value", "between", "outside"}
            if unknown:
                raise ProbeError("%s: unknown key(s) %s; use op/value, between or outside"
                                 % (where, ", ".join(sorted(map(str, unknown)))))
            ranges = [key for key in ("between", "outside") if spec.get(key) is not None]
            if ranges:
                if len(ranges) > 1 or spec.get("value") is not None:
                    raise ProbeError("%s: give only one of value, between, outside" % where)
                bounds = spec[ranges[0]]
                if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
                    raise ProbeError("%s: %s needs a list of two numbers [low, high]" % (where, ranges[0]))
                low, high = (_number(b, where) for b in bounds)
                if low > high:
                    raise ProbeError("%s: %s range [%s, %s] has low above high"
                                     % (where, ranges[0], fmt(low), fmt(high)))
                return cls(ranges[0], low=low, high=high)
            if spec.get("value") is None:
                raise ProbeError("%s: a condition needs value, between or outside" % where)
            op = spec.get("op") or default_op
            value = spec["value"]
        else:
            op, value = default_op, spec
        if op not in COMPARISONS:
            raise ProbeError("%s: unknown comparison %r; use one of %s" % (where, op, " ".join(COMPARISONS)))
        return cls("compare", op=op, threshold=_number(value, where))

    def holds(self, value):
        if self.kind == "between":
            return self.low <= value <= self.high
        if self.kind == "outside":
            return value < self.low or value > self.high
        return _status.compare(value, self.op, self.threshold)

    def describe(self):
        if self.kind == "compare":
            return "%s %s" % (self.op, fmt(self.threshold))
        return "%s [%s, %s]" % (self.kind, fmt(self.low), fmt(self.high))


def fmt(value):
    """Numbers for humans: 150 rather than 150.0, 0.0833333 rather than 0.08333333333333333."""
    if value is None:
        return "null"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return "%.6g" % value


def _json_number(value):
    """NaN and infinities are not JSON: return them as the strings Prometheus uses."""
    if value is None or math.isfinite(value):
        return value
    return fmt(value)


@dataclass
class MetricCheck:
    """One check against a scrape: a series selection or a ratio, and alert levels."""

    name: str
    selector: Selector | None = None
    numerator: Selector | None = None
    denominator: Selector | None = None
    aggregate: str = "sum"
    warn: Condition | None = None
    crit: Condition | None = None
    expect: Condition | None = None
    missing: str = "critical"

    @classmethod
    def from_dict(cls, spec, index=0):
        if not isinstance(spec, dict):
            raise ProbeError("check %d: must be a mapping" % (index + 1))
        name = spec.get("name") or spec.get("metric") or "check %d" % (index + 1)
        where = "check %r" % name
        has_metric, has_ratio = spec.get("metric") is not None, spec.get("ratio") is not None
        if has_metric == has_ratio:
            raise ProbeError("%s: give exactly one of metric or ratio" % where)
        how = spec.get("aggregate") or "sum"
        if how not in AGGREGATIONS:
            raise ProbeError("%s: unknown aggregate %r; use one of %s" % (where, how, ", ".join(AGGREGATIONS)))
        missing = spec.get("missing") or "critical"
        if missing not in _status.STATES:
            raise ProbeError("%s: missing must be one of %s" % (where, ", ".join(_status.STATES)))
        op = spec.get("op") or ">"
        if op not in COMPARISONS:
            raise ProbeError("%s: unknown comparison %r; use one of %s" % (where, op, " ".join(COMPARISONS)))
        check = cls(name=name, aggregate=how, missing=missing)
        if has_metric:
            check.selector = Selector.from_spec(spec["metric"], spec.get("labels"), where)
        else:
            ratio = spec["ratio"]
            if not isinstance(ratio, dict) or not ratio.get("numerator") or not ratio.get("denominator"):
                raise ProbeError("%s: ratio needs numerator and denominator, each {metric, labels}" % where)
            for part in ("numerator", "denominator"):
                if not isinstance(ratio[part], dict):
                    raise ProbeError("%s: ratio %s must be a mapping {metric, labels}" % (where, part))
            check.numerator = Selector.from_spec(ratio["numerator"].get("metric"),
                                                 ratio["numerator"].get("labels"), where + " numerator")
            check.denominator = Selector.from_spec(ratio["denominator"].get("metric"),
                                                   ratio["denominator"].get("labels"), where + " denominator")
        for level in ("warn", "crit", "expect"):
            if spec.get(level) is not None:
                setattr(check, level, Condition.from_spec(spec[level], op, "%s %s" % (where, level)))
        if not (check.warn or check.crit or check.expect):
            raise ProbeError("%s: give at least one of warn, crit or expect" % where)
        return check

    def describe(self):
        if self.selector is not None:
            return self.selector.describe()
        return "%s / %s" % (self.numerator.describe(), self.denominator.describe())

    def evaluate(self, exposition):
        """Return a result dict: name, state, value, breached, series, reasons (and ratio parts)."""
        result = {"name": self.name, "selector": self.describe(), "aggregate": self.aggregate,
                  "value": None, "state": "ok", "breached": None, "series": 0, "reasons": []}
        if self.selector is not None:
            values = [s.value for s in exposition.select(self.selector)]
            result["series"] = len(values)
            mistake = None if values else self.selector.mistake(exposition)
            if mistake:
                return self._unknown(result, ["%s matched no series; %s" % (self.describe(), mistake)])
            value = aggregate(values, self.aggregate)
            if value is None:
                return self._no_value(result, "no series matched %s" % self.describe())
            detail = "%s of %d series" % (self.aggregate, len(values))
        else:
            numerators = [s.value for s in exposition.select(self.numerator)]
            denominators = [s.value for s in exposition.select(self.denominator)]
            result["series"] = len(numerators) + len(denominators)
            mistakes = []
            for part, selector, matched in (("numerator", self.numerator, numerators),
                                            ("denominator", self.denominator, denominators)):
                mistake = None if matched else selector.mistake(exposition)
                if mistake:
                    mistakes.append("%s %s matched no series; %s" % (part, selector.describe(), mistake))
            if mistakes:
                result["numerator"] = result["denominator"] = None
                return self._unknown(result, mistakes)
            # A counter with no series yet (no 5xx so far) counts as 0 in the numerator.
            top = aggregate(numerators, self.aggregate) if numerators else 0.0
            bottom = aggregate(denominators, self.aggregate)
            result["numerator"], result["denominator"] = _json_number(top), _json_number(bottom)
            if bottom is None:
                return self._no_value(result, "ratio undefined: denominator %s matched no series"
                                      % self.denominator.describe())
            if bottom == 0:
                return self._no_value(result, "ratio undefined: denominator %s is 0"
                                      % self.denominator.describe())
            value = top / bottom
            detail = "%s / %s" % (fmt(top), fmt(bottom))
        if math.isnan(value):
            return self._no_value(result, "%s is NaN (%s)" % (self.describe(), detail))
        result["value"] = _json_number(value)
        label = "ratio " + self.describe() if self.selector is None else self.describe()
        if self.crit is not None and self.crit.holds(value):
            result.update(state="critical", breached="critical")
            result["reasons"].append("%s = %s (%s) is %s (critical)" % (label, fmt(value), detail, self.crit.describe()))
        elif self.expect is not None and not self.expect.holds(value):
            result.update(state="critical", breached="critical")
            result["reasons"].append("%s = %s (%s), expected %s" % (label, fmt(value), detail, self.expect.describe()))
        elif self.warn is not None and self.warn.holds(value):
            result.update(state="warning", breached="warning")
            result["reasons"].append("%s = %s (%s) is %s (warning)" % (label, fmt(value), detail, self.warn.describe()))
        return result

    def _unknown(self, result, reasons):
        """A selector that cannot match this scrape is a mistake to fix, never ok: the state of
        ``missing``, or warning when that is ok."""
        state = "warning" if self.missing == "ok" else self.missing
        result.update(state=state, breached=state)
        result["reasons"] += ["unknown: %s (%s)" % (reason, state) for reason in reasons]
        return result

    def _no_value(self, result, reason):
        result["state"] = self.missing
        result["breached"] = None if self.missing == "ok" else self.missing
        result["reasons"].append(reason if self.missing == "ok" else "%s (%s)" % (reason, self.missing))
        return result


# ----------------------------------------------------------------------------------------------
# Scrape one endpoint and run checks (metrics_probe)

ACCEPT = "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5,*/*;q=0.1"
MAX_SCRAPE_BYTES = 32 * 1024 * 1024


def scrape(target, fetch=None):
    """Fetch ``target`` (a _probe_target.ProbeTarget) once and parse it.

    Returns ``(report, exposition)``: ``report`` has url, status, latency_ms, cert, reasons,
    parse_errors, series and ``state`` (of the endpoint itself: critical when it cannot be reached,
    answers another status, is truncated or holds no samples); ``exposition`` is None when critical.
    """
    if not any(name.lower() == "accept" for name in target.headers):
        target.headers["Accept"] = ACCEPT
    response = (fetch or _http.fetch)(target, max_body_bytes=MAX_SCRAPE_BYTES)
    endpoint = _probe.evaluate(target, response)
    report = {"url": endpoint["url"], "status": endpoint["status"], "latency_ms": endpoint["latency_ms"],
              "cert": endpoint["cert"], "reasons": list(endpoint["reasons"]), "parse_errors": [], "series": 0,
              "state": endpoint["state"]}
    if report["state"] == "critical":
        return report, None
    exposition = parse(response.text())
    report["series"] = len(exposition.samples)
    report["parse_errors"] = exposition.errors[:20]
    if response.truncated:
        report["state"] = "critical"
        report["reasons"].append("metrics body larger than %d bytes; refusing to judge a partial scrape"
                                 % MAX_SCRAPE_BYTES)
    elif not exposition.samples:
        report["state"] = "critical"
        first = ("; first problem: " + exposition.errors[0]) if exposition.errors else ""
        report["reasons"].append("response is not Prometheus text: no samples found%s" % first)
    elif exposition.errors:
        report["reasons"].append("%d line(s) could not be parsed and were skipped; first: %s"
                                 % (len(exposition.errors), exposition.errors[0]))
    return report, (None if report["state"] == "critical" else exposition)


def scrape_and_check(target, checks, return_samples=(), fail_on="critical", fetch=None):
    """Fetch ``target`` (a _probe_target.ProbeTarget) once, parse it and evaluate ``checks`` (MetricCheck list).

    Returns a report dict (url, status, latency_ms, cert, state, reasons, checks, samples,
    parse_errors, series, summary, msg, failed).
    """
    report, exposition = scrape(target, fetch)
    endpoint_state = report.pop("state")
    report.update(checks=[], samples={})
    if endpoint_state == "critical":
        cause = "; ".join(report["reasons"]) or "metrics unavailable"
        for check in checks:
            report["checks"].append({"name": check.name, "selector": check.describe(), "aggregate": check.aggregate,
                                     "value": None, "state": "critical", "breached": "critical", "series": 0,
                                     "reasons": ["not evaluated: %s" % cause]})
    else:
        report["checks"] = [check.evaluate(exposition) for check in checks]
        for name in return_samples or ():
            report["samples"][name] = [s.as_dict() for s in exposition.samples if s.name == name]
    # The overall state counts the endpoint too; the problems are the checks', or the endpoint's when it is down.
    problems = None
    if endpoint_state == "critical":
        problems = ["endpoint %s: %s" % (report["url"], "; ".join(report["reasons"]))]
    overview = _status.overview(report["checks"], "checks", problems=problems,
                                state=_status.worst([endpoint_state] + [c["state"] for c in report["checks"]]))
    report["state"] = overview["state"]
    report["summary"] = overview["summary"]
    report["msg"] = overview["msg"]
    report["failed"] = _status.fails(report["state"], fail_on)
    return report

# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exposition parser on real captured output, and the threshold/ratio logic."""

from __future__ import annotations

import math
import pathlib

import pytest

from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError
from ansible_collections.runbook.ops.plugins.module_utils._prometheus import (
    MetricCheck, Selector, parse)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def fixture(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


def one(exposition, name, **labels):
    found = [s for s in exposition.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# The family types a sample name's suffix may belong to (the rest belong to any type).
SUFFIX_TYPES = {"_bucket": {"histogram", "gaugehistogram"}, "_count": {"histogram", "summary", "counter", "gauge"},
                "_sum": {"histogram", "summary", "counter", "gauge"}}


def written_value(line):
    """The value token of a sample line, read independently of the parser, as Python reads numbers."""
    line = line.split(" # ", 1)[0]  # an OpenMetrics exemplar
    rest = line.rsplit("}", 1)[1] if "{" in line else line.split(None, 1)[1]
    return float(rest.split()[0])


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.txt")))
def test_every_fixture_parses_without_errors(name):
    text = fixture(name)
    exposition = parse(text)
    assert exposition.errors == []
    sample_lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(exposition.samples) == len(sample_lines)
    declared = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    for sample, line in zip(exposition.samples, sample_lines):
        # every sample of these real exporters belongs to the family a # TYPE line declares, with a type that fits
        family = exposition.declared_family(sample.name)
        assert family is not None and family.type == declared[family.name], (name, sample.name)
        suffix = next((s for s in SUFFIX_TYPES if sample.name.endswith(s) and sample.name != family.name), None)
        assert suffix is None or family.type in SUFFIX_TYPES[suffix], (sample.name, family.type)
        if "quantile" in sample.labels:
            assert family.type == "summary", sample.name
        # and carries the value written on its line
        expected = written_value(line)
        assert sample.value == expected or (math.isnan(sample.value) and math.isnan(expected)), line


def test_prometheus_server_values_and_families():
    exposition = parse(fixture("prometheus-2.42.0-metrics.txt"))
    info = one(exposition, "prometheus_build_info")
    assert info.labels["version"] == "2.42.0+ds" and info.value == 1.0
    nan = one(exposition, "prometheus_engine_query_duration_seconds", slice="inner_eval", quantile="0.5")
    assert math.isnan(nan.value)
    assert exposition.families["prometheus_engine_query_duration_seconds"].type == "summary"
    assert exposition.family_of("prometheus_tsdb_compaction_chunk_range_seconds_bucket").type == "histogram"
    assert exposition.families["go_goroutines"].help == "Number of goroutines that currently exist."
    buckets = [s for s in exposition.samples if s.name == "prometheus_tsdb_compaction_chunk_range_seconds_bucket"]
    assert buckets[0].labels == {"le": "100"} and buckets[-1].labels == {"le": "+Inf"}
    assert one(exposition, "go_gc_duration_seconds", quantile="0.5").value == 0.000286085


def test_node_exporter_values():
    exposition = parse(fixture("node-exporter-1.5.0-metrics.txt"))
    assert exposition.families["node_load1"].type == "gauge"
    assert one(exposition, "node_exporter_build_info").labels["version"] == "1.5.0"
    assert one(exposition, "go_gc_duration_seconds", quantile="0.5").value == 0.0
    assert exposition.family_of("go_gc_duration_seconds_count").type == "summary"


def test_prometheus_client_escapes_nan_inf_histogram_summary():
    exposition = parse(fixture("prometheus_client-0.26.0-text.txt"))
    family = exposition.families["app_http_requests_total"]
    assert family.type == "counter"
    assert family.help == "HTTP requests by code.\nSecond line with a \\ backslash."
    escaped = one(exposition, "app_http_requests_total", code="503")
    assert escaped.labels["path"] == '/say "hi"\\now\nnext'
    assert escaped.value == 5.0
    assert math.isnan(one(exposition, "app_weird_values", kind="nan").value)
    assert one(exposition, "app_weird_values", kind="posinf").value == math.inf
    assert one(exposition, "app_weird_values", kind="neginf").value == -math.inf
    assert one(exposition, "app_request_seconds_bucket", le="+Inf").value == 6.0
    assert one(exposition, "app_request_seconds_sum").value == 3.34
    assert exposition.families["app_payload_bytes"].type == "summary"
    assert one(exposition, "app_payload_bytes_count").value == 2.0


def test_openmetrics_exemplar_and_eof():
    exposition = parse(fixture("prometheus_client-0.26.0-openmetrics.txt") + "garbage after EOF\n")
    assert exposition.errors == []
    bucket = one(exposition, "app_request_seconds_bucket", le="0.1")
    assert bucket.value == 2.0 and bucket.labels == {"le": "0.1", "path": "/api"}


def test_timestamps_comments_blank_lines_and_untyped():
    exposition = parse('\n# just a comment\n  \nplain_metric 3 1700000000123\n'
                       'with_labels{a="x",} -1.5e3 1700000000.5\nhex 0x10\n')
    assert exposition.errors == []
    plain, labelled, hexed = exposition.samples
    assert (plain.value, plain.timestamp) == (3.0, 1700000000123)
    assert labelled.labels == {"a": "x"} and labelled.value == -1500.0 and labelled.timestamp == 1700000000.5
    assert hexed.value == 16.0
    assert exposition.family_of("plain_metric").type == "untyped"


def test_utf8_quoted_metric_names():
    exposition = parse('{"my.metric", a="1"} 7\n')
    assert exposition.errors == []
    assert exposition.samples[0].name == "my.metric" and exposition.samples[0].labels == {"a": "1"}


@pytest.mark.parametrize("line, why", [
    ("9bad 1", "invalid metric name"),
    ('m{a="1" 1', "expected ',' or '}'"),
    ('m{a=1} 1', "not quoted"),
    ('m{a="1\\x"} 1', "invalid escape"),
    ('m{a="1",a="2"} 1', "duplicate label"),
    ("m one", "invalid value"),
    ("m 1 2 3", "unexpected text"),
    ("m 1_000", "invalid value"),
    ("m", "missing value"),
    ("m 1 yesterday", "invalid timestamp"),
    ("# TYPE m histogramm", "unknown metric type"),
    ('m{a="unterminated} 1', "unterminated"),
])
def test_bad_lines_are_skipped_with_reasons(line, why):
    exposition = parse("good 1\n" + line + "\nalso_good 2\n")
    assert [s.name for s in exposition.samples] == ["good", "also_good"]
    assert len(exposition.errors) == 1
    assert exposition.errors[0].startswith("line 2: ") and why in exposition.errors[0]
    with pytest.raises(ProbeError, match="line 2"):
        parse("good 1\n" + line + "\n", strict=True)


def test_html_is_not_exposition():
    exposition = parse("<html><body>Login</body></html>\n")
    assert exposition.samples == [] and exposition.errors


# ---------------------------------------------------------------------------------------------
# Selectors, levels, ratios

TEXT = """
http_requests_total{code="200",method="GET"} 300
http_requests_total{code="500",method="GET"} 20
http_requests_total{code="503",method="POST"} 10
queue_length{queue="default"} 150
queue_length{queue="mail"} 3
up 1
summary_q{quantile="0.5"} NaN
zero_total 0
"""


@pytest.fixture(name="scrape")
def fixture_scrape():
    return parse(TEXT)


def check(scrape, **spec):
    return MetricCheck.from_dict(spec).evaluate(scrape)


def test_selector_matchers(scrape):
    assert len(scrape.select(Selector.from_spec("http_requests_total", {"code": "=~5.."}))) == 2
    assert len(scrape.select(Selector.from_spec("http_requests_total", {"code": "!~5.."}))) == 1
    assert len(scrape.select(Selector.from_spec("http_requests_total", {"method": "!=GET"}))) == 1
    assert len(scrape.select(Selector.from_spec("http_requests_total", {"code": 500}))) == 1
    # anchored, as in PromQL
    assert len(scrape.select(Selector.from_spec("http_requests_total", {"code": "=~5"}))) == 0
    # an absent label matches ""
    assert len(scrape.select(Selector.from_spec("up", {"job": ""}))) == 1
    assert Selector.from_spec("m", {"a": "=~x.*"}).describe() == 'm{a=~"x.*"}'


def test_aggregations_and_levels(scrape):
    result = check(scrape, name="queue", metric="queue_length", warn=100, crit=1000)
    assert (result["state"], result["value"], result["series"], result["breached"]) == ("warning", 153.0, 2, "warning")
    assert result["reasons"] == ["queue_length = 153 (sum of 2 series) is > 100 (warning)"]
    assert check(scrape, metric="queue_length", aggregate="max", crit=149)["state"] == "critical"
    assert check(scrape, metric="queue_length", aggregate="min", warn=2)["value"] == 3.0
    assert check(scrape, metric="queue_length", aggregate="avg", warn=1000)["value"] == 76.5
    counted = check(scrape, metric="queue_length", aggregate="count", op="<", crit=2)
    assert (counted["value"], counted["state"]) == (2.0, "ok")
    assert check(scrape, metric="queue_length", labels={"queue": "mail"}, op="<", warn=5)["state"] == "warning"


def test_ranges_and_expect(scrape):
    assert check(scrape, metric="queue_length", crit={"outside": [0, 100]})["state"] == "critical"
    assert check(scrape, metric="queue_length", crit={"outside": [0, 200]})["state"] == "ok"
    assert check(scrape, metric="queue_length", warn={"between": [150, 160]})["state"] == "warning"
    assert check(scrape, metric="up", expect={"op": "==", "value": 1})["state"] == "ok"
    down = check(scrape, metric="up", expect={"op": "==", "value": 2})
    assert down["state"] == "critical" and down["reasons"] == ["up = 1 (sum of 1 series), expected == 2"]
    # critical wins over warning
    assert check(scrape, metric="up", warn=0, crit={"op": ">=", "value": 1})["breached"] == "critical"


def test_ratio_error_rate(scrape):
    result = check(scrape, name="error rate", warn=0.01, crit=0.2, ratio={
        "numerator": {"metric": "http_requests_total", "labels": {"code": "=~5.."}},
        "denominator": {"metric": "http_requests_total"}})
    assert result["numerator"] == 30.0 and result["denominator"] == 330.0
    assert result["value"] == pytest.approx(30 / 330)
    assert result["state"] == "warning"
    assert "(30 / 330)" in result["reasons"][0]


def test_ratio_edge_cases(scrape):
    absent_numerator = check(scrape, crit=0.05, ratio={
        "numerator": {"metric": "http_requests_total", "labels": {"code": "=~4.."}},
        "denominator": {"metric": "http_requests_total"}})
    assert (absent_numerator["value"], absent_numerator["state"]) == (0.0, "ok")
    by_zero = check(scrape, crit=0.05, ratio={"numerator": {"metric": "up"}, "denominator": {"metric": "zero_total"}})
    assert by_zero["value"] is None and by_zero["state"] == "critical"
    assert by_zero["reasons"] == ["ratio undefined: denominator zero_total is 0 (critical)"]
    # missing: ok tolerates a ratio without traffic, not a denominator the scrape does not have
    not_exposed = check(scrape, crit=0.05, missing="ok",
                        ratio={"numerator": {"metric": "up"}, "denominator": {"metric": "nothing_total"}})
    assert not_exposed["state"] == "warning" and not_exposed["value"] is None
    assert not_exposed["reasons"] == [
        "unknown: denominator nothing_total matched no series; the scrape has no metric nothing_total (warning)"]


def test_missing_and_nan(scrape):
    missing = check(scrape, metric="no_such_metric", crit=1)
    assert missing["state"] == "critical" and missing["reasons"] == [
        "unknown: no_such_metric matched no series; the scrape has no metric no_such_metric (critical)"]
    assert check(scrape, metric="no_such_metric", crit=1, missing="warning")["state"] == "warning"
    nan = check(scrape, metric="summary_q", crit=1)
    assert nan["state"] == "critical" and "NaN" in nan["reasons"][0]


@pytest.mark.parametrize("spec, message", [
    ({"metric": "m"}, "at least one of warn, crit or expect"),
    ({"metric": "m", "crit": 1, "op": "=>"}, "unknown comparison '=>'"),
    ({"metric": "m", "crit": {"op": "~", "value": 1}}, "unknown comparison '~'"),
    ({"metric": "m", "crit": "lots"}, "is not a number"),
    ({"metric": "m", "crit": {"between": [5, 1]}}, "low above high"),
    ({"metric": "m", "crit": {"outside": [1]}}, "two numbers"),
    ({"metric": "m", "crit": {"bogus": 1}}, "unknown key"),
    ({"metric": "m", "crit": 1, "aggregate": "median"}, "unknown aggregate"),
    ({"metric": "m", "ratio": {"numerator": {"metric": "a"}}, "crit": 1}, "exactly one of metric or ratio"),
    ({"ratio": {"numerator": {"metric": "a"}}, "crit": 1}, "numerator and denominator"),
    ({"metric": "bad-name", "crit": 1}, "invalid metric name"),
    ({"metric": "m", "labels": {"a": "=~("}, "crit": 1}, "invalid regex"),
])
def test_invalid_checks_raise_probe_error(spec, message):
    with pytest.raises(ProbeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        MetricCheck.from_dict(spec)


# ---------------------------------------------------------------------------------------------
# A check that matched no series because of a mistake is unknown, never ok

ERROR_RATE = {"name": "error rate", "warn": 0.01, "crit": 0.2, "missing": "ok"}


def ratio(numerator, denominator):
    return {"ratio": {"numerator": numerator, "denominator": denominator}}


def test_wrong_label_name_in_the_numerator_is_unknown(scrape):
    """The service labels its counter code, the check asks for status: not an error rate of 0."""
    result = check(scrape, **ERROR_RATE, **ratio({"metric": "http_requests_total", "labels": {"status": "=~5.."}},
                                                 {"metric": "http_requests_total"}))
    assert (result["state"], result["value"], result["breached"]) == ("warning", None, "warning")
    assert result["reasons"] == ['unknown: numerator http_requests_total{status=~"5.."} matched no series; '
                                 'no http_requests_total series has the label status (its labels: code, method) (warning)']


def test_misspelt_metrics_are_unknown(scrape):
    numerator = check(scrape, **ERROR_RATE, **ratio({"metric": "http_request_total", "labels": {"code": "=~5.."}},
                                                    {"metric": "http_requests_total"}))
    assert numerator["state"] == "warning" and numerator["value"] is None
    assert numerator["reasons"] == ['unknown: numerator http_request_total{code=~"5.."} matched no series; the scrape '
                                    'has no metric http_request_total (did you mean http_requests_total?) (warning)']
    both = check(scrape, **ERROR_RATE, **ratio({"metric": "http_errors_total"}, {"metric": "http_request_total"}))
    assert both["state"] == "warning" and len(both["reasons"]) == 2
    assert both["reasons"][1].startswith("unknown: denominator http_request_total matched no series")


def test_unknown_takes_the_missing_state_when_it_is_not_ok(scrape):
    spec = dict(ERROR_RATE, **ratio({"metric": "http_requests_total", "labels": {"status": "=~5.."}},
                                    {"metric": "http_requests_total"}))
    spec["missing"] = "critical"
    result = check(scrape, **spec)
    assert result["state"] == "critical" and result["reasons"][0].endswith("(critical)")
    plain = check(scrape, metric="queue_length", labels={"name": "mail"}, crit=100, missing="ok")
    assert plain["state"] == "warning"
    assert plain["reasons"] == ['unknown: queue_length{name="mail"} matched no series; '
                                'no queue_length series has the label name (its labels: queue) (warning)']


def test_no_traffic_yet_is_still_tolerated_by_missing_ok():
    """prometheus_client exposes a labelled counter without observations as HELP/TYPE only."""
    idle = parse("# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\nup 1\n")
    spec = ratio({"metric": "app_requests_total", "labels": {"code": "=~5.."}}, {"metric": "app_requests_total"})
    tolerated = check(idle, **ERROR_RATE, **spec)
    assert tolerated["state"] == "ok" and tolerated["value"] is None
    assert tolerated["reasons"] == ['ratio undefined: denominator app_requests_total matched no series']
    spec.update(ERROR_RATE)
    spec["missing"] = "warning"
    assert check(idle, **spec)["state"] == "warning"


def test_right_labels_without_a_matching_value_are_not_unknown(scrape):
    no_4xx = check(scrape, **ERROR_RATE, **ratio({"metric": "http_requests_total", "labels": {"code": "=~4.."}},
                                                 {"metric": "http_requests_total"}))
    assert (no_4xx["state"], no_4xx["value"]) == ("ok", 0.0)
    # a matcher that an absent label satisfies ("" != "200") is no mistake either
    other = check(scrape, **ERROR_RATE, **ratio({"metric": "http_requests_total", "labels": {"status": "!=200"}},
                                                {"metric": "http_requests_total"}))
    assert other["value"] == 1.0 and other["state"] == "critical"

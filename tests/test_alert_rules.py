"""The PrometheusRule in deploy/kubernetes/monitoring: its rules load in Prometheus
(`promtool check rules`), each alert fires on synthetic series of what it is about and stays
quiet beside them (`promtool test rules`), and every metric and label it reads is one that
Rearguard's `/metrics` really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from attribution.store import Store
from loop.api.metrics import OwnMetrics
from loop.watch.pace import Evaluation
from loop.watch.query_health import QueryHealth
from tests.deploy_files import DEPLOY, documents

RULES = DEPLOY / "kubernetes" / "monitoring" / "rules.yaml"
FAILURE = 'rearguard_sli_query_failures_total{service="checkout",sli="http_errors",cause="query_rejected"}'  # noqa: E501
INCONCLUSIVE = 'rearguard_inconclusive_watches{cause="%s"}'
LAG = "rearguard_evaluation_lag_seconds_bucket"
QUEUE = "rearguard_store_queue_seconds_bucket"
SKIPPED = "rearguard_evaluations_skipped_total"


def _histogram(name: str, buckets: dict[str, str]) -> list[dict[str, str]]:
    """A histogram's cumulative bucket series, one per `le`, each with its promtool values."""
    return [{"series": f'{name}{{le="{le}"}}', "values": values} for le, values in buckets.items()]


# The series of each case, one sample a minute ('_' is a missing sample: the series appears
# later, as Rearguard's do at their first event), the first 30 minutes quiet history; then what
# each alert does at which minute.
CASES: list[dict[str, Any]] = [
    {  # an SLI's queries fail from minute 30 to 45, and its Watch ends inconclusive at minute
       # 41 for it (the first with that cause); others ended inconclusive on too little traffic
        "input_series": [
            {"series": FAILURE, "values": "_x30 1+1x15 16x25"},
            {"series": INCONCLUSIVE % "source_unavailable", "values": "_x41 1x30"},
            {"series": INCONCLUSIVE % "none", "values": "2x40 3x30"},
            {"series": 'rearguard_watches{phase="inconclusive"}', "values": "2x40 4x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "RearguardSliQueriesFailing", "exp_alerts": []},
            {"eval_time": "40m", "alertname": "RearguardSliQueriesFailing", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "service": "checkout",
                                "sli": "http_errors", "cause": "query_rejected"}}]},
            {"eval_time": "65m", "alertname": "RearguardSliQueriesFailing", "exp_alerts": []},
            {"eval_time": "38m", "alertname": "RearguardWatchesInconclusiveOnSourceFailure",
             "exp_alerts": []},
            {"eval_time": "45m", "alertname": "RearguardWatchesInconclusiveOnSourceFailure",
             "exp_alerts": [{"exp_labels": {"severity": "critical",
                                            "cause": "source_unavailable"}}]},
            {"eval_time": "60m", "alertname": "RearguardWatchesInconclusiveOnSourceFailure",
             "exp_alerts": []},
        ],
    },
    {  # another Watch ends inconclusive for the same cause at minute 50, 20 minutes later
        "input_series": [{"series": INCONCLUSIVE % "query_rejected", "values": "1x50 2x30"}],
        "alert_rule_test": [
            {"eval_time": "45m", "alertname": "RearguardWatchesInconclusiveOnSourceFailure",
             "exp_alerts": []},
            {"eval_time": "55m", "alertname": "RearguardWatchesInconclusiveOnSourceFailure",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "cause": "query_rejected"}}]},
        ],
    },
    {  # a revert fails at minute 30 (a new series); a merge, failed once long ago, at minute 31
        "input_series": [
            {"series": 'rearguard_actions{kind="revert",status="failed"}', "values": "_x30 1x40"},
            {"series": 'rearguard_actions{kind="merge",status="failed"}', "values": "1x30 2x40"},
            {"series": 'rearguard_actions{kind="notify",status="completed"}', "values": "1+1x70"},
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "RearguardActionsFailed", "exp_alerts": []},
            {"eval_time": "32m", "alertname": "RearguardActionsFailed", "exp_alerts": [
                {"exp_labels": {"severity": "critical", "kind": "revert"}},
                {"exp_labels": {"severity": "critical", "kind": "merge"}}]},
            {"eval_time": "50m", "alertname": "RearguardActionsFailed", "exp_alerts": []},
        ],
    },
    {  # GitHub deliveries badly signed from minute 30; CD's bad tokens are no webhook
        "input_series": [
            {"series": 'rearguard_refused_requests_total{route="/v1/webhooks/github",'
                       'reason="bad_signature"}', "values": "_x30 1+1x40"},
            {"series": 'rearguard_refused_requests_total{route="/v1/deploys",'
                       'reason="unauthorized"}', "values": "0+5x70"},
            {"series": 'rearguard_refused_requests_total{route="/v1/webhooks/slack",'
                       'reason="bad_signature"}', "values": "3x70"},
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "RearguardWebhooksRejected", "exp_alerts": []},
            {"eval_time": "32m", "alertname": "RearguardWebhooksRejected", "exp_alerts": []},
            {"eval_time": "40m", "alertname": "RearguardWebhooksRejected", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "route": "/v1/webhooks/github",
                                "reason": "bad_signature"}}]},
        ],
    },
    {  # from minute 30, 10 of each minute's 100 evaluations start 3-5 s late (p99 over 3 s)
        "input_series": _histogram(LAG, {"0.5": "0+100x30 3000+90x40", "3": "0+100x30 3000+90x40",
                                         "5": "0+100x70", "+Inf": "0+100x70"}),
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": []},
            {"eval_time": "36m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": []},
            {"eval_time": "50m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
        ],
    },
    {  # one of each minute's 200 evaluations is late (p99 under 3 s); a 2-minute burst of lag
        "input_series": _histogram(LAG, {"0.5": "0+199x30 5970+150x2 6270+199x40",
                                         "3": "0+199x30 5970+150x2 6270+199x40",
                                         "5": "0+200x72", "+Inf": "0+200x72"}),
        "alert_rule_test": [
            {"eval_time": "28m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": []},
            {"eval_time": "36m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": []},
            {"eval_time": "45m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": []},
            {"eval_time": "60m", "alertname": "RearguardEvaluationsLagging", "exp_alerts": []},
        ],
    },
    {  # steps skipped at minute 30 (the series counted 0 before); none after
        "input_series": [{"series": SKIPPED, "values": "0x30 3x40"}],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "RearguardEvaluationsSkipped", "exp_alerts": []},
            {"eval_time": "32m", "alertname": "RearguardEvaluationsSkipped", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
            {"eval_time": "50m", "alertname": "RearguardEvaluationsSkipped", "exp_alerts": []},
        ],
    },
    {  # a restart long after the Watches were due: the first evaluations skip steps at once
        "input_series": [{"series": SKIPPED, "values": "_x30 2x40"}],
        "alert_rule_test": [
            {"eval_time": "32m", "alertname": "RearguardEvaluationsSkipped", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
        ],
    },
    {  # a restart on time: the series appears at 0 and stays there
        "input_series": [{"series": SKIPPED, "values": "_x30 0x40"}],
        "alert_rule_test": [
            {"eval_time": "32m", "alertname": "RearguardEvaluationsSkipped", "exp_alerts": []},
            {"eval_time": "60m", "alertname": "RearguardEvaluationsSkipped", "exp_alerts": []},
        ],
    },
    {  # from minute 30, 5 of each minute's 100 store calls wait 1-2.5 s for the writer
        "input_series": _histogram(QUEUE, {"0.1": "0+100x30 3000+95x40", "1": "0+100x30 3000+95x40",
                                           "2.5": "0+100x70", "+Inf": "0+100x70"}),
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "RearguardStoreQueueSlow", "exp_alerts": []},
            {"eval_time": "50m", "alertname": "RearguardStoreQueueSlow", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
        ],
    },
    {  # the writer busy, yet p99 under 1 s: a tail of one call in 200 at 1-2.5 s
        "input_series": _histogram(QUEUE, {"0.1": "0+150x70", "1": "0+199x70",
                                           "2.5": "0+200x70", "+Inf": "0+200x70"}),
        "alert_rule_test": [
            {"eval_time": "50m", "alertname": "RearguardStoreQueueSlow", "exp_alerts": []},
        ],
    },
]  # fmt: skip


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make test-deps` installs the Debian package prometheus")
    return found


def _groups() -> list[dict[str, Any]]:
    (rule,) = documents(RULES)
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_the_rules_load_in_prometheus(tmp_path: Path) -> None:
    """`promtool check rules` accepts the PrometheusRule's groups, templates and all."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _groups()}))
    result = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_each_alert_fires_on_its_series_and_only_there(tmp_path: Path) -> None:
    """`promtool test rules` over the cases above (annotations aside: they are text for people,
    checked by the test before)."""
    groups = _groups()
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", **case} for case in CASES]}  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([_promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {t["alertname"] for case in CASES for t in case["alert_rule_test"]}
    assert tested == {r["alert"] for group in _groups() for r in group["rules"]}


async def test_the_rules_read_only_metrics_rearguard_exports(tmp_path: Path) -> None:
    """Every `rearguard_*` selector in the rules names a metric of Rearguard's `/metrics`, with
    label names it carries: the store's gauges and the counters, as `OwnMetrics` renders them."""
    exported: dict[str, set[str]] = {}
    store = await Store.open(tmp_path / "s.duckdb")
    metrics = OwnMetrics()
    try:
        for count in await store.stats.counts():
            exported[count.name] = set(count.labels)
        metrics.refused("/v1/webhooks/github", "bad_signature")
        health = QueryHealth(counts={("checkout", "http_errors", "query_rejected"): 1})
        metrics.evaluated(Evaluation(lag=0.2, skipped=0, queries=4))
        metrics.store_queued(0.003)
        text = (await metrics.render(store, health)).decode()
    finally:
        metrics.shutdown()
        await store.close()
    for name, labels in re.findall(r"^(rearguard_\w+)(?:\{([^}]*)\})? ", text, re.M):
        exported.setdefault(name, set()).update(re.findall(r'(\w+)="', labels))
    assert "rearguard_refused_requests_total" in exported
    assert "rearguard_evaluations_skipped_total" in exported  # a series without labels
    expressions = " ".join(r["expr"] for group in _groups() for r in group["rules"])
    for name, matchers in re.findall(r"(rearguard_\w+)(?:\{([^}]*)\})?", expressions):
        assert name in exported, f"{name} is not in /metrics: {sorted(exported)}"
        used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
        assert used <= exported[name], (name, used, exported[name])

"""`make bench-detection`: Rearguard's detector against peer-style detectors and an oracle.

Rearguard's detector is driven exactly as the Watch drives it: `observer.observe.judge` on the
data fetched so far, once per step, stopping at the first final verdict; steps where the source
fails are evaluations that did not happen. Prints a table and writes
bench/results/detection.json. Seeded; `--quick` runs a smaller set. The real-Prometheus half
(15, 30 and 60 s scrapes, the example config's queries) is `bench/detection/scraped.py`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.detection import peers, scraped
from bench.detection.scenarios import (
    BASE_RATIOS,
    EFFECTS,
    TRAFFIC,
    FixturesMissing,
    Scenario,
    nab_set,
    synthetic,
    synthetic_set,
)
from observer.detect import decide
from observer.observe import SliData, Windows, judge
from observer.slis import Sli, SliKind
from observer.verdict import Status

RESULTS = Path(__file__).resolve().parents[1] / "results" / "detection.json"
RATIO_SLI = Sli("errors", SliKind.RATIO, bad="bad", total="total", min_events=100)
GAUGE_SLI = Sli("gauge", SliKind.GAUGE, query="value", tolerance=0.1)
Outcome = tuple[str, int | None]


def rearguard(s: Scenario) -> Outcome:
    """The Watch's own evaluation, once per step."""
    sli = RATIO_SLI if s.kind == "ratio" else GAUGE_SLI
    n = len(s.watch)
    windows = Windows(0.0, len(s.before) * s.step, n * s.step, s.step, seasonal=(86400.0,))
    watch = tuple(
        (float(k + 1) * s.step, p[0], p[1]) for k, p in enumerate(s.watch) if p is not None
    )
    base = tuple((0.0, p[0], p[1]) for p in s.before)
    earlier = tuple((0.0, p[0], p[1]) for p in s.earlier)
    data = SliData(
        watch, (("before", base), ("1d", earlier)), {}, {"watch": [0.0, 0.0]}, "before_after"
    )
    for k in range(n):
        if k in s.outage:
            if k == n - 1:
                return "inconclusive", None
            continue
        result = judge(sli, data, windows, (k + 1) * s.step)
        verdict = decide([sli], [result], k == n - 1)
        if verdict.status is not Status.OBSERVING:
            return str(verdict.status), (k if verdict.status is Status.REGRESSED else None)
    return "inconclusive", None


def calibrate_oracle(
    seed: int, runs: int
) -> tuple[dict[tuple[float, float, float], float], dict[tuple[float, float, float], float]]:
    """Per (traffic, ratio, effect): the CUSUM thresholds crossed in at most ~1/runs of clean
    watches (the largest maximum over `runs` clean watches), for the oracle that knows the true
    rates and for the two-sample oracle that estimates the baseline rate."""
    rng = random.Random(seed)
    known: dict[tuple[float, float, float], float] = {}
    estimated: dict[tuple[float, float, float], float] = {}
    for traffic in TRAFFIC:
        for ratio in BASE_RATIOS:
            clean = [synthetic(rng, "cal", traffic, ratio, 1.0, "plain") for _ in range(runs)]
            for effect in EFFECTS:
                peaks, peaks_two = [], []
                for s in clean:
                    level = top = 0.0
                    for k, (bad, total) in enumerate(p for p in s.watch if p is not None):
                        p0 = s.p0[k]
                        p1 = min(p0 * effect, 0.999)
                        a, b = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
                        level = max(0.0, level + bad * a + (total - bad) * b)
                        top = max(top, level)
                    peaks.append(top)
                    level = top = 0.0
                    for value in peers.two_sample_llr(s, effect):
                        level = max(0.0, level + (value or 0.0))
                        top = max(top, level)
                    peaks_two.append(top)
                known[(traffic, ratio, effect)] = max(*peaks, 1e-9)
                estimated[(traffic, ratio, effect)] = max(*peaks_two, 1e-9)
    return known, estimated


def _against(rows: list[dict[str, Any]], name: str, ref: str) -> tuple[float | None, ...]:
    """Recall on the x2+ synthetic regressions `ref` detects, and the median delay ratio."""
    targets = [r for r in rows if r["family"] == "synthetic" and r["effect"] >= 2.0
               and r[ref] == "regressed"]  # fmt: skip
    hits = [r for r in targets if r[name] == "regressed" and r[f"{name}_step"] >= r["onset"]]
    ratios = [(r[f"{name}_step"] - r["onset"] + 1) / (r[f"{ref}_step"] - r["onset"] + 1)
              for r in hits if r[f"{ref}_step"] >= r["onset"]]  # fmt: skip
    return (
        len(hits) / len(targets) if targets else None,
        statistics.median(ratios) if ratios else None,
        len(targets),
    )


def _summary(rows: list[dict[str, Any]], name: str) -> dict[str, float | None]:
    clean = [r for r in rows if r["effect"] == 1.0]
    false = sum(1 for r in clean if r[name] == "regressed")
    recall, ratio, detectable = _against(rows, name, "oracle")
    recall_two, ratio_two, detectable_two = _against(rows, name, "oracle_two_sample")
    targets = [r for r in rows if r["family"] == "synthetic" and r["effect"] >= 2.0
               and r["oracle"] == "regressed"]  # fmt: skip
    delays = [(r[f"{name}_step"] - r["onset"] + 1) * 30 for r in targets
              if r[name] == "regressed" and r[f"{name}_step"] >= r["onset"]]  # fmt: skip
    return {
        "false_rollback_rate": false / len(clean) if clean else None,
        "recall_x2_plus": recall,
        "median_delay_ratio_to_oracle": ratio,
        "inconclusive_rate": sum(1 for r in rows if r[name] == "inconclusive") / len(rows),
        "median_delay_s": statistics.median(delays) if delays else None,
        "p90_delay_s": statistics.quantiles(delays, n=10)[-1] if len(delays) > 1 else None,
        "clean_deploys": len(clean),
        "false_rollbacks": false,
        "x2_plus_detectable": detectable,
        "recall_x2_plus_two_sample": recall_two,
        "median_delay_ratio_to_two_sample": ratio_two,
        "x2_plus_detectable_two_sample": detectable_two,
    }


def _recall_table(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Recall per effect size and traffic level (synthetic regressions), per detector."""
    table: dict[str, dict[str, float]] = {}
    for effect in EFFECTS:
        for traffic in TRAFFIC:
            cell = [r for r in rows if r["family"] == "synthetic" and r["effect"] == effect
                    and r["traffic"] == traffic]  # fmt: skip
            key = f"x{effect:g}@{traffic:g}rps"
            table[key] = {n: sum(1 for r in cell if r[n] == "regressed") / len(cell)
                          for n in names if cell}  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=20261102)
    parser.add_argument("--quick", action="store_true", help="a small set, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-scraped", action="store_true", help="skip the real-Prometheus half (15/30/60 s)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    clean_reps, reg_reps, cal = (6, 1, 60) if args.quick else (30, 5, 200)
    scenarios = synthetic_set(args.seed, clean_reps, reg_reps)
    try:
        scenarios += nab_set(args.seed + 1, 4 if args.quick else 15, (1.5, 2.0, 5.0))
        nab_note = "included"
    except FixturesMissing as exc:
        print(f"bench-detection: {exc}; running the synthetic half only", file=sys.stderr)
        nab_note = str(exc)
    thresholds, two_sample_thresholds = calibrate_oracle(args.seed + 2, cal)
    detectors: dict[str, Callable[[Scenario], Outcome]] = {
        "rearguard": rearguard,
        "flagger_1": peers.flagger(1),
        "flagger_5": peers.flagger(5),
        "argo_0": peers.argo(0),
        "argo_3": peers.argo(3),
        "kayenta": peers.kayenta(),
    }
    oracle = peers.oracle_cusum(thresholds)
    oracle_two = peers.oracle_two_sample(two_sample_thresholds)
    rows: list[dict[str, Any]] = []
    for index, s in enumerate(scenarios, start=1):
        row: dict[str, Any] = {
            "name": s.name, "family": s.family, "variant": s.variant, "effect": s.effect,
            "traffic": s.traffic, "onset": s.onset,
        }  # fmt: skip
        if s.family == "synthetic":
            row["oracle"], row["oracle_step"] = oracle(s)
            row["oracle_two_sample"], row["oracle_two_sample_step"] = oracle_two(s)
        else:
            row["oracle"], row["oracle_step"] = "n/a", None
            row["oracle_two_sample"], row["oracle_two_sample_step"] = "n/a", None
        for name, detect in detectors.items():
            row[name], row[f"{name}_step"] = detect(s)
        rows.append(row)
        if index % 200 == 0 or index == len(scenarios):
            print(f"\rscenarios {index}/{len(scenarios)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    names = list(detectors)
    summaries = {n: _summary(rows, n) for n in names}
    scraped_result = None if args.no_scraped else _scraped(args.seed + 3, args.quick)
    anomalies = [r for r in rows if r["variant"] == "nab-anomaly"]
    result = {
        "seed": args.seed,
        "out": str(args.out),
        "scenarios": len(rows),
        "nab": nab_note,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": {
            **summaries["rearguard"],
            "peers": {n: summaries[n] for n in names if n != "rearguard"},
            **({k: scraped_result["all"].get(k) for k in SCRAPED_KEYS} if scraped_result else {}),
        },
        **(
            {k: scraped_result[k] for k in ("by_scrape_interval", "by_kind")}
            if scraped_result
            else {}
        ),
        "scraped": (
            {
                k: v
                for k, v in scraped_result.items()
                if k not in ("by_scrape_interval", "by_kind", "rows")
            }
            if scraped_result
            else "skipped (--no-scraped)"
        ),
        "recall_by_effect_and_traffic": _recall_table(
            rows, [*names, "oracle", "oracle_two_sample"]
        ),
        "nab_labelled_anomaly_recall": {
            n: sum(1 for r in anomalies if r[n] == "regressed") / len(anomalies)
            for n in names
            if anomalies
        },
        "false_rollbacks_by_variant": {
            n: {
                v: sum(
                    1
                    for r in rows
                    if r["effect"] == 1.0 and r["variant"] == v and r[n] == "regressed"
                )
                for v in sorted({str(r["variant"]) for r in rows if r["effect"] == 1.0})
            }
            for n in names
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(summaries, result)
    if scraped_result:
        _print_scraped(scraped_result)
    return 0


SCRAPED_KEYS = (
    "false_rollback_rate_all_clean_kinds",
    "recall_of_two_sample_detections_by_rps",
    "median_delay_ratio_to_two_sample_scraped",
    "warned_within_5_steps_share",
    "warned_within_5_configured_steps_share",
)
SCRAPED_PER_KIND = {
    "clean": 150, "burst": 90, "blip": 60, "peak": 60, "gap": 60,
    "ramp": 30, "step": 120, "vanish": 40, "drop": 40,
}  # fmt: skip


def _scraped(seed: int, quick: bool) -> dict[str, Any]:
    """The real-Prometheus half (bench/detection/scraped.py), on its own seed."""
    per_kind = {k: max(2, n // 10) for k, n in SCRAPED_PER_KIND.items()} if quick else None
    result = scraped.run(seed, per_kind or SCRAPED_PER_KIND)
    # The synthetic half already has `median_delay_ratio_to_two_sample` in `summary`; the
    # scraped figure sits beside it under its own name there and under its plain name per
    # interval and per kind.
    result["all"]["median_delay_ratio_to_two_sample_scraped"] = result["all"][
        "median_delay_ratio_to_two_sample"
    ]
    return result


def _print_scraped(result: dict[str, Any]) -> None:
    print(f"scraped (real Prometheus, example config's http_errors), seed {result['seed']}")
    print("| group | deploys | verdicts | false rollbacks (clean kinds) | recall of two-sample "
          "by rps | delay / two-sample | recall of oracle by rps | delay / oracle "
          "| warned <= 5 steps | warned <= 5 configured steps |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups = {"all": result["all"], **result["by_scrape_interval"], **result["by_kind"]}
    for name, f in groups.items():
        verdicts = " ".join(f"{k}:{v}" for k, v in f["verdicts"].items())
        print(f"| {name} | {f['deploys']} | {verdicts} | "
              f"{_fmt(f['false_rollback_rate_all_clean_kinds'])} | "
              f"{_by_rps(f['recall_of_two_sample_detections_by_rps'])} | "
              f"{_fmt(f['median_delay_ratio_to_two_sample'], False)} | "
              f"{_by_rps(f['recall_of_oracle_detections_by_rps'])} | "
              f"{_fmt(f['median_delay_ratio_to_oracle'], False)} | "
              f"{_fmt(f['warned_within_5_steps_share'])} | "
              f"{_fmt(f['warned_within_5_configured_steps_share'])} |")  # fmt: skip


def _by_rps(shares: dict[str, float | None]) -> str:
    return " ".join(f"{k}:{_fmt(v)}" for k, v in shares.items()) or "-"


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:.2%}" if pct else f"{value:.2f}"


def _print(summaries: dict[str, dict[str, float | None]], result: dict[str, Any]) -> None:
    print(f"detection benchmark: {result['scenarios']} scenarios, seed {result['seed']}, "
          f"{result['seconds']}s")  # fmt: skip
    print("| detector | false rollbacks | recall x2+ (oracle-detectable) | median delay / oracle "
          "| recall x2+ (two-sample-detectable) | median delay / two-sample oracle "
          "| median delay | p90 delay | inconclusive |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in summaries.items():
        print(f"| {name} | {_fmt(s['false_rollback_rate'])} ({s['false_rollbacks']}/"
              f"{s['clean_deploys']}) | {_fmt(s['recall_x2_plus'])} | "
              f"{_fmt(s['median_delay_ratio_to_oracle'], False)} | "
              f"{_fmt(s['recall_x2_plus_two_sample'])} | "
              f"{_fmt(s['median_delay_ratio_to_two_sample'], False)} | "
              f"{_fmt(s['median_delay_s'], False)}s | {_fmt(s['p90_delay_s'], False)}s | "
              f"{_fmt(s['inconclusive_rate'])} |")  # fmt: skip
    print(f"written: {result['out']}")


if __name__ == "__main__":
    sys.exit(main())

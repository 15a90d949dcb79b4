"""Fit attribution's constants on training seeds: `python -m bench.attribution.fit --seeds 1 4 5`.

The likelihood ratios of the evidence modules and the weights of the priors are fitted by
maximum likelihood: the negative log of the probability `rank` gives the true culprit(s), summed
over every incident of the training seeds, minimised by coordinate descent on a log scale. The
calibration map (`attribution.calibration`) is then fitted on the same seeds' top suspects. The
printed constants are what `attribution/` ships; the benchmark's default seed 2 and seed 3 are
never seen here (the README says which seeds trained what).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from attribution import calibration
from attribution.evidence import Evidence, PrChange
from attribution.feedback import Blame, Signal, history
from attribution.priors import History
from attribution.suspects import rank
from bench.attribution.generate import Incident
from bench.attribution.run import build
from bench.attribution.world import new_workdir

Case = tuple[Incident, Evidence, History]
PARAMS: tuple[tuple[str, str, float, float], ...] = (
    # module, constant, lower, upper
    ("attribution.frames", "LR_LINE", 2.0, 5000.0),
    ("attribution.frames", "LR_NEAR", 5.0, 500.0),
    ("attribution.frames", "LR_FILE", 5.0, 100.0),  # held: see frames.LR_FILE
    ("attribution.signals", "LR_ROUTE", 1.0, 1000.0),
    ("attribution.signals", "ROUTE_LINE_SHARE", 0.01, 1.0),
    ("attribution.signals", "LR_ALERT", 1.0, 1000.0),
    ("attribution.priors", "SIZE_EXPONENT", 0.01, 3.0),
    ("attribution.priors", "SENSITIVE_FACTOR", 1.0, 10.0),
    ("attribution.priors", "HISTORY_WEIGHT", 0.01, 3.0),
    ("attribution.suspects", "CODE_CAUSE_PRIOR", 0.5, 0.99),
)


def cases(seeds: Sequence[int], streams: int, deploys: int) -> list[Case]:
    """Every incident of the seeds with the history it is ranked with (history learns the true
    culprit after each incident whatever the ranking said, so it can be computed once)."""
    out: list[Case] = []
    for seed in seeds:
        with new_workdir() as tmp:
            made = build(seed, streams, deploys, Path(tmp))
        deployed: list[PrChange] = []
        blames: list[Blame] = []
        signals: list[Signal] = []
        for incident, evidence in made:
            changes = incident.deploy.changes
            out.append((incident, evidence, history(deployed, blames, signals)))
            iid = f"{seed}:{changes[0].pr.repo}:{incident.deploy.head}"
            blames.append(Blame(iid, changes[0].pr.repo, (), True, ()))
            signals.append(Signal(iid, "confirmed", incident.culprits[0]))
            deployed += changes
    return out


def ranked(case: Case, bar: float = 1.0) -> tuple[dict[int, float], float, bool]:
    """Each PR's probability, the top one's, and whether the top is a culprit."""
    incident, evidence, past = case
    changes = incident.deploy.changes
    r = rank([c.pr for c in changes], bar, changes=changes, evidence=evidence, history=past,
             sensitive=_sensitive())  # fmt: skip
    probs = {s.number: s.probability for s in r.suspects}
    return probs, r.confidence, r.suspects[0].number in incident.culprits


def _sensitive() -> tuple[str, ...]:
    from rollback.policy import DEFAULT_HUMAN_GATES  # noqa: PLC0415 - the benchmark's gates

    return DEFAULT_HUMAN_GATES


def nll(all_cases: Sequence[Case]) -> float:
    """Negative log likelihood of the culprits (a deploy with two: either one)."""
    total = 0.0
    for case in all_cases:
        probs, _, _ = ranked(case)
        hit = sum(probs.get(n, 0.0) for n in case[0].culprits)
        total -= math.log(max(hit, 1e-9))
    return total


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def fit(all_cases: Sequence[Case], rounds: int = 4) -> dict[str, float]:
    """Coordinate descent on a log scale, step halving each round."""
    best = nll(all_cases)
    for step in [math.log(4.0) / 2**r for r in range(rounds)]:
        for module, name, lo, hi in PARAMS:
            mod = _module(module)
            for direction in (1.0, -1.0):
                while True:
                    old = getattr(mod, name)
                    new = min(hi, max(lo, old * math.exp(direction * step)))
                    if new == old:
                        break
                    setattr(mod, name, new)
                    value = nll(all_cases)
                    if value < best - 1e-6:
                        best = value
                        print(f"  {name} = {new:.4g}  nll {best:.2f}", flush=True)
                    else:
                        setattr(mod, name, old)
                        break
    return {name: getattr(_module(m), name) for m, name, _, _ in PARAMS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 5])
    parser.add_argument("--streams", type=int, default=24)
    parser.add_argument("--deploys", type=int, default=12)
    parser.add_argument(
        "--calibration-only", action="store_true", help="keep the shipped ratios, fit the map"
    )
    args = parser.parse_args(argv)
    all_cases = cases(args.seeds, args.streams, args.deploys)
    print(f"{len(all_cases)} training incidents from seeds {args.seeds}; nll {nll(all_cases):.2f}")
    if not args.calibration_only:
        for name, value in fit(all_cases).items():
            print(f"{name} = {value:.4g}")
    calibration.KNOTS = ((0.0, 0.0), (1.0, 1.0))  # fit the map on raw probabilities
    pairs = [(conf, right) for _, conf, right in (ranked(c) for c in all_cases)]
    knots = calibration.fit_isotonic(pairs)
    print("KNOTS = (" + ", ".join(f"({x:.4f}, {y:.4f})" for x, y in knots) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())

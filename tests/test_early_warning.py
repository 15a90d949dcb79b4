"""Early warnings as a pure function of points: vanished series, reset counters, less traffic."""

from __future__ import annotations

import pytest

from observer.early_warning import WarningReason, early_warning
from observer.observe import SliData, Windows, judge
from observer.slis import Sli, SliKind

T0 = 1_000_000.0
STEP = 15.0


def _watch(totals: list[float | None]) -> list[tuple[float, float, float]]:
    """Watch points at steps 1..n; None is a step without a point."""
    return [(T0 + (k + 1) * STEP, 0.0, t) for k, t in enumerate(totals) if t is not None]


BASELINE = [(T0 - k * STEP, 1.0, 100.0) for k in range(20)]


@pytest.mark.parametrize(
    ("totals", "ratio", "drop", "expected"),
    [
        ([100, 100, 100, 100], True, 0.5, None),  # steady traffic
        ([100, 100], True, 0.5, None),  # too few steps to tell
        ([None, None], True, 0.5, None),  # gone, but only two steps so far
        ([None, None, None], True, 0.5, WarningReason.VANISHED),  # gone from the deploy on
        ([100, 100, None, None, None], True, 0.5, WarningReason.VANISHED),  # gone later
        ([100, None, None, 100], True, 0.5, None),  # a gap that ended
        ([100, 0, 0, 0], True, 0.5, WarningReason.COUNTERS_RESET),  # reset, never back
        ([0, 0, 0, 100], True, 0.5, None),  # reset, came back
        ([100, 40, 40, 40], True, 0.5, WarningReason.TRAFFIC_DROP),  # -60% beyond 50%
        ([100, 60, 60, 60], True, 0.5, None),  # -40% within 50%
        ([100, 60, 60, 60], True, 0.3, WarningReason.TRAFFIC_DROP),  # the knob per SLI
        ([100, 10, 10, 10], True, 0.0, None),  # 0 turns the traffic warning off
        ([100, 40, None, 40], True, 0.5, WarningReason.TRAFFIC_DROP),  # a gap tells nothing
        ([100, 40, 40, 100], True, 0.5, None),  # a drop that ended
        ([5, 5, 5, 5], False, 0.5, None),  # a gauge's level is not traffic
        ([5, None, None, None], False, 0.5, WarningReason.VANISHED),  # a gauge that vanished
    ],
)
def test_warning_from_points(
    totals: list[float | None], ratio: bool, drop: float, expected: WarningReason | None
) -> None:
    """Each case's points call for the warning in the table, or none."""
    end = T0 + len(totals) * STEP
    found = early_warning(
        _watch(totals), BASELINE, deployed_at=T0, step=STEP, end=end, ratio=ratio,
        traffic_drop=drop,
    )  # fmt: skip
    assert (found.reason if found else None) == expected


def test_no_baseline_no_warning() -> None:
    """A service that never reported before the deploy is not warned about."""
    found = early_warning([], [], deployed_at=T0, step=STEP, end=T0 + 5 * STEP, ratio=True,
                          traffic_drop=0.5)  # fmt: skip
    assert found is None


def test_vanished_says_how_long() -> None:
    """The detail tells people for how long the data has been gone."""
    found = early_warning([], BASELINE, deployed_at=T0, step=STEP, end=T0 + 3 * STEP,
                          ratio=True, traffic_drop=0.5)  # fmt: skip
    assert found is not None
    assert "45s" in found.detail


@pytest.mark.parametrize(
    ("canary_totals", "expected"),
    [
        ([10.0] * 8, ""),  # a tenth of the stable's traffic: a canary's share, no drop
        ([10.0] * 4, "vanished"),  # the canary's series stop after step 4, the stable's go on
        ([10.0] * 4 + [0.0] * 4, "counters_reset"),
    ],
)
def test_a_canary_is_warned_against_the_stable_version(
    canary_totals: list[float], expected: str
) -> None:
    """Canary mode (an SLI with `version_label`): the reference is the stable version over the
    same steps, not a window before the deploy (there is none)."""
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", version_label="version")
    canary = tuple((T0 + (k + 1) * STEP, 0.0, total) for k, total in enumerate(canary_totals))
    stable = tuple((T0 + (k + 1) * STEP, 1.0, 100.0) for k in range(8))
    data = SliData(canary, (("stable", stable),), {"bad": "b", "total": "t"},
                   {"watch": [T0, T0 + 8 * STEP]}, "canary")  # fmt: skip
    windows = Windows(T0, 600.0, 1800.0, STEP)
    assert judge(sli, data, windows, T0 + 8 * STEP).warning == expected

"""The SLI plot of an incident's first Slack message: a PNG of the SLI around the deploy.

matplotlib with the Agg backend (no display, no GUI toolkit), one figure per call, closed after
rendering so a long-running server does not accumulate figures. Pure in effect: points in, bytes
out; the loop queries the metrics and the notifier uploads the bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib as mpl

mpl.use("Agg")

from matplotlib.figure import Figure


def sli_png(
    points: Sequence[tuple[float, float]], deployed_at: float, title: str, unit: str
) -> bytes:
    """A small line chart of `points` (Unix seconds, value) with the deploy marked."""
    figure = Figure(figsize=(6.4, 2.8), dpi=100)
    axes = figure.add_subplot()
    scale = 100.0 if unit == "ratio" else 1.0
    minutes = [(t - deployed_at) / 60 for t, _ in points]
    axes.plot(minutes, [v * scale for _, v in points], color="#1f6feb", linewidth=1.5)
    axes.axvline(0.0, color="#d1242f", linestyle="--", label="deploy")
    axes.set_xlabel("minutes from the deploy")
    axes.set_title(title, fontsize=10)
    axes.set_ylabel("%" if unit == "ratio" else unit or "value")
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()

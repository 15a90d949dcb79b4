"""Config keys of the detection work: seasonal baselines per service, canary `version_label`."""

from __future__ import annotations

from typing import Any

import pytest

from loop.config import ConfigError, settings_from


def _config(service: dict[str, Any], sli: dict[str, Any]) -> dict[str, Any]:
    slis = {"errors": {"bad": "b[$step]", "total": "t[$step]", **sli}}
    return {"services": {"shop": {"repo": "acme/shop", "slis": slis, **service}}}


def test_seasonal_and_version_label_are_read() -> None:
    """`seasonal` durations become offsets; `version_label` reaches the SLI."""
    settings = settings_from(_config({"seasonal": ["1d"]}, {"version_label": "version"}), {}, "t")
    service = settings.services["shop"]
    assert service.seasonal == (86400.0,)
    assert service.slis[0].version_label == "version"
    default = settings_from(_config({}, {}), {}, "t").services["shop"]
    assert default.seasonal == (86400.0, 604800.0)
    assert default.slis[0].version_label == ""


@pytest.mark.parametrize(
    ("service", "sli", "message"),
    [
        ({"seasonal": "1d"}, {}, "seasonal: expected a list"),
        ({"seasonal": ["yesterday"]}, {}, "seasonal: expected a positive duration"),
        ({}, {"version_label": 3}, "version_label: expected str"),
        ({}, {"canary": True}, "unknown key(s) canary"),
    ],
)
def test_bad_detection_keys_are_refused(
    service: dict[str, Any], sli: dict[str, Any], message: str
) -> None:
    """A wrong seasonal list or version label is refused with the key named."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from(_config(service, sli), {}, "t")

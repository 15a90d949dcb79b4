"""The dependency rule, kept by import-linter contracts in pyproject.toml: `observer`,
`attribution` and `rollback` never import `loop`, and `observer` imports neither of the others.

`lint-imports` runs with this repository's contracts on a copy of the packages, once as they are
and once with an offending module added, to show that the contracts catch it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("observer", "attribution", "rollback", "loop")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
DOMAINS_BELOW_LOOP = "observer, attribution and rollback do not import loop"
OBSERVER_ALONE = "observer imports neither attribution nor rollback"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Check the packages under `root` (first on the path) against the repository's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", str(REPO / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    """A copy of Rearguard's packages to add offending modules to."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_packages_keep_the_contracts(packages: Path) -> None:
    """As they are, the packages keep both contracts."""
    result = lint_imports(packages)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        pytest.param("observer/offender.py", "import loop\n", DOMAINS_BELOW_LOOP, id="import-loop"),
        pytest.param(
            "observer/offender.py",
            "def later() -> None:\n    from loop.clock import WallClock  # noqa: F401\n",
            DOMAINS_BELOW_LOOP,
            id="observer-from-loop-inside-a-function",
        ),
        pytest.param(
            "rollback/offender.py",
            "import loop.watch.steps\n",
            DOMAINS_BELOW_LOOP,
            id="rollback-imports-loop",
        ),
        pytest.param(
            "attribution/offender.py",
            "from loop.config import Settings\n",
            DOMAINS_BELOW_LOOP,
            id="attribution-from-loop",
        ),
        pytest.param(
            "observer/offender.py",
            "from attribution.records import Deploy\n",
            OBSERVER_ALONE,
            id="observer-imports-attribution",
        ),
        pytest.param(
            "observer/offender.py",
            "from rollback import forge\n",
            OBSERVER_ALONE,
            id="observer-imports-rollback",
        ),
    ],
)
def test_an_offending_import_breaks_the_contract(
    packages: Path, module: str, source: str, broken: str
) -> None:
    """One module importing across the rule fails the check, naming the contract and module."""
    (packages / module).write_text(source)
    result = lint_imports(packages)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken} BROKEN" in result.stdout
    offender = module.removesuffix(".py").replace("/", ".")
    assert f"{offender} -> " in result.stdout

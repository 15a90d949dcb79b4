"""deploy/Dockerfile, checked without a Docker engine (none on the machines the tests run on): a
pinned base, Python dependencies only from the hashed lock, and that lock still satisfying
pyproject.toml, a numeric non-root user, a health check, no secrets baked in."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

from loop import config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"
# The image's interpreter, for the lock's markers (a universal lock pins per Python version).
IMAGE_PYTHON = {"python_version": "3.11", "python_full_version": "3.11.15",
                "sys_platform": "linux", "platform_system": "Linux",
                "platform_machine": "x86_64", "implementation_name": "cpython",
                "platform_python_implementation": "CPython", "os_name": "posix"}  # fmt: skip


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))  # fmt: skip
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def locked(text: str) -> dict[str, list[tuple[Version, str | None, int]]]:
    """Each locked package: its versions, with their marker and number of hashes."""
    out: dict[str, list[tuple[Version, str | None, int]]] = {}
    for entry in re.split(r"\n(?=\S)", text):
        head = entry.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)\s*(?:;\s*(.+))?", head)
        assert match, f"not an exact pin: {head!r}"
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        hashes = len(re.findall(r"--hash=sha256:[0-9a-f]{64}", entry))
        out.setdefault(name, []).append((Version(match[2]), match[3], hashes))
    return out


def test_base_images_are_pinned_to_an_exact_tag_or_digest() -> None:
    """Every FROM names an exact patch version (or a digest), never `latest` or a moving tag."""
    bases = [args.split()[0] for keyword, args in instructions(DOCKERFILE.read_text())
             if keyword == "FROM"]  # fmt: skip
    assert bases
    for base in bases:
        assert "@sha256:" in base or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", base), base


def test_python_packages_come_only_from_the_hashed_lock() -> None:
    """Each `pip install` reads the lock with --require-hashes, or installs the project itself
    with neither dependencies nor an index."""
    installs = [args for keyword, args in instructions(DOCKERFILE.read_text())
                if keyword == "RUN" and "pip install" in args]  # fmt: skip
    assert installs
    for args in installs:
        hashed = "--require-hashes" in args and "requirements.lock" in args
        itself = {"--no-deps", "--no-index", "--no-build-isolation"} <= set(args.split())
        assert hashed or itself, args
    assert any("--require-hashes" in args for args in installs)


def test_the_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    """Every runtime dependency and the build backend is locked at a version its specifier
    accepts, for the image's Python, with sha256 hashes on every pin."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    pins = locked(LOCK.read_text())
    for name, versions in pins.items():
        for version, _, hashes in versions:
            assert hashes > 0, f"{name}=={version} has no hash"
    for text in wanted:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{text} is not in {LOCK.name}: regenerate it (see the Dockerfile)"
        for_image = [v for v, marker, _ in pins[name]
                     if marker is None or Marker(marker).evaluate(IMAGE_PYTHON)]  # fmt: skip
        assert len(for_image) == 1, (text, pins[name])
        assert requirement.specifier.contains(for_image[0], prereleases=True), (text, for_image)
        for extra in requirement.extras:  # githubkit[auth-app]: the extra's packages too
            for needed in _extra_requirements(requirement.name, extra):
                wanted_name = re.sub(r"[-_.]+", "-", needed.name).lower()
                assert wanted_name in pins, (
                    f"{needed.name}, of {text}, is not in {LOCK.name}: regenerate it"
                )


def _extra_requirements(package: str, extra: str) -> list[Requirement]:
    """What `package[extra]` adds, read from the installed package's metadata."""
    found = []
    for text in importlib.metadata.requires(package) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if (
            marker is not None
            and marker.evaluate({**IMAGE_PYTHON, "extra": extra})
            and (not marker.evaluate({**IMAGE_PYTHON, "extra": ""}))
        ):
            found.append(requirement)
    return found


def test_the_image_runs_as_a_numeric_non_root_user_with_a_health_check() -> None:
    """The last USER is uid:gid in numbers, not 0; HEALTHCHECK asks /healthz."""
    steps = instructions(DOCKERFILE.read_text())
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    (user,) = [args for keyword, args in final if keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert gid.isdigit(), user
    assert int(uid) > 0, user
    assert int(gid) > 0, user
    (check,) = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert "/healthz" in check


@pytest.mark.parametrize("keyword", ["ENV", "ARG", "LABEL"])
def test_no_secret_is_baked_into_the_image(keyword: str) -> None:
    """No ENV, ARG or LABEL sets a variable the config reads secrets from, or one named like a
    secret; secrets come from the environment at run time."""
    secrets = {getattr(config, n) for n in dir(config) if n.startswith("ENV_")}
    for found, args in instructions(DOCKERFILE.read_text()):
        if found != keyword:
            continue
        names = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args)) | {args.split()[0]}
        assert not names & secrets, args
        assert not [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", n, re.I)]


def test_the_image_copies_every_package_it_installs() -> None:
    """Each top-level package that pyproject.toml installs is copied into the build stage."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tops = {name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]}
    copied = {args.split()[0] for keyword, args in instructions(DOCKERFILE.read_text())
              if keyword == "COPY" and not args.startswith("--from")}  # fmt: skip
    assert tops <= copied, tops - copied

"""Lessons: what a repository's confirmed incidents teach, each tied to the incidents behind it.

Pure: the store hands in every deployed PR of the repository, each incident's blame and the
signals on it (`Store.evidence.learning`), what each confirmed incident regressed, and the
changed lines of the culprit PRs (read from the forge: the store keeps paths and line ranges,
not the text). An incident is *confirmed* when a person confirmed it or the revert restored
health, and a culprit remains after every later signal (`attribution.feedback.culprits`).

Three kinds of lesson, each naming its incidents and PRs:

- per code area (`area_of`): how often changes there regressed, and what kinds of change the
  reverted diffs were (removed retries, a migration, a dependency manifest, ...);
- per agent and per model: their regression rate against the repository's, with a 95% Wilson
  interval, said to be higher only when the interval's lower bound is above the repo's rate;
- per spec: the specs whose PRs were reverted, and what they left out (the kinds of change
  that regressed, and the SLI the change had to keep).

Lesson text is Markdown-safe by construction: everything that came from outside (paths, agent
and model names, specs, SLIs) is inside a code span (`code`), the rest is this module's prose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from attribution.diffs import area_of, matches
from attribution.evidence import PrChange
from attribution.feedback import Blame, Signal, culprits

CONFIRMING = ("confirmed", "recovered")
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one incident regressed, as lessons quote it."""

    incident_id: str
    service: str
    sli: str | None
    opened_at: float


@dataclass(frozen=True, slots=True)
class ChangedFile:
    """One file of a culprit PR: its path and the text of the lines it removed and added."""

    path: str
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    status: str = "modified"


@dataclass(frozen=True, slots=True)
class Lesson:
    """One lesson: `key` is stable across runs (`area:payments`), `text` Markdown-safe prose."""

    key: str
    kind: str  # area | agent | model | spec
    subject: str
    text: str
    incidents: tuple[str, ...]
    prs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A confirmed incident and its culprit PRs."""

    incident_id: str
    culprits: tuple[int, ...]


def code(text: str) -> str:
    """Untrusted text as one Markdown code span: no links, mentions, HTML or markup."""
    return "`" + text.replace("`", "'").replace("\r", " ").replace("\n", " ")[:200] + "`"


def confirmed(blames: Iterable[Blame], signals: Sequence[Signal]) -> list[Confirmed]:
    """Incidents a person confirmed or a recovery proved, with the culprits left after every
    signal; in incident order."""
    by_incident: dict[str, list[Signal]] = {}
    for s in signals:
        by_incident.setdefault(s.incident_id, []).append(s)
    out = []
    for blame in sorted(blames, key=lambda b: b.incident_id):
        own = by_incident.get(blame.incident_id, [])
        if not any(s.kind in CONFIRMING for s in own):
            continue
        shares = culprits(blame, own)
        if shares:
            out.append(Confirmed(blame.incident_id, tuple(sorted(shares))))
    return out


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# -- kinds of change ---------------------------------------------------------------------------

_MANIFESTS = {
    "package.json", "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "pyproject.toml",
    "poetry.lock", "uv.lock", "Pipfile", "Pipfile.lock", "go.mod", "go.sum", "Cargo.toml",
    "Cargo.lock", "Gemfile", "Gemfile.lock", "pom.xml", "build.gradle", "build.gradle.kts",
    "composer.json", "composer.lock",
}  # fmt: skip
_MIGRATIONS = ("**/migrations/**", "**/migrate/**", "**/*.sql", "**/alembic/**", "**/schema/**")
_TESTS = ("**/tests/**", "**/test/**", "**/test_*", "**/*_test.*", "**/*.test.*", "**/*.spec.*")
_CONFIG = ("**/*.yaml", "**/*.yml", "**/*.toml", "**/*.ini", "**/*.env", "**/config/**")
_WORDS = {
    "retries": re.compile(r"retr(y|ies|ied)|backoff|back_off", re.IGNORECASE),
    "a timeout": re.compile(r"time_?out|deadline", re.IGNORECASE),
    "error handling": re.compile(r"\b(except|catch|rescue|recover)\b", re.IGNORECASE),
    "a lock or transaction": re.compile(r"\b(lock|mutex|transaction|atomic)\b", re.IGNORECASE),
    "validation": re.compile(r"\b(validate|assert|raise|throw)\b", re.IGNORECASE),
}
MIN_DELETED = 20
"""A change "mostly deleted code" when it removed at least this many lines, over twice its adds."""

ADVICE = {
    "removed retries": "keep retries and backoff on calls that can fail",
    "removed a timeout": "keep timeouts and deadlines on outbound calls",
    "removed error handling": "keep the error handling around calls that can fail",
    "removed a lock or transaction": "keep the locks and transactions that guard shared state",
    "removed validation": "keep input validation and the checks that raise",
    "touched a migration": "ship migrations separately, backward compatible, with a rollback",
    "changed a dependency manifest": "change dependencies in a PR of their own",
    "changed configuration": "change configuration in a PR of its own, with its default kept",
    "removed tests": "do not delete tests to make a change pass",
    "mostly deleted code": "check what depends on code before deleting it",
}
"""Each kind of change, and what an agent should do instead."""


def change_kinds(files: Sequence[ChangedFile]) -> tuple[str, ...]:
    """The kinds of change in one PR's files (keys of `ADVICE`), in `ADVICE`'s order."""
    kinds: set[str] = set()
    code_files = [f for f in files if not matches(f.path, _TESTS)]  # a test's asserts are no code
    removed = [line for f in code_files for line in f.removed]
    added = [line for f in code_files for line in f.added]
    for word, pattern in _WORDS.items():
        gone = sum(bool(pattern.search(line)) for line in removed)
        if gone > sum(bool(pattern.search(line)) for line in added):
            kinds.add(f"removed {word}")
    for f in files:
        name = f.path.rsplit("/", 1)[-1]
        if name in _MANIFESTS:
            kinds.add("changed a dependency manifest")
        elif matches(f.path, _MIGRATIONS):
            kinds.add("touched a migration")
        elif matches(f.path, _TESTS) and (f.status == "removed" or len(f.removed) > len(f.added)):
            kinds.add("removed tests")
        elif matches(f.path, _CONFIG):
            kinds.add("changed configuration")
    if len(removed) >= MIN_DELETED and len(removed) > 2 * len(added):
        kinds.add("mostly deleted code")
    return tuple(k for k in ADVICE if k in kinds)


# -- derivation ---------------------------------------------------------------------------------


def derive(
    deployed: Sequence[PrChange],
    blames: Sequence[Blame],
    signals: Sequence[Signal],
    outcomes: Mapping[str, Outcome],
    diffs: Mapping[int, Sequence[ChangedFile]],
) -> list[Lesson]:
    """Every lesson of one repository: code areas, then agents, models and specs.

    `diffs` holds each culprit PR's changed lines (a PR missing there counts by its paths)."""
    found = confirmed(blames, signals)
    if not found:
        return []
    prs = {c.number: c for c in deployed}
    blamed: dict[int, list[str]] = {}
    for c in found:
        for number in c.culprits:
            blamed.setdefault(number, []).append(c.incident_id)
    kinds = {n: change_kinds(_files_of(n, prs, diffs)) for n in blamed}
    return [
        *_area_lessons(blamed, prs, diffs, kinds),
        *_rate_lessons(blamed, deployed),
        *_spec_lessons(blamed, prs, kinds, outcomes),
    ]


def _files_of(
    number: int, prs: Mapping[int, PrChange], diffs: Mapping[int, Sequence[ChangedFile]]
) -> tuple[ChangedFile, ...]:
    if number in diffs:
        return tuple(diffs[number])
    change = prs.get(number)
    return tuple(ChangedFile(p) for p in change.paths) if change else ()


def _incidents(blamed: Mapping[int, list[str]], numbers: Iterable[int]) -> tuple[str, ...]:
    return tuple(sorted({i for n in numbers for i in blamed.get(n, [])}))


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _area_lessons(
    blamed: Mapping[int, list[str]],
    prs: Mapping[int, PrChange],
    diffs: Mapping[int, Sequence[ChangedFile]],
    kinds: Mapping[int, tuple[str, ...]],
) -> list[Lesson]:
    by_area: dict[str, set[int]] = {}
    for number in blamed:
        for f in _files_of(number, prs, diffs):
            by_area.setdefault(area_of(f.path), set()).add(number)
    out = []
    for area, numbers in sorted(by_area.items()):
        incidents = _incidents(blamed, numbers)
        subject = f"{area}/**" if area != "." else "files at the repository root"
        counted: dict[str, int] = {}
        for n in numbers:
            for k in kinds.get(n, ()):
                counted[k] = counted.get(k, 0) + 1
        ordered = sorted(counted.items(), key=lambda kv: (-kv[1], list(ADVICE).index(kv[0])))
        what = "; ".join(f"{k} ({c} of {len(numbers)})" for k, c in ordered)
        text = f"Changes to {code(subject)} regressed production {_times(len(incidents))}" + (
            f": the reverted changes {what}." if what else "."
        )
        if ordered:
            text += " Here, " + "; ".join(ADVICE[k] for k, _ in ordered) + "."
        else:
            text += " Here, test changes against the service's SLIs before merging."
        out.append(Lesson(f"area:{area}", "area", subject, text, incidents, tuple(sorted(numbers))))
    return out


def _rate_lessons(blamed: Mapping[int, list[str]], deployed: Sequence[PrChange]) -> list[Lesson]:
    total, bad = len(deployed), sum(1 for c in deployed if c.number in blamed)
    repo_rate = bad / total if total else 0.0
    groups: dict[tuple[str, str], list[int]] = {}
    for c in deployed:
        ident = c.pr.identity
        if ident.is_agent:
            groups.setdefault(("agent", ident.name), []).append(c.number)
        if ident.model:
            groups.setdefault(("model", ident.model), []).append(c.number)
    out = []
    for (kind, name), numbers in sorted(groups.items()):
        culprit_prs = [n for n in numbers if n in blamed]
        if not culprit_prs:
            continue
        k, n = len(culprit_prs), len(numbers)
        low, high = wilson(k, n)
        if low > repo_rate:
            verdict = "higher than the repository's"
        elif high < repo_rate:
            verdict = "lower than the repository's"
        else:
            verdict = "not distinguishable from the repository's yet"
        who = "PRs by agent" if kind == "agent" else "PRs written with model"
        text = (
            f"{who} {code(name)} regressed {k} of {n} deployed ({k / n:.0%}, 95% interval "
            f"{low:.0%}-{high:.0%}), {verdict} ({bad} of {total}, {repo_rate:.0%})."
        )
        if low > repo_rate:
            text += " Such PRs deserve a smaller scope and a test against the SLI that regressed."
        out.append(Lesson(f"{kind}:{name}", kind, name, text, _incidents(blamed, culprit_prs),
                          tuple(culprit_prs)))  # fmt: skip
    return out


def _spec_lessons(
    blamed: Mapping[int, list[str]],
    prs: Mapping[int, PrChange],
    kinds: Mapping[int, tuple[str, ...]],
    outcomes: Mapping[str, Outcome],
) -> list[Lesson]:
    by_spec: dict[str, list[int]] = {}
    for number in blamed:
        change = prs.get(number)
        spec = change.pr.identity.spec if change else None
        if spec:
            by_spec.setdefault(spec, []).append(number)
    out = []
    for spec, numbers in sorted(by_spec.items()):
        numbers.sort()
        incidents = _incidents(blamed, numbers)
        slis = sorted(
            {f"{o.service}/{o.sli}" for i in incidents if (o := outcomes.get(i)) and o.sli}
        )
        missing = sorted({ADVICE[k] for n in numbers for k in kinds.get(n, ())})
        left_out = [f"that the change must {m}" for m in missing]
        if slis:
            left_out.append("an acceptance check on " + ", ".join(code(s) for s in slis))
        refs = ", ".join(f"#{n}" for n in numbers)
        text = (
            f"Spec {code(spec)}: {refs} written against it {'was' if len(numbers) == 1 else 'were'}"
            f" reverted. It left out " + ("; ".join(left_out) or "what the change had to keep")
            + ". Specs like it should say so."
        )  # fmt: skip
        out.append(Lesson(f"spec:{spec}", "spec", spec, text, incidents, tuple(numbers)))
    return out


def patch_lines(patch: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The removed and added lines of a unified diff (without their `-`/`+`)."""
    removed: list[str] = []
    added: list[str] = []
    in_hunk = False
    for line in (patch or "").splitlines():
        if line.startswith("@@"):
            in_hunk = True
            continue
        if not in_hunk:  # `diff --git`, `---` and `+++` headers before the first hunk
            continue
        if line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
    return tuple(removed), tuple(added)

"""The lessons section of an agents' instructions file (`AGENTS.md`, `CLAUDE.md`, ...), and the
lessons PR's title and body.

Pure. `render` writes the lessons as one Markdown section between `START` and `END`; `splice`
puts it into the file's text: in place of the section already there, or appended (the file
created when absent), every byte outside the section unchanged. A file whose markers are damaged
(an end without a start, two starts) is refused rather than guessed at.

Lesson texts are Markdown-safe (`attribution.lessons.code` wraps everything from outside);
incident ids become links to the incident when Rearguard has a public URL, code spans otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from attribution.lessons import Lesson, code

START = "<!-- rearguard:lessons:start -->"
END = "<!-- rearguard:lessons:end -->"
HEADINGS = (
    ("area", "Code areas"),
    ("agent", "Agents"),
    ("model", "Models"),
    ("spec", "Specs"),
)


class LessonsFileError(ValueError):
    """The instructions file's lessons markers are damaged: a person must fix them first."""


def incident_link(incident_id: str, public_url: str | None) -> str:
    """An incident as Markdown: a link when Rearguard is reachable, else a code span."""
    if not public_url:
        return code(incident_id)
    return f"[{code(incident_id)}]({public_url.rstrip('/')}/v1/incidents/{quote(incident_id)})"


def render(lessons: Sequence[Lesson], public_url: str | None) -> str:
    """The section, markers included, without a trailing newline."""
    lines = [
        START,
        "## Lessons from production incidents",
        "",
        "_Derived by Rearguard from confirmed incidents (each names its evidence). This section "
        "is rewritten on every update; edit outside the markers._",
    ]
    for kind, heading in HEADINGS:
        chosen = [lesson for lesson in lessons if lesson.kind == kind]
        if not chosen:
            continue
        lines += ["", f"### {heading}", ""]
        for lesson in chosen:
            links = ", ".join(incident_link(i, public_url) for i in lesson.incidents)
            prs = ", ".join(f"#{n}" for n in lesson.prs)
            lines.append(f"- {lesson.text} (incidents: {links}; PRs: {prs})")
    if not lessons:
        lines += ["", "No confirmed incidents yet."]
    lines.append(END)
    return "\n".join(lines)


def splice(existing: str | None, section: str) -> str:
    """`existing` with its lessons section replaced by `section` (or `section` appended; the
    whole file when there is none)."""
    if existing is None or existing == "":
        return section + "\n"
    starts, ends = existing.count(START), existing.count(END)
    if starts == 0 and ends == 0:
        gap = "\n" if existing.endswith("\n") else "\n\n"
        return f"{existing}{gap}{section}\n"
    if starts != 1 or ends != 1:
        raise LessonsFileError(
            f"the lessons markers appear {starts} and {ends} times: expected one of each"
        )
    begin, end = existing.index(START), existing.index(END)
    if end < begin:
        raise LessonsFileError("the lessons end marker comes before its start marker")
    return existing[:begin] + section + existing[end + len(END) :]


def pr_title(repo: str) -> str:
    """The lessons PR's title."""
    return f"Rearguard: lessons from production incidents ({repo})"


def pr_body(lessons: Sequence[Lesson], path: str, public_url: str | None) -> str:
    """The lessons PR's body: what changes, where, and the incidents behind each lesson."""
    incidents = sorted({i for lesson in lessons for i in lesson.incidents})
    lines = [
        f"Rearguard updates the lessons section of {code(path)} from {len(incidents)} confirmed "
        "incident(s). Only the text between the `rearguard:lessons` markers changes; this PR is "
        "never merged automatically, and is updated in place while it stays open.",
        "",
        "| lesson | incidents | PRs |",
        "| --- | --- | --- |",
    ]
    for lesson in lessons:
        links = ", ".join(incident_link(i, public_url) for i in lesson.incidents)
        prs = ", ".join(f"#{n}" for n in lesson.prs)
        key = code(lesson.key).replace("|", "\\|")  # GFM: a pipe in a table cell is escaped
        lines.append(f"| {key} | {links} | {prs} |")
    return "\n".join(lines)

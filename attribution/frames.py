"""Sentry stack frames against the files and changed lines of each PR.

As Sentry's suspect commits do, a frame's path is matched to a PR's file by the longest path
suffix (an SDK reports `/app/src/pay/retry.py` or `pay/retry.py`; the repository holds
`services/pay/src/pay/retry.py`), and innermost frames weigh most: the frame where the error was
raised is likelier to be the changed code than the request handler ten frames out. Unlike
Sentry, the changed line ranges of each PR are known, so a frame on a line a PR changed is much
stronger evidence than a frame in a file it changed elsewhere, which is what separates two PRs
that touched the same shared file.
"""

from __future__ import annotations

from collections.abc import Sequence

from attribution.evidence import ErrorEvent, Frame, PrChange, Score
from attribution.line_records import LineRecord, at_line

LR_LINE = 212.0
"""Likelihood ratio of the innermost frame falling on a line the PR changed."""
LR_NEAR = 5.0
"""... within `NEAR_LINES` of a changed range (a changed call site, an edited condition)."""
LR_FILE = 5.0
"""... in a file the PR changed, but away from its changed lines. Fitted alone on the training
seeds this falls to about 2 (there, with lines carried to the head, a culprit's frame nearly
always hits its line); it is held at Sentry's level instead, so that two PRs that changed the
frame's file but not its line share the revert unit rather than widening it to the range."""
NEAR_LINES = 3
MAX_FRAMES = 12
MAX_EVENTS = 5


def suffix_length(frame_path: str, repo_path: str) -> int:
    """How many trailing path segments agree (0 when even the file names differ)."""
    a = [p for p in frame_path.replace("\\", "/").split("/") if p not in ("", ".")]
    b = repo_path.split("/")
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _best_files(frame: Frame, changes: Sequence[PrChange]) -> list[tuple[PrChange, int]]:
    """The PRs whose file matches `frame` by the longest suffix, with that file's index."""
    best, found = 0, list[tuple[PrChange, int]]()
    for change in changes:
        for i, f in enumerate(change.files):
            n = suffix_length(frame.path, f.path)
            if n == 0 or n < best:
                continue
            if n > best:
                best, found = n, []
            found.append((change, i))
    return found


def _frame_ratio(frame: Frame, change: PrChange, index: int) -> tuple[float, str]:
    f = change.files[index]
    if frame.line is not None and f.holds(frame.line):
        record = at_line(change.lines, f.path, frame.line)
        by = f", {written_by(record)}" if record is not None else ""
        return LR_LINE, f"on a line #{change.number} changed{by}"
    if frame.line is not None and f.holds(frame.line, NEAR_LINES):
        return LR_NEAR, f"within {NEAR_LINES} lines of a change by #{change.number}"
    return LR_FILE, f"in {f.path}, which #{change.number} changed elsewhere"


def written_by(record: LineRecord) -> str:
    """Who wrote a line, as a reason says it: authorship, agent, session and model, and the
    source that recorded them."""
    if record.authorship != "agent":
        who = "by a person" if record.authorship == "human" else "by an unrecorded author"
    else:
        who = f"by {record.agent or 'an agent'}"
        who += f" in session {record.session}" if record.session else ""
        who += f" with {record.model}" if record.model else ""
    return f"written {who} (per {record.source}, line grain)"


def line_record(errors: Sequence[ErrorEvent], change: PrChange) -> LineRecord | None:
    """The line record of `change` (carried to the deploy's head) holding the innermost frame
    that falls on one, over the errors in order: who wrote the line the error points at."""
    for event in [e for e in errors if e.frames][:MAX_EVENTS]:
        for frame in list(reversed(event.frames))[:MAX_FRAMES]:
            if frame.line is None:
                continue
            for change_, index in _best_files(frame, [change]):
                found = at_line(change_.lines, change_.files[index].path, frame.line)
                if found is not None:
                    return found
    return None


def _event_scores(event: ErrorEvent, changes: Sequence[PrChange]) -> dict[int, Score]:
    """Per PR, its strongest frame of `event`, the ratio damped by how far out the frame is."""
    scores: dict[int, Score] = {}
    innermost_first = list(reversed(event.frames))[:MAX_FRAMES]
    for depth, frame in enumerate(innermost_first):
        weight = 1.0 / (1 + depth)
        for change, index in _best_files(frame, changes):
            ratio, how = _frame_ratio(frame, change, index)
            damped = 1.0 + weight * (ratio - 1.0)
            known = scores.get(change.number)
            if known is None or damped > known.ratio:
                place = "innermost frame" if depth == 0 else f"frame {depth + 1} from the top"
                reason = f"{place} `{frame.where()}` of {event.title!r} is {how}"
                scores[change.number] = Score(change.number, damped, reason)
    return scores


def score_frames(errors: Sequence[ErrorEvent], changes: Sequence[PrChange]) -> list[Score]:
    """Scores from the in-app frames of errors first seen after the deploy.

    Errors are taken in the order given (the loop puts the most frequent first); each is one
    piece of evidence, but several errors from one bug are not independent, so a PR keeps its
    strongest error's ratio and gains only the square root of the others'.
    """
    per_pr: dict[int, list[Score]] = {}
    for event in [e for e in errors if e.frames][:MAX_EVENTS]:
        for number, score in _event_scores(event, changes).items():
            per_pr.setdefault(number, []).append(score)
    out = []
    for number, scores in per_pr.items():
        scores.sort(key=lambda s: s.ratio, reverse=True)
        ratio = scores[0].ratio
        for extra in scores[1:]:
            ratio *= extra.ratio**0.5
        more = f" (and {len(scores) - 1} more error(s))" if len(scores) > 1 else ""
        out.append(Score(number, ratio, scores[0].reason + more))
    return out


def suffix_ranking(errors: Sequence[ErrorEvent], changes: Sequence[PrChange]) -> list[int]:
    """Sentry's own suspect-commit heuristic, for comparison: file suffix matches only, the
    innermost frame weighing most, ties to the newest PR; PRs with no match follow newest first."""
    points: dict[int, float] = {c.number: 0.0 for c in changes}
    for event in [e for e in errors if e.frames][:MAX_EVENTS]:
        for depth, frame in enumerate(list(reversed(event.frames))[:MAX_FRAMES]):
            for change, _ in _best_files(frame, changes):
                points[change.number] += 1.0 / (1 + depth)
    order = sorted(changes, key=lambda c: (points[c.number], c.pr.merged_at, c.number))
    return [c.number for c in reversed(order)]

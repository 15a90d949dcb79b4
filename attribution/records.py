"""Value types that cross the attribution boundary: deploys, merged PRs, agent sessions,
incidents, suspects and actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

AUTHORSHIPS = ("agent", "human", "unknown")
"""`AgentIdentity.kind`: "human" only on positive evidence (a human-only rule, a git-ai `h_`
line); a PR or line with no marker at all is "unknown", never "human"."""


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who wrote a PR (or a line): the provenance record shared by PR- and line-level markers.

    `kind` is the authorship, one of `AUTHORSHIPS`; `name` is the agent (or, for a human or an
    unknown author, the account); `source` says which marker it was read from, as a person reads
    it ("bot author copilot-swe-agent[bot]", "branch copilot/fix-1", "body link"); `grain` is
    "pr" or "line".
    """

    kind: str
    name: str
    session: str | None = None
    model: str | None = None
    role: str | None = None
    spec: str | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    source: str | None = None
    grain: str = "pr"

    @property
    def is_agent(self) -> bool:
        return self.kind == "agent"

    @property
    def authorship(self) -> str:
        """ "agent", "human" or "unknown" (the same as `kind`)."""
        return self.kind

    @property
    def agent(self) -> str | None:
        """The agent's name when an agent wrote it, else None."""
        return self.name if self.is_agent else None


@dataclass(frozen=True, slots=True)
class MergedPR:
    """A merged pull request as the store keeps it."""

    repo: str
    number: int
    title: str
    author: str
    url: str
    merge_sha: str
    head_sha: str
    base_ref: str
    merged_at: float
    body: str
    identity: AgentIdentity
    labels: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default=())
    node_id: str | None = None
    head_ref: str | None = None
    """The PR's head branch (`copilot/…`, `codex/…`): a marker that survives squash merges."""


@dataclass(frozen=True, slots=True)
class Deploy:
    """A deploy of one service to one environment; times are Unix seconds."""

    id: str
    service: str
    environment: str
    sha: str
    finished_at: float
    source: str
    repo: str | None = None
    previous_sha: str | None = None
    started_at: float | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class WatchState:
    """Where a deploy's Watch is: its phase and when it is next due."""

    deploy_id: str
    phase: str
    next_due: float
    reason: str | None
    version: int = 0
    """Applied transitions so far: a step claims the Watch at the version it read."""
    evaluations: int = 0
    """Evaluations kept so far (none: no baselines can be kept either)."""


@dataclass(frozen=True, slots=True)
class Suspect:
    """A PR suspected of a regression, with the probability and the reason a person can read."""

    repo: str
    number: int
    probability: float
    reason: str


@dataclass(frozen=True, slots=True)
class Incident:
    """A regression of one deploy, the suspects ranked, and what will be reverted."""

    id: str
    deploy_id: str
    service: str
    environment: str
    sli: str | None
    opened_at: float
    verdict: dict[str, object]
    ambiguous: bool
    confidence: float
    revert_unit: tuple[int, ...]
    reason: str
    suspects: tuple[Suspect, ...] = ()


class ActionKind(StrEnum):
    """What an action does to the outside world."""

    REVERT = "revert"
    MERGE = "merge"
    NOTIFY = "notify"
    REPLY = "reply"
    UPLOAD = "upload"  # a file (the SLI plot) in an incident's thread
    FIX = "fix"
    CLOSE = "close"
    RANGE = "range"  # reads rather than changes: a deploy's change range, retried like the rest
    WARN = "warn"  # an early warning (data gone, traffic fallen): a notice, never a revert
    SPEC = "spec"  # the comment on a confirmed culprit's spec issue
    CHECK = "check"  # a verdict shown on a commit (GitHub check run or commit status)


class ActionStatus(StrEnum):
    """Where an action is: `pending` until its call succeeded (`completed`), was given up on
    (`failed`), or was made moot by a person (`skipped`, e.g. the revert PR closed unmerged)."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class RoundOutcome(StrEnum):
    """What the deploy carrying a revert round showed, or what a person decided about it."""

    RECOVERED = "recovered"
    NOT_RECOVERED = "not_recovered"
    INCONCLUSIVE = "inconclusive"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Action:
    """A side effect (revert, notify) keyed for idempotency; written `pending` before the call."""

    id: str
    incident_id: str
    kind: ActionKind
    status: ActionStatus
    attempts: int
    url: str | None = None
    detail: dict[str, object] | None = None
    error: str | None = None

    def __post_init__(self) -> None:  # rows come from the store as plain strings
        object.__setattr__(self, "kind", ActionKind(self.kind))
        object.__setattr__(self, "status", ActionStatus(self.status))


@dataclass(frozen=True, slots=True)
class RevertRound:
    """One revert of an incident: which PRs, the deploy that carried it, and what followed."""

    incident_id: str
    round: int
    prs: tuple[int, ...]
    action_id: str
    decided_at: float
    reason: str
    deploy_id: str | None = None
    outcome: RoundOutcome | None = None
    outcome_at: float | None = None
    note: str | None = None

    def __post_init__(self) -> None:  # rows come from the store as plain strings
        if self.outcome is not None:
            object.__setattr__(self, "outcome", RoundOutcome(self.outcome))


@dataclass(frozen=True, slots=True)
class IncidentTimes:
    """When an incident began, was detected, reverted and recovered; durations in seconds."""

    incident_id: str
    onset_at: float
    detected_at: float
    revert_opened_at: float | None = None
    recovered_at: float | None = None
    time_to_revert: float | None = None
    time_to_restore: float | None = None

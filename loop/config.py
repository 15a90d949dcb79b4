"""Configuration: the only reader of config files and of the environment.

One TOML file (server, github, prometheus, slack, policy, anthropic, and a `[services.NAME]`
table per service with its SLIs as PromQL and optional policy overrides) is validated into a
frozen settings tree at load. Secrets come only from the environment and are held in `Secret`,
whose repr is `***`, so a settings object can be logged without leaking them.
"""

from __future__ import annotations

import base64
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attribution.markers import DEFAULT_RULES, MarkerRule, login_rules, rule
from loop.config_flagger import (
    ENV_FLAGGER_TOKEN,
    FLAGGER_KEYS,
    FlaggerConfigError,
    FlaggerSettings,
    flagger_settings,
)
from observer.slis import Direction, Sli, SliError, SliKind
from observer.watch_memory import LATE_SAMPLES
from rollback.github_auth import GitHubApp
from rollback.policy import DEFAULT_HUMAN_GATES, Mode

# Names of environment variables, not secrets (hence the S105 waivers).
ENV_API_TOKEN = "REARGUARD_API_TOKEN"  # noqa: S105
ENV_READ_TOKEN = "REARGUARD_READ_TOKEN"  # noqa: S105
ENV_GITHUB_TOKEN = "GITHUB_TOKEN"  # noqa: S105
ENV_GITHUB_WEBHOOK_SECRET = "REARGUARD_GITHUB_WEBHOOK_SECRET"  # noqa: S105
ENV_GITHUB_APP_KEY = "REARGUARD_GITHUB_APP_PRIVATE_KEY"
ENV_SLACK_TOKEN = "SLACK_BOT_TOKEN"  # noqa: S105
ENV_SLACK_SIGNING_SECRET = "SLACK_SIGNING_SECRET"  # noqa: S105
ENV_SENTRY_SECRET = "REARGUARD_SENTRY_CLIENT_SECRET"  # noqa: S105
ENV_ALERTMANAGER_TOKEN = "REARGUARD_ALERTMANAGER_TOKEN"  # noqa: S105
ENV_ANTHROPIC_KEY = "ANTHROPIC_API_KEY"
ENV_PROMETHEUS_TOKEN = "REARGUARD_PROMETHEUS_TOKEN"  # noqa: S105
ENV_PROMETHEUS_USER = "REARGUARD_PROMETHEUS_USER"
ENV_PROMETHEUS_PASSWORD = "REARGUARD_PROMETHEUS_PASSWORD"  # noqa: S105


REPO_NAME = re.compile(r"(?!\.\.?/)[A-Za-z0-9_.-]{1,100}/(?!\.\.?$)[A-Za-z0-9_.-]{1,100}")
"""`owner/name` as GitHub spells repositories; `.` and `..` are no names (they would move a URL
built from one), and nothing else that means something in a URL path or query can appear. The
pattern is also an ECMA-262 one: the OpenAPI document uses it as it is."""


def is_repo_name(value: str) -> bool:
    """Whether `value` is a repository name `owner/name` (config and webhooks alike)."""
    return REPO_NAME.fullmatch(value) is not None


class ConfigError(ValueError):
    """The configuration is unusable; the message names the file, the key and the fix."""


class Secret:
    """A secret value that never prints: `str()` and `repr()` give `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class RevisionSettings:
    """How a deployed revision names the service's commit (`[services.NAME.revisions]`):
    `image` is the service's image repository (an image reference of another repository is
    refused, and picks the service's image from a list); `tag_pattern` a regular expression the
    whole image tag must match, whose `ref` group (else the whole tag) is the tag or sha prefix
    looked up in the repository (`loop.api.revisions`)."""

    image: str = ""
    tag_pattern: str = ""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """One watched service: its repository, environments, code paths, windows and SLIs."""

    name: str
    repo: str
    slis: tuple[Sli, ...]
    environments: tuple[str, ...] = ("production",)
    default_branch: str = "main"
    paths: tuple[str, ...] = ()
    watch: float = 1800.0
    baseline: float = 1800.0
    step: float = 15.0
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    route_label: str = "route"
    sentry_projects: tuple[str, ...] = ()
    seasonal: tuple[float, ...] = (86400.0, 604800.0)
    """Offsets of the earlier watch windows used as extra baselines (a day and a week)."""
    mode: Mode | None = None  # None: the [policy] mode
    human_gates: tuple[str, ...] | None = None  # None: the [policy] gates
    revisions: RevisionSettings = field(default_factory=RevisionSettings)
    slack_channel: str = ""  # "": the [slack] channel; every notice of the service goes here


@dataclass(frozen=True, slots=True)
class AnthropicSettings:
    """The Fixer's model, where to reach it, and how much it may spend (USD)."""

    model: str = "claude-sonnet-4-6"
    base_url: str = "https://api.anthropic.com"
    timeout: float = 60.0
    max_tokens: int = 4096
    incident_cap_usd: float = 2.0
    daily_cap_usd: float = 20.0
    input_usd_per_mtok: float = 3.0
    output_usd_per_mtok: float = 15.0


@dataclass(frozen=True, slots=True)
class LessonsSettings:
    """`[lessons]`: whether lessons are proposed, automatically after confirmed incidents or
    only by `rearguard lessons`, into which file (per repository: `paths`) and from which
    branch; `min_incidents` confirmed incidents of a repository before an automatic run."""

    enabled: bool = True
    auto: bool = True
    path: str = "AGENTS.md"
    branch: str = "rearguard/lessons"
    min_incidents: int = 2
    paths: Mapping[str, str] = field(default_factory=dict)

    def path_for(self, repo: str) -> str:
        """The instructions file of `repo` (GitHub's names ignore case)."""
        for name, path in self.paths.items():
            if name.lower() == repo.lower():
                return path
        return self.path


@dataclass(frozen=True, slots=True)
class PrometheusAuth:
    """How Rearguard authenticates to Prometheus: a bearer token or basic auth (from the
    environment), extra headers (`[prometheus] headers`, such as Mimir's `X-Scope-OrgID`) and a
    CA bundle (`ca_file`) for a server whose certificate a private CA signed."""

    headers: Mapping[str, str] = field(default_factory=dict)
    token: Secret | None = None
    user: str = ""
    password: Secret | None = None
    ca_file: Path | None = None

    def all_headers(self) -> dict[str, str]:
        """The headers every query carries, `Authorization` included."""
        out = dict(self.headers)
        if self.token is not None:
            out["Authorization"] = f"Bearer {self.token.reveal()}"
        elif self.user:
            pair = f"{self.user}:{self.password.reveal() if self.password else ''}"
            out["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
        return out


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole settings tree, frozen after validation."""

    services: Mapping[str, ServiceSettings]
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    store_path: Path = Path("rearguard.duckdb")
    public_url: str | None = None
    tick_seconds: float = 5.0
    github_api_url: str = "https://api.github.com"
    prometheus_url: str = "http://127.0.0.1:9090"
    prometheus_timeout: float = 10.0
    prometheus_scrape_interval: float | None = None
    prometheus_late_samples: float = LATE_SAMPLES
    """Seconds after a step's end its samples may still arrive: those steps are read again."""
    """Seconds between samples of every SLI's series, when set; else learnt from the samples."""
    prometheus_auth: PrometheusAuth = field(default_factory=PrometheusAuth)
    slack_api_url: str = "https://slack.com/api/"
    slack_channel: str = ""
    mode: Mode = Mode.PROPOSE
    action_bar: float = 0.8
    human_gates: tuple[str, ...] = DEFAULT_HUMAN_GATES
    allow_rest_merge: bool = True
    anthropic: AnthropicSettings = field(default_factory=AnthropicSettings)
    lessons: LessonsSettings = field(default_factory=LessonsSettings)
    marker_rules: tuple[MarkerRule, ...] = DEFAULT_RULES
    """Provenance markers: `[[attribution.markers]]` and the login lists, then the defaults."""
    anthropic_api_key: Secret | None = None
    api_token: Secret | None = None
    read_token: Secret | None = None
    open_reads: bool = False
    """Serve the read endpoints without a token (off by default; see `read_tokens`)."""
    query_timeout: float = 10.0
    """Seconds a `POST /v1/query` may run before it is interrupted."""
    github_token: Secret | None = None
    github_app: GitHubAppSettings | None = None
    """GitHub App credentials (`[github] app_id`); when set, used instead of `GITHUB_TOKEN`."""
    github_webhook_secret: Secret | None = None
    slack_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    sentry_secret: Secret | None = None
    alertmanager_token: Secret | None = None
    flagger: FlaggerSettings = field(default_factory=FlaggerSettings)
    flagger_token: Secret | None = None
    """REARGUARD_FLAGGER_TOKEN; unset, the Flagger webhooks take the API token."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def read_tokens(self) -> tuple[str, ...]:
        """The bearer tokens the read endpoints take: the read token and the API token."""
        return tuple(s.reveal() for s in (self.read_token, self.api_token) if s is not None)

    def service(self, name: str) -> ServiceSettings | None:
        return self.services.get(name)

    def service_for_repo(self, repo: str) -> ServiceSettings | None:
        """The first service of repository `repo` (GitHub's names ignore case)."""
        return next((s for s in self.services.values() if s.repo.lower() == repo.lower()), None)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, where: str) -> float:
    """Seconds from `90`, `"15s"`, `"30m"`, `"1h"`, `"7d"`; ConfigError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        # TOML has `inf` and `nan`: neither is a window that ever ends.
        if seconds > 0 and math.isfinite(seconds):
            return seconds
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"{where}: expected a positive duration like '15s' or '30m', got {value!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse keys the config does not know, so a typo (`tolerence`) is not silently ignored."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(sorted(allowed))}"
        )


_SLI_KEYS = {
    "kind", "bad", "total", "query", "direction", "tolerance", "min_events", "critical",
    "version_label", "scrape_interval", "max_blip", "traffic_drop",
}  # fmt: skip
_SERVICE_KEYS = {
    "repo", "slis", "environments", "default_branch", "paths", "watch", "baseline", "step",
    "routes", "route_label", "sentry_projects", "seasonal", "mode", "human_gates", "revisions",
    "slack_channel",
}  # fmt: skip
_SECTIONS = {
    "server": {"listen", "store", "public_url", "tick", "open_reads", "query_timeout"},
    "github": {"api_url", "app_id", "installation_id", "private_key_file"},
    "prometheus": {"url", "timeout", "scrape_interval", "late_samples", "headers", "ca_file"},
    "slack": {"api_url", "channel"},
    "policy": {"mode", "action_bar", "human_gates", "allow_rest_merge"},
    "attribution": {"agent_logins", "human_logins", "markers"},
    "lessons": {"enabled", "auto", "path", "branch", "min_incidents", "paths"},
    "anthropic": {
        "model", "base_url", "timeout", "max_tokens", "incident_cap_usd", "daily_cap_usd",
        "input_usd_per_mtok", "output_usd_per_mtok",
    },
    "flagger": FLAGGER_KEYS,
}  # fmt: skip


def _typed(table: Mapping[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _strings(
    table: Mapping[str, Any], key: str, default: tuple[str, ...], where: str
) -> tuple[str, ...]:
    value = table.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _sli(name: str, table: Mapping[str, Any], where: str) -> Sli:
    _only(table, _SLI_KEYS, where)
    try:
        return Sli(
            name=name,
            kind=SliKind(_typed(table, "kind", str, "ratio", where)),
            bad=_typed(table, "bad", str, "", where),
            total=_typed(table, "total", str, "", where),
            query=_typed(table, "query", str, "", where),
            direction=Direction(_typed(table, "direction", str, "up", where)),
            tolerance=_typed(table, "tolerance", float, 0.1, where),
            min_events=_typed(table, "min_events", int, 100, where),
            critical=_typed(table, "critical", bool, True, where),
            version_label=_typed(table, "version_label", str, "", where),
            scrape_interval=_optional_duration(table, "scrape_interval", where),
            max_blip=_optional_duration(table, "max_blip", where),
            traffic_drop=_typed(table, "traffic_drop", float, 0.5, where),
        )
    except (SliError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _optional_duration(table: Mapping[str, Any], key: str, where: str) -> float | None:
    """A duration that may be left out (None), e.g. `scrape_interval = "30s"`."""
    if key not in table:
        return None
    return parse_duration(table[key], f"{where}.{key}")


def _routes(table: Mapping[str, Any], where: str) -> dict[str, tuple[str, ...]]:
    """`routes = { "/checkout" = ["src/checkout/**"] }`: label values to path globs."""
    routes = _table(table, "routes", where)
    out = {}
    for value, globs in routes.items():
        if (
            not isinstance(globs, list)
            or not globs
            or not all(isinstance(g, str) and g for g in globs)
        ):
            raise ConfigError(
                f"{where}.routes.{value!r}: expected a non-empty list of path globs, got {globs!r}"
            )
        out[str(value)] = tuple(globs)
    return out


def _service(name: str, table: Mapping[str, Any], where: str) -> ServiceSettings:
    _only(table, _SERVICE_KEYS, where)
    repo = _typed(table, "repo", str, "", where)
    if not is_repo_name(repo):
        raise ConfigError(f"{where}.repo: expected 'owner/name', got {repo!r}")
    slis_table = _table(table, "slis", where)
    if not slis_table:
        raise ConfigError(f"{where}: a service needs at least one [{where}.slis.NAME] table")
    slis = tuple(
        _sli(sli_name, _table(slis_table, sli_name, f"{where}.slis"), f"{where}.slis.{sli_name}")
        for sli_name in slis_table
    )
    step = parse_duration(table.get("step", "15s"), f"{where}.step")
    watch = parse_duration(table.get("watch", "30m"), f"{where}.watch")
    baseline = parse_duration(table.get("baseline", "30m"), f"{where}.baseline")
    if step < 1:
        raise ConfigError(f"{where}.step: must be at least 1s (PromQL ranges are whole seconds)")
    if watch < 2 * step or baseline < 2 * step:
        raise ConfigError(f"{where}: watch and baseline must each span at least two steps")
    mode = _mode(table.get("mode"), f"{where}.mode") if "mode" in table else None
    gates = _strings(table, "human_gates", (), where) if "human_gates" in table else None
    return ServiceSettings(
        mode=mode,
        human_gates=gates,
        name=name,
        repo=repo,
        slis=slis,
        environments=_strings(table, "environments", ("production",), where),
        default_branch=_typed(table, "default_branch", str, "main", where),
        paths=_strings(table, "paths", (), where),
        watch=watch,
        baseline=baseline,
        step=step,
        routes=_routes(table, where),
        route_label=_label(_typed(table, "route_label", str, "route", where), where),
        sentry_projects=_strings(table, "sentry_projects", (), where),
        seasonal=_seasonal(table, where),
        revisions=_revisions(_table(table, "revisions", where), f"{where}.revisions"),
        slack_channel=_channel_id(
            _typed(table, "slack_channel", str, "", where), f"{where}.slack_channel"
        ),
    )


def _revisions(table: Mapping[str, Any], where: str) -> RevisionSettings:
    _only(table, {"image", "tag_pattern"}, where)
    pattern = _typed(table, "tag_pattern", str, "", where)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}.tag_pattern: not a regular expression: {exc}") from exc
    if compiled.groups and "ref" not in compiled.groupindex:
        raise ConfigError(f"{where}.tag_pattern: name the group holding the ref `(?P<ref>...)`")
    return RevisionSettings(image=_typed(table, "image", str, "", where), tag_pattern=pattern)


def _label(value: str, where: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ConfigError(f"{where}.route_label: expected a Prometheus label name, got {value!r}")
    return value


def _seasonal(table: Mapping[str, Any], where: str) -> tuple[float, ...]:
    """Offsets of the seasonal baselines: `seasonal = ["1d", "7d"]` (default), `[]` for none."""
    value = table.get("seasonal", ["1d", "7d"])
    if not isinstance(value, list):
        raise ConfigError(f"{where}.seasonal: expected a list of durations like ['1d', '7d']")
    return tuple(parse_duration(v, f"{where}.seasonal") for v in value)


def _mode(value: object, where: str) -> Mode:
    try:
        return Mode(str(value)) if isinstance(value, str) else Mode("")
    except ValueError as exc:
        raise ConfigError(f"{where}: expected observe, propose or act, got {value!r}") from exc


def _anthropic(table: Mapping[str, Any], where: str) -> AnthropicSettings:
    d = AnthropicSettings()
    money = {}
    for key in ("incident_cap_usd", "daily_cap_usd", "input_usd_per_mtok", "output_usd_per_mtok"):
        value = _typed(table, key, float, getattr(d, key), where)
        if value < 0 or not math.isfinite(value):
            raise ConfigError(f"{where}.{key}: expected a non-negative amount, got {value!r}")
        money[key] = value
    max_tokens = _typed(table, "max_tokens", int, d.max_tokens, where)
    if max_tokens < 1:
        raise ConfigError(f"{where}.max_tokens: expected a positive number, got {max_tokens}")
    return AnthropicSettings(
        model=_typed(table, "model", str, d.model, where),
        base_url=_typed(table, "base_url", str, d.base_url, where),
        timeout=parse_duration(table.get("timeout", d.timeout), f"{where}.timeout"),
        max_tokens=max_tokens,
        **money,
    )


_BRANCH = re.compile(r"(?!/)(?!.*(?:\.\.|//|@\{|\.lock$|/$|\.$))[A-Za-z0-9._/-]{1,200}")


def _file_path(value: object, where: str) -> str:
    """A path inside the repository: relative, no `..` or `.` segment, no backslash."""
    parts = value.split("/") if isinstance(value, str) else []
    if not parts or any(p in ("", ".", "..") for p in parts) or "\\" in str(value):
        raise ConfigError(f"{where}: expected a file path inside the repository, got {value!r}")
    return str(value)


def _lessons(table: Mapping[str, Any], where: str) -> LessonsSettings:
    d = LessonsSettings()
    branch = _typed(table, "branch", str, d.branch, where)
    if not _BRANCH.fullmatch(branch) or branch.startswith("-"):
        raise ConfigError(f"{where}.branch: expected a branch name, got {branch!r}")
    minimum = _typed(table, "min_incidents", int, d.min_incidents, where)
    if minimum < 1:
        raise ConfigError(f"{where}.min_incidents: expected at least 1, got {minimum}")
    paths = _table(table, "paths", where)
    for repo in paths:
        if not is_repo_name(repo):
            raise ConfigError(f"{where}.paths: expected 'owner/name' keys, got {repo!r}")
    return LessonsSettings(
        enabled=_typed(table, "enabled", bool, d.enabled, where),
        auto=_typed(table, "auto", bool, d.auto, where),
        path=_file_path(table.get("path", d.path), f"{where}.path"),
        branch=branch,
        min_incidents=minimum,
        paths={repo: _file_path(path, f"{where}.paths.{repo}") for repo, path in paths.items()},
    )


_MARKER_KEYS = {"agent", "field", "pattern", "source", "authorship"}


def _marker_rules(table: Mapping[str, Any], where: str) -> tuple[MarkerRule, ...]:
    """`[attribution]`: extra marker rules first, then configured logins, then the defaults."""
    logins = table.get("agent_logins", {})
    if not isinstance(logins, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in logins.items()
    ):
        raise ConfigError(f'{where}.agent_logins: expected a table of login = "agent"')
    humans = _strings(table, "human_logins", (), where)
    entries = table.get("markers", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"{where}.markers: expected [[attribution.markers]] tables")
    extra: list[MarkerRule] = []
    for i, entry in enumerate(entries):
        at = f"{where}.markers[{i}]"
        _only(entry, _MARKER_KEYS, at)
        values = {k: _typed(entry, k, str, None, at) for k in ("agent", "field", "pattern")}
        try:
            extra.append(
                rule(
                    values["agent"], values["field"], values["pattern"],
                    _typed(entry, "source", str, f"marker {values['agent']}", at),
                    _typed(entry, "authorship", str, "agent", at),
                )
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return (*extra, *login_rules(logins, humans), *DEFAULT_RULES)


def _slack_channel(slack: Mapping[str, Any], where: str) -> str:
    channel: str = _typed(slack, "channel", str, "", f"{where}:slack")
    return _channel_id(channel, f"{where}:slack.channel")


def _channel_id(channel: str, where: str) -> str:
    if channel.startswith("#"):
        raise ConfigError(
            f"{where}: use the channel ID (like C0123ABCD, from the channel's "
            f"details in Slack), not {channel!r}: threads and the duplicate check need the ID"
        )
    return channel


def _prometheus_auth(
    table: Mapping[str, Any], env: Mapping[str, str], where: str
) -> PrometheusAuth:
    """Headers and CA bundle from the file; the token or user and password from `env` only."""
    headers = _table(table, "headers", where)
    for name, value in headers.items():
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ConfigError(f"{where}.headers.{name}: expected a header name and a string value")
        if name.lower() == "authorization":
            raise ConfigError(
                f"{where}.headers.Authorization: credentials come from the environment only "
                f"({ENV_PROMETHEUS_TOKEN}, or {ENV_PROMETHEUS_USER} and {ENV_PROMETHEUS_PASSWORD})"
            )
    token = _secret(env, ENV_PROMETHEUS_TOKEN)
    user = env.get(ENV_PROMETHEUS_USER, "").strip()
    if token is not None and user:
        raise ConfigError(
            f"{where}: set {ENV_PROMETHEUS_TOKEN} or {ENV_PROMETHEUS_USER}, not both "
            "(one Authorization header)"
        )
    ca = _typed(table, "ca_file", str, "", where)
    if ca and not Path(ca).is_file():
        raise ConfigError(f"{where}.ca_file: no such file {ca!r} (a PEM bundle of CA certificates)")
    return PrometheusAuth(
        headers=dict(headers), token=token, user=user,
        password=_secret(env, ENV_PROMETHEUS_PASSWORD), ca_file=Path(ca) if ca else None,
    )  # fmt: skip


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None


def client_token(env: Mapping[str, str]) -> Secret | None:
    """The bearer token the CLI sends to a running server's read routes (`rearguard query`,
    `export`, `backtest --url`): the read token, else the API token, as the server takes them."""
    return _secret(env, ENV_READ_TOKEN) or _secret(env, ENV_API_TOKEN)


def api_client_token(env: Mapping[str, str]) -> Secret | None:
    """The bearer token the CLI sends to a running server's write routes (`rearguard lessons
    --url`): the API token only, as the server takes it there."""
    return _secret(env, ENV_API_TOKEN)


@dataclass(frozen=True, slots=True)
class GitHubAppSettings:
    """A GitHub App: its id, its private key (PEM, a `Secret`), and the installation to act as
    (None: looked up per repository owner)."""

    app_id: int
    private_key: Secret
    installation_id: int | None = None


def _github_app(
    github: Mapping[str, Any], env: Mapping[str, str], where: str
) -> GitHubAppSettings | None:
    """`app_id`, `installation_id`, and the key from `REARGUARD_GITHUB_APP_PRIVATE_KEY` or the
    file `private_key_file` names (a mounted secret); None without `app_id`."""
    if "app_id" not in github:
        if "installation_id" in github or "private_key_file" in github:
            raise ConfigError(f"{where}: installation_id and private_key_file need app_id")
        return None
    app_id = _typed(github, "app_id", int, 0, where)
    installation = github.get("installation_id")
    if installation is not None:
        installation = _typed(github, "installation_id", int, 0, where)
    if app_id < 1 or (installation is not None and installation < 1):
        raise ConfigError(f"{where}: app_id and installation_id are positive integers")
    key = _secret(env, ENV_GITHUB_APP_KEY)
    path = github.get("private_key_file")
    if key is not None and path is not None:
        raise ConfigError(f"{where}: the App key comes from {ENV_GITHUB_APP_KEY} or "
                          "private_key_file, not both")  # fmt: skip
    if path is not None:
        file = Path(_typed(github, "private_key_file", str, "", where))
        try:
            key = Secret(file.read_text().strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.private_key_file: cannot read {file}: {exc}") from exc
    if key is None:
        raise ConfigError(f"{where}.app_id is set: export {ENV_GITHUB_APP_KEY} (the App's "
                          "private key, PEM) or set private_key_file")  # fmt: skip
    if not key.reveal().startswith("-----BEGIN"):
        raise ConfigError(f"{where}: the App's private key is not PEM (-----BEGIN ...)")
    return GitHubAppSettings(app_id, key, installation)


def github_credentials(settings: Settings) -> str | GitHubApp | None:
    """What the GitHub client authenticates with: the App when configured (its installation
    tokens; check runs need them), else `GITHUB_TOKEN`, else None."""
    app = settings.github_app
    if app is not None:
        first = next(iter(settings.services.values()), None)
        return GitHubApp(app.app_id, app.private_key.reveal(), app.installation_id,
                         default_repo=first.repo if first else None)  # fmt: skip
    return settings.github_token.reveal() if settings.github_token is not None else None


def github_auth_kind(settings: Settings) -> str:
    """Which GitHub auth the settings use, in words (no secret)."""
    app = settings.github_app
    if app is not None:
        where = (f"installation {app.installation_id}" if app.installation_id
                 else "installation looked up per repository owner")  # fmt: skip
        return f"GitHub App {app.app_id} ({where}): verdicts as check runs"
    if settings.github_token is not None:
        return "personal token (GITHUB_TOKEN): verdicts as commit statuses"
    return "none"


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """Read and validate `path`; secrets from `env`. Raises `ConfigError` naming what is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no such config file (see deploy/rearguard.example.toml)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return settings_from(data, env, str(path))


def settings_from(data: Mapping[str, Any], env: Mapping[str, str], where: str) -> Settings:
    """Validate an already-parsed config mapping (the demo builds one in code)."""
    for section, keys in _SECTIONS.items():
        _only(_table(data, section, where), keys, f"{where}:{section}")
    _only(data, {*_SECTIONS, "services"}, where)
    server = _table(data, "server", where)
    listen = _typed(server, "listen", str, "127.0.0.1:8080", f"{where}:server")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004 - the last TCP port
        raise ConfigError(f"{where}:server.listen: expected 'host:port', got {listen!r}")
    github = _table(data, "github", where)
    prom = _table(data, "prometheus", where)
    slack = _table(data, "slack", where)
    policy = _table(data, "policy", where)
    mode = _mode(_typed(policy, "mode", str, "propose", f"{where}:policy"), f"{where}:policy.mode")
    action_bar = _typed(policy, "action_bar", float, 0.8, f"{where}:policy")
    if not 0 < action_bar <= 1:
        raise ConfigError(f"{where}:policy.action_bar: expected a probability in (0, 1]")
    services_table = _table(data, "services", where)
    services = {
        name: _service(
            name, _table(services_table, name, f"{where}:services"), f"{where}:services.{name}"
        )
        for name in services_table
    }
    if not services:
        raise ConfigError(f"{where}: no [services.NAME] table: nothing to watch")
    try:
        flagger = flagger_settings(
            _table(data, "flagger", where), {n: s.environments for n, s in services.items()},
            {n for n, s in services.items() if any(sli.version_label for sli in s.slis)},
            f"{where}:flagger",
        )  # fmt: skip
    except FlaggerConfigError as exc:
        raise ConfigError(str(exc)) from exc
    return Settings(
        services=services,
        listen_host=host,
        listen_port=int(port),
        store_path=Path(_typed(server, "store", str, "rearguard.duckdb", f"{where}:server")),
        public_url=_typed(server, "public_url", str, "", f"{where}:server") or None,
        tick_seconds=parse_duration(server.get("tick", "5s"), f"{where}:server.tick"),
        open_reads=_typed(server, "open_reads", bool, False, f"{where}:server"),
        query_timeout=parse_duration(
            server.get("query_timeout", "10s"), f"{where}:server.query_timeout"
        ),
        github_api_url=_typed(github, "api_url", str, "https://api.github.com", f"{where}:github"),
        prometheus_url=_typed(prom, "url", str, "http://127.0.0.1:9090", f"{where}:prometheus"),
        prometheus_timeout=parse_duration(
            prom.get("timeout", "10s"), f"{where}:prometheus.timeout"
        ),
        prometheus_scrape_interval=_optional_duration(
            prom, "scrape_interval", f"{where}:prometheus"
        ),
        prometheus_late_samples=parse_duration(
            prom.get("late_samples", f"{LATE_SAMPLES:g}s"), f"{where}:prometheus.late_samples"
        ),
        prometheus_auth=_prometheus_auth(prom, env, f"{where}:prometheus"),
        slack_api_url=_typed(slack, "api_url", str, "https://slack.com/api/", f"{where}:slack"),
        slack_channel=_slack_channel(slack, where),
        mode=mode,
        action_bar=action_bar,
        human_gates=_strings(policy, "human_gates", DEFAULT_HUMAN_GATES, f"{where}:policy"),
        allow_rest_merge=_typed(policy, "allow_rest_merge", bool, True, f"{where}:policy"),
        anthropic=_anthropic(_table(data, "anthropic", where), f"{where}:anthropic"),
        lessons=_lessons(_table(data, "lessons", where), f"{where}:lessons"),
        marker_rules=_marker_rules(_table(data, "attribution", where), f"{where}:attribution"),
        anthropic_api_key=_secret(env, ENV_ANTHROPIC_KEY),
        api_token=_secret(env, ENV_API_TOKEN),
        read_token=_secret(env, ENV_READ_TOKEN),
        github_token=_secret(env, ENV_GITHUB_TOKEN),
        github_app=_github_app(github, env, f"{where}:github"),
        github_webhook_secret=_secret(env, ENV_GITHUB_WEBHOOK_SECRET),
        slack_token=_secret(env, ENV_SLACK_TOKEN),
        slack_signing_secret=_secret(env, ENV_SLACK_SIGNING_SECRET),
        sentry_secret=_secret(env, ENV_SENTRY_SECRET),
        alertmanager_token=_secret(env, ENV_ALERTMANAGER_TOKEN),
        flagger=flagger,
        flagger_token=_secret(env, ENV_FLAGGER_TOKEN),
    )

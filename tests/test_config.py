"""Configuration (`loop.config`): a real TOML file in `tmp_path`, each bad input in a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.config import (
    ENV_API_TOKEN,
    ENV_GITHUB_TOKEN,
    ENV_GITHUB_WEBHOOK_SECRET,
    ENV_READ_TOKEN,
    ENV_SLACK_SIGNING_SECRET,
    ENV_SLACK_TOKEN,
    ConfigError,
    Secret,
    Settings,
    load_settings,
    parse_duration,
)
from observer.slis import Direction, Sli, SliKind
from rollback.policy import DEFAULT_HUMAN_GATES, Mode

CONFIG = """
[server]
listen = "0.0.0.0:9000"
store = "/var/lib/rearguard/store.duckdb"
public_url = "https://rearguard.example.com"
tick = "2s"

[github]
api_url = "https://ghe.example.com/api/v3"

[prometheus]
url = "http://prometheus.monitoring:9090"
timeout = "20s"
late_samples = "1m"

[slack]
api_url = "http://127.0.0.1:9999/api/"
channel = "C0123ABCD"

[policy]
mode = "act"
action_bar = 0.75
human_gates = ["**/migrations/**", "**/package.json"]

[services.checkout]
repo = "acme/checkout"
default_branch = "trunk"
environments = ["production", "staging"]
paths = ["services/checkout/**"]
step = "30s"
baseline = "1h"
watch = "20m"

[services.checkout.slis.http_errors]
kind = "ratio"
bad = 'sum(increase(http_requests_total{code=~"5.."}[$step]))'
total = 'sum(increase(http_requests_total[$step]))'
tolerance = 0.2
min_events = 200
max_blip = "90s"

[services.checkout.slis.memory]
kind = "gauge"
query = 'sum(process_resident_memory_bytes)'
direction = "down"
critical = false

[services.search]
repo = "acme/search.api"

[services.search.slis.errors]
bad = "b"
total = "t"
"""

SECRETS = {
    ENV_API_TOKEN: "api-token-4f1e",
    ENV_READ_TOKEN: "read-token-5a2b",
    ENV_GITHUB_TOKEN: "ghp_0123456789abcdef",
    ENV_GITHUB_WEBHOOK_SECRET: "hook-secret-77",
    ENV_SLACK_TOKEN: "xoxb-1-2-3",
    ENV_SLACK_SIGNING_SECRET: "signing-secret-9",
}


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "rearguard.toml"
    path.write_text(text)
    return load_settings(path, env or {})


def test_full_config_parses(tmp_path: Path) -> None:
    """Every table of a complete config file lands in the frozen settings tree."""
    settings = load(tmp_path, CONFIG, SECRETS)
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 9000)
    assert settings.store_path == Path("/var/lib/rearguard/store.duckdb")
    assert settings.public_url == "https://rearguard.example.com"
    assert settings.tick_seconds == 2.0
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert settings.prometheus_url == "http://prometheus.monitoring:9090"
    assert settings.prometheus_timeout == 20.0
    assert settings.prometheus_late_samples == 60.0
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"
    assert settings.slack_channel == "C0123ABCD"
    assert settings.mode is Mode.ACT
    assert settings.action_bar == 0.75
    assert settings.human_gates == ("**/migrations/**", "**/package.json")
    checkout = settings.service("checkout")
    assert checkout is not None
    assert checkout.repo == "acme/checkout"
    assert checkout.default_branch == "trunk"
    assert checkout.environments == ("production", "staging")
    assert checkout.paths == ("services/checkout/**",)
    assert (checkout.step, checkout.baseline, checkout.watch) == (30.0, 3600.0, 1200.0)
    assert checkout.slis == (
        Sli(
            "http_errors",
            SliKind.RATIO,
            bad='sum(increase(http_requests_total{code=~"5.."}[$step]))',
            total="sum(increase(http_requests_total[$step]))",
            tolerance=0.2,
            min_events=200,
            max_blip=90.0,
        ),
        Sli(
            "memory",
            SliKind.GAUGE,
            query="sum(process_resident_memory_bytes)",
            direction=Direction.DOWN,
            critical=False,
        ),
    )
    assert settings.service_for_repo("acme/search.api") == settings.service("search")
    assert settings.service_for_repo("acme/unknown") is None


def test_defaults_fill_a_minimal_config(tmp_path: Path) -> None:
    """A file with one service and one SLI takes every other setting from the defaults."""
    settings = load(tmp_path, '[services.a]\nrepo = "o/a"\n[services.a.slis.e]\nbad="b"\ntotal="t"')
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert settings.mode is Mode.PROPOSE
    assert settings.human_gates == DEFAULT_HUMAN_GATES
    assert settings.public_url is None
    assert settings.prometheus_late_samples == 30.0
    service = settings.services["a"]
    assert (service.step, service.watch, service.baseline) == (15.0, 1800.0, 1800.0)
    assert service.environments == ("production",)
    assert service.slis[0].kind is SliKind.RATIO
    assert settings.api_token is None
    assert settings.open_reads is False
    assert settings.read_tokens() == ()


def without(text: str, line: str) -> str:
    assert line in text
    return text.replace(line + "\n", "")


def swap(old: str, new: str) -> str:
    assert old in CONFIG
    return CONFIG.replace(old, new, 1)


NO_SLIS = CONFIG[: CONFIG.index("[services.checkout.slis.http_errors]")]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param(swap('step = "30s"', 'step = "fast"'), "services.checkout.step",
                     id="bad-step"),
        pytest.param(swap('watch = "20m"', 'watch = "0s"'), "services.checkout.watch",
                     id="zero-watch"),
        pytest.param(swap('watch = "20m"', "watch = inf"), "services.checkout.watch",
                     id="inf-watch"),
        pytest.param(swap('baseline = "1h"', 'baseline = "1 hour"'), "services.checkout.baseline",
                     id="bad-baseline"),
        pytest.param(swap('watch = "20m"', 'watch = "45s"'), "two steps", id="watch-under-2-steps"),
        pytest.param(swap('tick = "2s"', 'tick = "-2s"'), "server.tick", id="negative-tick"),
        pytest.param(swap('tick = "2s"', 'tick = "2s"\nopen_reads = "yes"'), "server.open_reads",
                     id="open-reads-not-a-bool"),
        pytest.param(swap('timeout = "20s"', 'timeout = "soon"'), "prometheus.timeout",
                     id="bad-timeout"),
        pytest.param(swap('late_samples = "1m"', 'late_samples = "0s"'),
                     "prometheus.late_samples", id="no-time-for-late-samples"),
        pytest.param(without(CONFIG, 'repo = "acme/checkout"'), "services.checkout.repo",
                     id="missing-repo"),
        pytest.param(swap('repo = "acme/checkout"', 'repo = "checkout"'), "services.checkout.repo",
                     id="repo-without-owner"),
        pytest.param(swap('repo = "acme/checkout"', 'repo = "https://github.com/acme/checkout"'),
                     "services.checkout.repo", id="repo-as-url"),
        pytest.param(swap('repo = "acme/checkout"', "repo = 7"), "services.checkout.repo",
                     id="repo-not-a-string"),
        pytest.param(swap('repo = "acme/checkout"', 'repo = "acme/.."'), "services.checkout.repo",
                     id="repo-dot-dot"),
        pytest.param(NO_SLIS, "services.checkout", id="no-slis"),
        pytest.param(CONFIG[: CONFIG.index("[services.checkout]")], "no [services.NAME]",
                     id="no-services"),
        pytest.param(swap('channel = "C0123ABCD"', 'channel = "#deploys"'), "slack.channel",
                     id="channel-name"),
        pytest.param(swap('mode = "act"', 'mode = "yolo"'), "policy.mode", id="bad-mode"),
        pytest.param(swap("action_bar = 0.75", "action_bar = 0"), "policy.action_bar",
                     id="action-bar-zero"),
        pytest.param(swap("action_bar = 0.75", "action_bar = 1.5"), "policy.action_bar",
                     id="action-bar-above-one"),
        pytest.param(swap("action_bar = 0.75", 'action_bar = "high"'), "policy.action_bar",
                     id="action-bar-not-a-number"),
        pytest.param(swap("human_gates = [", 'human_gates = ["ok", 3, '), "policy.human_gates",
                     id="gate-not-a-string"),
        pytest.param(swap('listen = "0.0.0.0:9000"', 'listen = "9000"'), "server.listen",
                     id="listen-without-host"),
        pytest.param(swap('listen = "0.0.0.0:9000"', 'listen = "0.0.0.0:99999"'), "server.listen",
                     id="listen-port-out-of-range"),
        pytest.param(swap('public_url = "https://rearguard.example.com"', "public_url = 5"),
                     "server.public_url", id="public-url-not-a-string"),
        pytest.param(swap('api_url = "https://ghe.example.com/api/v3"', "api_url = 5"),
                     "github.api_url", id="github-url-not-a-string"),
        pytest.param(swap('url = "http://prometheus.monitoring:9090"', "url = false"),
                     "prometheus.url", id="prometheus-url-not-a-string"),
        pytest.param(swap('environments = ["production", "staging"]', 'environments = "prod"'),
                     "services.checkout.environments", id="environments-not-a-list"),
        pytest.param(swap('kind = "ratio"', 'kind = "histogram"'), "slis.http_errors",
                     id="unknown-sli-kind"),
        pytest.param(swap("tolerance = 0.2", "tolerance = -0.2"), "slis.http_errors",
                     id="negative-tolerance"),
        pytest.param(swap("min_events = 200", "min_events = 2.5"),
                     "slis.http_errors.min_events", id="fractional-min-events"),
        pytest.param(swap('max_blip = "90s"', 'max_blip = "soon"'),
                     "slis.http_errors.max_blip", id="max-blip-not-a-duration"),
        pytest.param(swap("critical = false", 'critical = "no"'), "slis.memory.critical",
                     id="critical-not-a-bool"),
        pytest.param(without(CONFIG, "total = 'sum(increase(http_requests_total[$step]))'"),
                     "slis.http_errors", id="ratio-without-total"),
        pytest.param(without(CONFIG, "query = 'sum(process_resident_memory_bytes)'"),
                     "slis.memory", id="gauge-without-query"),
        pytest.param(swap('direction = "down"', 'direction = "sideways"'), "slis.memory",
                     id="unknown-direction"),
        pytest.param("github = 3\n" + swap("[github]\n", "[enterprise]\n"),
                     "[github] must be a table", id="table-not-a-table"),
        pytest.param(swap('direction = "down"', 'direction = "down"\ntolerence = 0.2'),
                     "unknown key(s) tolerence", id="typo-in-sli"),
        pytest.param(swap("[github]\n", "[gitlab]\n"), "unknown key(s) gitlab",
                     id="unknown-section"),
        pytest.param(swap('step = "30s"', 'step = "250ms"'), "step: must be at least 1s",
                     id="sub-second-step"),
        pytest.param(swap("[prometheus]\n", '[prometheus]\nheaders = { Authorization = "x" }\n'),
                     "prometheus.headers.Authorization: credentials come from the environment",
                     id="authorization-in-file"),
        pytest.param(swap("[prometheus]\n", '[prometheus]\nca_file = "/nonexistent/ca.pem"\n'),
                     "prometheus.ca_file: no such file", id="missing-ca-file"),
    ],
)  # fmt: skip
def test_bad_config_names_the_key(tmp_path: Path, text: str, names: str) -> None:
    """Each unusable value is a `ConfigError` whose message names the file and the key."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert names in str(caught.value)
    assert str(tmp_path / "rearguard.toml") in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist says so and points at the example."""
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "absent.toml", {})


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that is a directory is a `ConfigError`, not a raw `OSError`."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, {})


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not TOML is a `ConfigError` naming the parse problem."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, '[server\nlisten = "x"\n')


def test_secrets_come_from_the_environment_and_never_print(tmp_path: Path) -> None:
    """Each secret is read from its variable, and neither repr nor str of the settings shows it."""
    settings = load(tmp_path, CONFIG, SECRETS)
    held = {
        ENV_API_TOKEN: settings.api_token,
        ENV_READ_TOKEN: settings.read_token,
        ENV_GITHUB_TOKEN: settings.github_token,
        ENV_GITHUB_WEBHOOK_SECRET: settings.github_webhook_secret,
        ENV_SLACK_TOKEN: settings.slack_token,
        ENV_SLACK_SIGNING_SECRET: settings.slack_signing_secret,
    }
    for name, secret in held.items():
        assert secret is not None
        assert secret.reveal() == SECRETS[name]
    for shown in (repr(settings), str(settings), f"{settings}", repr(held)):
        assert "***" in shown
        for value in SECRETS.values():
            assert value not in shown


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_secret_is_absent(tmp_path: Path, value: str) -> None:
    """An empty or blank variable means no secret, not an empty one."""
    settings = load(tmp_path, CONFIG, {ENV_GITHUB_TOKEN: value})
    assert settings.github_token is None


def test_secret_compares_by_value_but_prints_stars() -> None:
    """Two secrets with one value are equal; printing either gives only stars."""
    assert Secret("s3cret") == Secret("s3cret") != Secret("other")
    assert (str(Secret("s3cret")), repr(Secret("s3cret"))) == ("***", "Secret('***')")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("15s", 15.0), ("250ms", 0.25), ("30m", 1800.0), ("1h", 3600.0),
     ("7d", 604800.0), (" 2.5m ", 150.0), ("45", 45.0)],
)  # fmt: skip
def test_parse_duration_reads_numbers_and_units(value: object, seconds: float) -> None:
    """Durations are seconds, or a number with ms, s, m, h or d."""
    assert parse_duration(value, "here") == seconds


@pytest.mark.parametrize(
    "value", [0, -5, "0s", "-1m", "1w", "soon", "", True, None, float("inf"), float("nan")]
)
def test_parse_duration_refuses_the_rest(value: object) -> None:
    """Zero, negative, unknown-unit, non-finite and non-duration values are refused."""
    with pytest.raises(ConfigError, match=r"^here: expected a positive duration"):
        parse_duration(value, "here")


def test_prometheus_credentials_come_from_the_environment(tmp_path: Path) -> None:
    """A bearer token or basic auth from the environment, beside the file's headers; both at
    once is refused; the settings' repr shows no secret."""
    text = CONFIG.replace("[prometheus]\n", '[prometheus]\nheaders = { "X-Scope-OrgID" = "t1" }\n')
    bearer = load(tmp_path, text, {"REARGUARD_PROMETHEUS_TOKEN": "prom-token-123"})
    assert bearer.prometheus_auth.all_headers() == {
        "X-Scope-OrgID": "t1", "Authorization": "Bearer prom-token-123",
    }  # fmt: skip
    assert "prom-token-123" not in repr(bearer)
    basic = load(tmp_path, text, {"REARGUARD_PROMETHEUS_USER": "u",
                                  "REARGUARD_PROMETHEUS_PASSWORD": "p"})  # fmt: skip
    assert basic.prometheus_auth.all_headers()["Authorization"] == "Basic dTpw"
    with pytest.raises(ConfigError, match="not both"):
        load(tmp_path, text, {"REARGUARD_PROMETHEUS_USER": "u",
                              "REARGUARD_PROMETHEUS_TOKEN": "t"})  # fmt: skip

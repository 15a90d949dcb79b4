"""Reading what senders send: the one JSON reader, typed field readers, the one time parser,
and the refusal (`IngestError`) every reader raises.

Every body goes through `read_json`, which refuses what no record can hold (numbers past 64
bits or of hundreds of digits, NaN, nesting past `MAX_DEPTH`, lone surrogates) and names the
field; ids that go into URLs (commit ids, repository names) are checked by their readers where
they enter, and times by `parse_time` against 1970-2100.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, overload
from urllib.parse import urlsplit

from loop.config import is_repo_name

Code = Literal[
    "unauthorized", "bad_signature", "stale_request", "not_configured", "missing_header",
    "bad_header", "malformed_body", "missing_field", "bad_field", "unknown_service",
    "unknown_environment", "unknown_repository", "unknown_pr", "not_found",
    # the query route's (`attribution.sandbox.QueryCode`)
    "bad_sql", "not_read_only", "not_allowed", "timeout", "out_of_memory", "query_failed",
    "busy", "store_unreadable", "unknown_view",
]  # fmt: skip
"""Every code a refusal carries: a fixed set, so `/metrics` can count refusals by code."""


class IngestError(Exception):
    """A request was refused: `status` and `code` go into the JSON error answer.

    400 for a body that cannot be a record (malformed, a field missing, of the wrong type or out
    of range); 422 for a well-formed body that names something Rearguard does not know (a
    service, environment, repository or PR); 401 for a request that is not the sender's."""

    def __init__(self, status: int, code: Code, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code: Code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Ignored:
    """What a parser returns for a delivery it acknowledges without applying: the reason, a
    sentence of Rearguard's own (it is journaled; no text from the delivery goes into it)."""

    reason: str


NOT_CONFIGURED = "repository is not in the config"


def bad_field(path: str, problem: str) -> IngestError:
    """The 400 for field `path` that is there but cannot be used: "field `path` {problem}"."""
    return IngestError(400, "bad_field", f"field `{path}` {problem}")


MAX_DEPTH = 64
"""Objects and arrays nested deeper than this are refused (GitHub's payloads nest about 8)."""
MAX_NUMBER_CHARS = 40
"""A JSON number written with more characters than this is refused (no time, id or count
needs them; Python would hold a 400-digit integer and DuckDB would not)."""
_INT64 = (-(2**63), 2**63 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$@.-]{1,64}")


class _Unholdable:
    """A JSON number or constant no store column can hold, kept until the walk names its field."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _int(text: str) -> int | _Unholdable:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unholdable(f"is a number of {len(text)} characters")
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        return _Unholdable("is an integer past 64 bits")
    return value


def _float(text: str) -> float | _Unholdable:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unholdable(f"is a number of {len(text)} characters")
    value = float(text)
    return value if math.isfinite(value) else _Unholdable("is a number past what a float holds")


def _constant(text: str) -> _Unholdable:
    return _Unholdable(f"is {text}, which is not JSON")


def _key(path: str, key: str) -> str:
    """A field path one key deeper; keys that are not plain names are shown escaped."""
    shown = key if _PLAIN_KEY.fullmatch(key) else ascii(key)[1:-1][:64]
    return f"{path}.{shown}" if path else shown


def read_json(body: bytes | str, where: str = "") -> Any:
    """The one JSON reader of every body Rearguard is sent.

    Beyond `json.loads`: the body must be UTF-8; numbers must fit the store (64-bit integers,
    finite floats, at most `MAX_NUMBER_CHARS` characters; NaN and Infinity are not JSON); objects
    and arrays nest at most `MAX_DEPTH` deep; no string or key holds a lone surrogate (`"\ud800"`
    decodes, but no UTF-8 text, log line or DuckDB column can hold it). `where` prefixes the
    field paths of the messages (a JSON document inside a form field). IngestError 400 names
    the field otherwise."""
    try:
        text = body.decode() if isinstance(body, bytes) else body
        data = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError as exc:
        deep = f"`{where or 'body'}` nests deeper than {MAX_DEPTH} levels"
        raise IngestError(400, "malformed_body", deep) from exc
    except UnicodeDecodeError as exc:
        raise IngestError(400, "malformed_body", f"body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise IngestError(400, "malformed_body", f"body is not valid JSON: {exc}") from exc
    _check(data, where)
    return data


def _check(data: Any, root: str) -> None:
    """Walk the parsed document (without recursion) for what `read_json` refuses."""
    stack: list[tuple[Any, str, int]] = [(data, root, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            shown = path if len(path) <= 80 else path[:80] + "..."  # noqa: PLR2004
            raise IngestError(400, "malformed_body",
                              f"`{shown}` nests deeper than {MAX_DEPTH} levels")  # fmt: skip
        if isinstance(value, dict):
            for key, item in value.items():
                child = _key(path, key)
                if _SURROGATE.search(key):
                    raise bad_field(child, "is a key with a lone surrogate (not UTF-8 text)")
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise bad_field(path or "body", "holds a lone surrogate (not UTF-8 text)")
        elif isinstance(value, _Unholdable):
            raise bad_field(path or "body", value.problem)


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def read_field(
    data: Any, path: str, kind: type | tuple[type, ...], *, required: bool = True
) -> Any:
    """`data[a][b][0]…` for `path` "a.b[0]…", type-checked; IngestError 400 names the field
    (always by its whole path from the body's root, as the sender would look for it)."""
    value = data
    for key, index in _PART.findall(path):
        if key:
            found = isinstance(value, Mapping) and value.get(key) is not None
            value = value[key] if found else None
        else:
            found = isinstance(value, list) and int(index) < len(value)
            value = value[int(index)] if found else None
        if value is None:
            if required:
                raise IngestError(400, "missing_field", f"missing field `{path}`")
            return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if int in kinds and isinstance(value, float) and value.is_integer():
        # JSON has one kind of number: 2.0 is the integer 2 (as JSON Schema says too).
        value = int(value)
        if not _INT64[0] <= value <= _INT64[1]:
            raise bad_field(path, "is an integer past 64 bits")
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        raise bad_field(path, "has the wrong type")
    return value


@overload
def read_number(data: Any, path: str) -> int: ...
@overload
def read_number(data: Any, path: str, *, required: Literal[False]) -> int | None: ...


def read_number(data: Any, path: str, *, required: bool = True) -> int | None:
    """A positive integer (a PR number, a GitHub id, an attempt) at `path`."""
    value = read_field(data, path, int, required=required)
    if value is not None and value < 1:
        raise bad_field(path, "must be a positive integer")
    return cast(int | None, value)


COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,64}")
"""A commit id (abbreviated to 7 or more hex digits, SHA-1 or SHA-256); also in the OpenAPI."""


@overload
def read_sha(data: Any, path: str) -> str: ...
@overload
def read_sha(data: Any, path: str, *, required: Literal[False]) -> str | None: ...


def read_sha(data: Any, path: str, *, required: bool = True) -> str | None:
    """A commit id at `path`: 7 to 64 hex digits, so that it cannot move a URL it goes into."""
    value = read_field(data, path, str, required=required)
    if value is not None and not COMMIT_ID.fullmatch(value):
        raise bad_field(path, "must be a hex commit id")
    return cast(str | None, value)


@overload
def read_repo(data: Any, path: str) -> str: ...
@overload
def read_repo(data: Any, path: str, *, required: Literal[False]) -> str | None: ...


def read_repo(data: Any, path: str, *, required: bool = True) -> str | None:
    """A repository name `owner/name` at `path` (no `..`, nothing a URL path or query means)."""
    value = read_field(data, path, str, required=required)
    if value is not None and not is_repo_name(value):
        raise bad_field(path, "must be a repository name `owner/name`")
    return cast(str | None, value)


MAX_URL = 2048


@overload
def read_url(data: Any, path: str) -> str | None: ...
@overload
def read_url(data: Any, path: str, *, required: Literal[True]) -> str: ...


def read_url(data: Any, path: str, *, required: bool = False) -> str | None:
    """An http(s) URL at `path` (links land in Slack and PR bodies); an empty string is none."""
    value = read_field(data, path, str, required=required)
    if not value:
        if required:
            raise IngestError(400, "missing_field", f"missing field `{path}`")
        return None
    parts = urlsplit(value) if len(value) <= MAX_URL else None
    if (
        parts is None
        or parts.scheme not in {"http", "https"}
        or not parts.netloc
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise bad_field(path, f"must be an http(s) URL of at most {MAX_URL} characters")
    return cast(str, value)


EARLIEST = 0.0  # 1970-01-01T00:00:00Z
LATEST = 4_102_444_800.0  # 2100-01-01T00:00:00Z
"""Times Rearguard takes, in Unix seconds: [EARLIEST, LATEST). A deploy dated year 1 or 9999
would make its Watch query Prometheus for windows no PromQL API serves, on every tick."""


def parse_time(value: Any, path: str) -> float:
    """Unix seconds from an ISO 8601 string with a zone (or Z) or a number, 1970 to 2100."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 64:  # noqa: PLR2004 - no ISO time is longer
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            seconds = parsed.timestamp() if parsed.tzinfo is not None else None
        except (ValueError, OverflowError):
            seconds = None
    else:
        raise bad_field(path, "must be an ISO 8601 time with a zone, or Unix seconds")
    if seconds is None:
        raise bad_field(path, "must be an ISO 8601 time with a zone, or Unix seconds")
    if not (EARLIEST <= seconds < LATEST):
        raise bad_field(path, "must be a time from 1970 to 2100")
    return seconds

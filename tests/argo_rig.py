"""Argo CD and Argo Rollouts as they read the manifests shipped in deploy/, for the tests.

Three small interpreters, each of the subset the shipped manifests use, and each refusing
(`Unsupported`) anything beyond it, so a manifest that grows past them fails its test instead of
being misread:

- `render_go_template`: Go `text/template` as Argo CD notifications render a template's body
  (sprig functions alongside): actions `{{ ... }}` with `{{-`/`-}}` trimming, whose one command is
  a field chain from the root (`.app.metadata.name`; a missing key is an error, stricter than Go's
  `<no value>`), `index CHAIN "key"` or `index CHAIN 0`, or sprig's `toJson CHAIN` (Go's
  `json.Marshal`: compact, `<`, `>` and `&` escaped). No `if`, `range`, pipes or variables.
- `json_path`: Kubernetes JSONPath as `webmetric.go` reads the answer: `{$}` (the whole body,
  the provider's default) and `{$.a.b}` / `{.a.b}`; the first result is the value.
- `condition`: the expr-lang expressions of `successCondition` / `failureCondition`: one
  comparison `result.a.b == LITERAL` or `!=`, the literal a double-quoted string, a number,
  `true` or `false`.

`measure` makes one measurement the way `webmetric.go` does: `{{args.NAME}}` substituted,
the method (GET by default), the headers, `jsonBody` sent as JSON with `Content-Type:
application/json`, a non-2xx status an Error, a body that is not JSON read as text, then the
conditions judged as Argo's `evaluate.EvaluateResult` does (failure first; neither met with both
given: Inconclusive).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp


class Unsupported(ValueError):
    """The manifest uses more than the subset interpreted here."""


_ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.DOTALL)
_CHAIN = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def _chain(data: Any, chain: str) -> Any:
    if not _CHAIN.fullmatch(chain):
        raise Unsupported(f"not a field chain: {chain!r}")
    value = data
    for key in chain.split(".")[1:]:
        if not isinstance(value, Mapping) or key not in value:
            raise KeyError(f"{chain}: no field {key!r}")
        value = value[key]
    return value


def _go_json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _command(data: Any, command: str) -> Any:
    words = _TOKEN.findall(command)
    if len(words) == 1:
        return _chain(data, words[0])
    if words[0] == "toJson" and len(words) == 2:
        return _go_json(_chain(data, words[1]))
    if words[0] == "index" and len(words) == 3:
        container, key = _chain(data, words[1]), words[2]
        if key.startswith('"'):
            name = json.loads(key)
            if not isinstance(container, Mapping) or name not in container:
                raise KeyError(f"index {words[1]} {key}: no such key")
            return container[name]
        if key.isdigit() and isinstance(container, list) and int(key) < len(container):
            return container[int(key)]
        raise KeyError(f"index {words[1]} {key}: no such element")
    raise Unsupported(f"template command {command!r}")


def render_go_template(template: str, data: Mapping[str, Any]) -> str:
    """`template` rendered on `data` (the subset in this module's docstring)."""
    out: list[str] = []
    position = 0
    for match in _ACTION.finditer(template):
        text = template[position : match.start()]
        out.append(text.rstrip() if match.group(1) else text)
        value = _command(data, match.group(2).strip())
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Unsupported(f"{match.group(0)} prints a {type(value).__name__}")
        out.append(str(value))
        position = match.end()
        if match.group(3):
            rest = template[position:]
            position += len(rest) - len(rest.lstrip())
    out.append(template[position:])
    return "".join(out)


def json_path(expression: str, data: Any) -> Any:
    """The first result of a Kubernetes JSONPath over `data` (subset: `{$}`, `{$.a.b}`)."""
    found = re.fullmatch(r"{\$?((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)}", expression)
    if found is None or expression in {"{}", "{.}"}:
        raise Unsupported(f"jsonPath {expression!r}")
    return _chain(data, found.group(1)) if found.group(1) else data


_CONDITION = re.compile(r'result((?:\.[A-Za-z_]\w*)*)\s*(==|!=)\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false)')  # fmt: skip  # noqa: E501


def condition(expression: str, result: Any) -> bool:
    """The value of one comparison on `result` (the subset in this module's docstring)."""
    found = _CONDITION.fullmatch(expression.strip())
    if found is None:
        raise Unsupported(f"condition {expression!r}")
    path, operator, literal = found.groups()
    value = _chain(result, path) if path else result
    expected = json.loads(literal)
    return bool(value == expected) if operator == "==" else bool(value != expected)


def evaluate(metric: Mapping[str, Any], result: Any) -> str:
    """Argo's phase for one measured value: Successful, Failed or Inconclusive."""
    success, failure = metric.get("successCondition", ""), metric.get("failureCondition", "")
    succeeded = condition(success, result) if success else False
    failed = condition(failure, result) if failure else False
    if not success and not failure:
        return "Successful"
    if success and not failure:
        failed = not succeeded
    elif failure and not success:
        succeeded = not failed
    if failed:
        return "Failed"
    return "Successful" if succeeded else "Inconclusive"


def _substitute(value: Any, args: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def arg(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in args:
                raise KeyError(f"argument {name!r} is not given")
            return args[name]

        return re.sub(r"{{\s*args\.([A-Za-z0-9_-]+)\s*}}", arg, value)
    if isinstance(value, list):
        return [_substitute(v, args) for v in value]
    if isinstance(value, Mapping):
        return {k: _substitute(v, args) for k, v in value.items()}
    return value


def template_args(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """The template's arguments: `given` over their defaults (`valueFrom` must be given)."""
    out: dict[str, str] = {}
    for arg in template["spec"].get("args", []):
        name = arg["name"]
        if name in given:
            out[name] = given[name]
        elif "value" in arg:
            out[name] = arg["value"]
        else:
            raise KeyError(f"argument {name!r} has no value")
    return out


async def measure(
    session: aiohttp.ClientSession, metric: Mapping[str, Any], args: Mapping[str, str]
) -> tuple[str, Any]:
    """One measurement of a `web` metric: (phase, the value the conditions judged)."""
    web = _substitute(metric["provider"]["web"], args)
    method = web.get("method") or "GET"
    body, json_body = web.get("body", ""), web.get("jsonBody")
    if (body or json_body is not None) and method == "GET":
        raise Unsupported("Body/JSONBody can only be used with POST or PUT")
    headers = {h["key"]: h["value"] for h in web.get("headers", [])}
    data: bytes | None = body.encode() if body else None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    timeout = aiohttp.ClientTimeout(total=web.get("timeoutSeconds") or 10)
    async with session.request(method, web["url"], data=data, headers=headers,
                               timeout=timeout) as response:  # fmt: skip
        text = await response.text()
        if not 200 <= response.status < 300:
            return "Error", text
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return evaluate(metric, text), text
    value = json_path(web.get("jsonPath") or "{$}", answer)
    return evaluate(metric, value), value

"""The YAML files a user copies from deploy/, found on disk (other parts add their own), and the
schemas they are checked against: Kubernetes' own (kubernetes-validate ships them), the CRD
schemas of the tools that define a kind, and SchemaStore's GitHub workflow schema (vendored by
check-jsonschema)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_OPERATOR = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"


def yaml_files() -> list[Path]:
    """Every YAML file under deploy/, sorted."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def documents(path: Path) -> list[Any]:
    """The non-empty documents of one YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifests() -> Iterator[dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes."""
    for path in yaml_files():
        if DEPLOY / "kubernetes" in path.parents:
            yield from (d for d in documents(path) if isinstance(d, dict) and "kind" in d)


def one(kind: str, name: str = "rearguard") -> dict[str, Any]:
    """The single object of `kind` named `name` under deploy/kubernetes."""
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name} under deploy/kubernetes"
    return found[0]


def github_workflow_schema() -> dict[str, Any]:
    """SchemaStore's schema of GitHub Actions workflows, as check-jsonschema vendors it."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("github-workflows.json").read_text())
    return schema


def crd_schemas(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> the served version's openAPIV3Schema, as a strict JSON Schema,
    for every CustomResourceDefinition in `path`."""
    out = {}
    for doc in documents(path):
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            if version.get("served", False):
                key = (spec["group"], version["name"], spec["names"]["kind"])
                out[key] = strict(version["schema"]["openAPIV3Schema"])
    return out


_VALUES = frozenset({"default", "enum", "example"})
"""Keywords whose value is data, not a schema."""


def strict(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as a JSON Schema that also refuses unknown fields (as
    `kubectl apply --validate=strict` does): `nullable` becomes a null type, and an object with
    `properties` takes no others unless it says it keeps unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: value if key in _VALUES else strict(value)
           for key, value in schema.items() if key != "properties"}  # fmt: skip
    if "properties" in schema:
        out["properties"] = {name: strict(s) for name, s in schema["properties"].items()}
        keeps = schema.get("x-kubernetes-preserve-unknown-fields", False)
        if "additionalProperties" not in schema and not keeps:
            out["additionalProperties"] = False
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    if isinstance(schema.get("pattern"), str):
        out["pattern"] = ecma(schema["pattern"])
    return out


def ecma(pattern: str) -> str:
    """A Go (RE2) pattern in the ECMA-262 syntax JSON Schema uses: RE2's inline `(?i)` (as in
    the prometheus-operator's `^(?i)(abort|warn)?$`) becomes `[aA]` classes for each letter
    after it, outside character classes."""
    at = pattern.find("(?i)")
    if at < 0:
        return pattern
    out, escaped, in_class = [pattern[:at]], False, False
    for char in pattern[at + 4 :]:
        if not escaped and not in_class and char.isascii() and char.isalpha():
            out.append(f"[{char.lower()}{char.upper()}]")
        else:
            out.append(char)
        in_class = (in_class or (char == "[" and not escaped)) and not (char == "]" and not escaped)
        escaped = char == "\\" and not escaped
    return "".join(out)

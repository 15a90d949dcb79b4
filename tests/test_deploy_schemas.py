"""Every YAML file in deploy/ validates against the schema of what it is, found by its kind:

- Kubernetes' built-in kinds against the official schemas (kubernetes-validate ships them; strict:
  unknown fields fail), at `KUBERNETES`, the oldest minor the manifests must apply to;
- Argo Rollouts' AnalysisTemplate (and ClusterAnalysisTemplate, the same Go type) and Flagger's
  kinds against their CRDs in the shared fixtures (read in place; skipped where absent, a failure
  under CI);
- the prometheus-operator's ServiceMonitor and PrometheusRule against its CRDs, kept in
  tests/schemas/prometheus-operator (SOURCE.md);
- kustomize's Kustomization against a minimal schema written here (no official one installs
  offline): known keys, and `resources` that exist; `kubectl kustomize` builds it where kubectl is;
- GitHub Actions workflows (deploy/cd) against SchemaStore's schema.

A file whose documents match none of these fails: a schema must come with any new kind.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import kubernetes_validate
import pytest

from tests.deploy_files import (
    DEPLOY,
    PROMETHEUS_OPERATOR,
    crd_schemas,
    documents,
    github_workflow_schema,
    yaml_files,
)
from tests.shared_fixtures import shared_fixtures_dir

KUBERNETES = "1.30"
# (group, kind) -> the CRD file under the shared fixtures' progressive-delivery folder, and the
# kind whose schema it holds.
SHARED_CRDS = {
    ("argoproj.io", "AnalysisTemplate"): ("argo-rollouts/analysis-template-crd.yaml",
                                          "AnalysisTemplate"),
    ("argoproj.io", "ClusterAnalysisTemplate"): ("argo-rollouts/analysis-template-crd.yaml",
                                                 "AnalysisTemplate"),
    ("flagger.app", "Canary"): ("flagger/crd.yaml", "Canary"),
    ("flagger.app", "MetricTemplate"): ("flagger/crd.yaml", "MetricTemplate"),
    ("flagger.app", "AlertProvider"): ("flagger/crd.yaml", "AlertProvider"),
}  # fmt: skip
OPERATOR_CRDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}
KUSTOMIZATION: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "metadata": {"type": "object"},
        "namespace": {"type": "string"},
        "namePrefix": {"type": "string"},
        "nameSuffix": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "components": {"type": "array", "items": {"type": "string"}},
        "labels": {"type": "array", "items": {"type": "object"}},
        "commonAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "images": {"type": "array", "items": {"type": "object"}},
        "patches": {"type": "array", "items": {"type": "object"}},
        "configMapGenerator": {"type": "array", "items": {"type": "object"}},
        "secretGenerator": {"type": "array", "items": {"type": "object"}},
        "generatorOptions": {"type": "object"},
    },
}
FILES = yaml_files()


def _errors(schema: dict[str, Any], doc: Any) -> list[str]:
    """Errors by the schema's own `$schema` draft; OpenAPI v3.0 (the CRDs) is close to draft 4."""
    if "$schema" in schema:
        validator = jsonschema_rs.validator_for(schema, validate_formats=False)
    else:
        validator = jsonschema_rs.Draft4Validator(schema, validate_formats=False)
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
            for e in validator.iter_errors(doc)]  # fmt: skip


def _crd_errors(schemas: dict[tuple[str, str, str], dict[str, Any]], kind: str,
                doc: dict[str, Any]) -> list[str]:  # fmt: skip
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    schema = schemas.get((group, version, kind))
    assert schema is not None, f"{doc['apiVersion']} {kind}: no served CRD version"
    assert isinstance(doc.get("metadata", {}).get("name"), str), "metadata.name is required"
    return _errors(schema, doc)


def _kind_errors(path: Path, doc: dict[str, Any]) -> list[str]:
    """The schema errors of one Kubernetes-style document (with apiVersion and kind)."""
    api_version, kind = str(doc["apiVersion"]), str(doc["kind"])
    group = api_version.rpartition("/")[0]
    if group.startswith("kustomize.config.k8s.io"):
        missing = [r for r in doc.get("resources", []) if not (path.parent / r).exists()]
        return _errors(KUSTOMIZATION, doc) + [f"resources: no such file {r}" for r in missing]
    if (group, kind) in SHARED_CRDS:
        relative, schema_kind = SHARED_CRDS[(group, kind)]
        crd = shared_fixtures_dir() / "progressive-delivery" / relative
        return _crd_errors(crd_schemas(crd), schema_kind, doc)
    if group == "monitoring.coreos.com" and kind in OPERATOR_CRDS:
        return _crd_errors(crd_schemas(PROMETHEUS_OPERATOR / OPERATOR_CRDS[kind]), kind, doc)
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"{path}: no schema for {api_version} {kind}; add one to {__name__}")
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


def _workflow(path: Path, doc: Any) -> dict[str, Any] | None:
    """A GitHub workflow in deploy/cd, or a snippet of steps there as the steps of one job."""
    if path.parent != DEPLOY / "cd":
        return None
    if isinstance(doc, list):
        return {"on": "push", "jobs": {"deploy": {"runs-on": "ubuntu-latest", "steps": doc}}}
    if isinstance(doc, dict) and "jobs" in doc:
        # YAML 1.1 reads the key `on` as true; GitHub reads it as "on".
        return {("on" if k is True else k): v for k, v in doc.items()}
    return None


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(DEPLOY)) for p in FILES])
def test_every_yaml_file_in_deploy_validates_against_its_schema(path: Path) -> None:
    """Each document of the file validates against the schema its kind (or place) names."""
    docs = documents(path)
    assert docs, f"{path}: no document"
    for i, doc in enumerate(docs):
        workflow = _workflow(path, doc)
        if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc:
            errors = _kind_errors(path, doc)
        elif workflow is not None:
            errors = _errors(github_workflow_schema(), workflow)
        else:
            pytest.fail(f"{path} document {i}: neither a kind nor a GitHub workflow: no schema")
        assert not errors, f"{path} document {i}: {errors}"


def test_the_validation_refuses_what_kubernetes_refuses() -> None:
    """The checks above fail on a misspelt field and a wrong type (they are not a no-op)."""
    deploy = DEPLOY / "kubernetes" / "rearguard.yaml"
    service = next(d for d in documents(deploy) if d["kind"] == "Service")
    assert _kind_errors(deploy, service) == []
    assert _kind_errors(deploy, {**service, "spec": {**service["spec"], "selectr": {}}})
    assert _kind_errors(deploy, {**service, "spec": {**service["spec"], "ports": "80"}})
    rules = DEPLOY / "kubernetes" / "monitoring" / "rules.yaml"
    (rule,) = documents(rules)
    group = rule["spec"]["groups"][0]
    assert _kind_errors(rules, rule) == []
    bad = {**rule, "spec": {"groups": [{**group, "rules": [{"alert": "X", "expression": "up"}]}]}}
    assert _kind_errors(rules, bad)
    kustomization = DEPLOY / "kubernetes" / "kustomization.yaml"
    (kust,) = documents(kustomization)
    assert _kind_errors(kustomization, {**kust, "resources": ["missing.yaml"]})
    steps = DEPLOY / "cd" / "github-actions.yml"
    (snippet,) = documents(steps)
    assert _errors(github_workflow_schema(), _workflow(steps, [{**snippet[0], "runs": "x"}]))
    with pytest.raises(pytest.fail.Exception, match="no schema"):
        _kind_errors(deploy, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Unknown",
                              "metadata": {"name": "x"}})  # fmt: skip


def test_the_crd_schemas_refuse_unknown_fields() -> None:
    """An AnalysisTemplate with a misspelt field fails against the shared Argo Rollouts CRD."""
    relative, kind = SHARED_CRDS[("argoproj.io", "AnalysisTemplate")]
    schemas = crd_schemas(shared_fixtures_dir() / "progressive-delivery" / relative)
    web: dict[str, Any] = {"url": "http://rearguard/v1/gates/argo"}
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": "x"},
                "spec": {"metrics": [{"name": "gate", "provider": {"web": web}}]}}  # fmt: skip
    assert _crd_errors(schemas, kind, template) == []
    web["jsonpath"] = "{$.verdict}"  # the field is jsonPath
    assert _crd_errors(schemas, kind, template)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
@pytest.mark.parametrize("folder", sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml")))
def test_kustomizations_build(folder: Path) -> None:
    """`kubectl kustomize` (what `kubectl apply -k` runs) builds each kustomization."""
    result = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr

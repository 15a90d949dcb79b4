"""deploy/kubernetes runs Rearguard as documented: a pod the restricted Pod Security profile
admits, one writer of the store on its volume, the probes on /healthz and /readyz, a config that
loads, and a Secret naming every environment variable the config reads."""

from __future__ import annotations

import ast
import copy
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loop import config
from loop.config import settings_from
from tests.deploy_files import DEPLOY, ROOT, manifests, one
from tests.pod_security import violations

SOURCES = ("loop", "observer", "attribution", "rollback")


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    (container,) = _pod()["containers"]
    return dict(container)


def test_every_pod_template_passes_the_restricted_profile() -> None:
    """Each pod template under deploy/kubernetes fails none of the restricted checks."""
    pods = [m["spec"]["template"]["spec"] for m in manifests()
            if m["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}]  # fmt: skip
    assert pods
    for pod in pods:
        assert violations(pod) == []


def _set(path: str, value: Any) -> dict[str, Any]:
    """Rearguard's pod with one field (a dotted path; `c` is its container) set to `value`."""
    pod = copy.deepcopy(_pod())
    *parents, last = path.split(".")
    node: Any = pod
    for key in parents:
        node = node["containers"][0] if key == "c" else node.setdefault(key, {})
    node[last] = value
    return pod


@pytest.mark.parametrize(
    ("path", "value", "check"),
    [
        ("hostNetwork", True, "Host Namespaces"),
        ("c.securityContext.privileged", True, "Privileged Containers"),
        ("c.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
         "Capabilities (baseline)"),
        ("c.securityContext.capabilities", {"drop": ["ALL"], "add": ["CHOWN"]},
         "Capabilities (restricted)"),
        ("c.securityContext.capabilities", {}, "Capabilities (restricted)"),
        ("volumes", [{"name": "h", "hostPath": {"path": "/"}}], "HostPath Volumes"),
        ("volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}], "Volume Types"),
        ("c.ports", [{"containerPort": 8080, "hostPort": 8080}], "Host Ports"),
        ("c.securityContext.allowPrivilegeEscalation", True, "Privilege Escalation"),
        ("securityContext.runAsNonRoot", False, "Running as Non-root"),
        ("securityContext.runAsUser", 0, "Running as Non-root user"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "Seccomp (restricted)"),
        ("securityContext.seccompProfile", {}, "Seccomp (restricted)"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "Sysctls"),
        ("c.securityContext.procMount", "Unmasked", "/proc Mount Type"),
        ("securityContext.seLinuxOptions", {"type": "spc_t"}, "SELinux"),
    ],
)  # fmt: skip
def test_each_restricted_check_refuses_its_violation(path: str, value: Any, check: str) -> None:
    """Breaking one rule of the profile in Rearguard's pod fails that check."""
    assert check in violations(_set(path, value))


def test_the_container_is_hardened_beyond_the_profile() -> None:
    """Numeric user and group (the image's), fsGroup for the store, a read-only root with
    writable volumes for the store and /tmp, resources, no API token mounted."""
    pod, container = _pod(), _container()
    context = pod["securityContext"]
    user = re.search(r"^USER (\d+):(\d+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert user
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))
    assert context["fsGroup"] == int(user[2])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    claim = mounts["/var/lib/rearguard"]["persistentVolumeClaim"]["claimName"]
    assert one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_the_image_is_this_version() -> None:
    """The Deployment runs the image tagged with the project's version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _container()["image"] == f"rearguard:{version}"


def test_one_writer_of_the_store_even_during_an_update() -> None:
    """One replica, and Recreate: a rolling update would start a second DuckDB writer."""
    spec = one("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_probes_ask_healthz_and_readyz_on_the_served_port() -> None:
    """Liveness on /healthz, readiness on /readyz, on the port the config listens on, which
    the Service targets."""
    container = _container()
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    (port,) = container["ports"]
    settings = settings_from(_config(), {}, "deploy/kubernetes ConfigMap")
    assert port == {"containerPort": settings.listen_port, "name": "http"}
    assert settings.listen_host == "0.0.0.0"  # reachable from the pod's network
    assert one("Service")["spec"]["ports"][0]["targetPort"] == "http"
    monitor = one("ServiceMonitor")["spec"]
    assert monitor["endpoints"][0]["port"] == "http"
    assert monitor["selector"]["matchLabels"] == one("Service")["metadata"]["labels"]


def _config() -> dict[str, Any]:
    return tomllib.loads(one("ConfigMap")["data"]["rearguard.toml"])


def test_the_configmap_config_loads_with_its_store_on_the_volume() -> None:
    """The shipped rearguard.toml validates, and its store lies on the mounted volume."""
    settings = settings_from(_config(), {}, "deploy/kubernetes ConfigMap")
    store_mount = next(m["mountPath"] for m in _container()["volumeMounts"]
                       if m["name"] == "store")  # fmt: skip
    assert Path(store_mount) in settings.store_path.parents
    args = _container()["args"]
    config_mount = next(m["mountPath"] for m in _container()["volumeMounts"]
                        if m["name"] == "config")  # fmt: skip
    assert args == ["serve", "--config", f"{config_mount}/rearguard.toml"]


def _read_names() -> set[str]:
    """Every environment variable Rearguard's code reads: `env.get(NAME)`, `env[NAME]` and
    `_secret(env, NAME)` in loop/config.py (the only reader of the environment), and any
    `os.environ[...]`, `os.environ.get(...)` or `os.getenv(...)` anywhere."""
    names: set[str] = set()

    def literal(node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        assert isinstance(node, ast.Name), ast.dump(node)
        value = getattr(config, node.id)
        assert isinstance(value, str)
        return value

    def walk(node: ast.AST) -> Iterator[ast.AST]:
        """The nodes below `node`, less `_secret`'s own body (its callers name the variable)."""
        yield node
        for child in ast.iter_child_nodes(node):
            if not (isinstance(child, ast.FunctionDef) and child.name == "_secret"):
                yield from walk(child)

    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in walk(ast.parse(path.read_text())):
                source = ast.unparse(node.func if isinstance(node, ast.Call) else node)
                if (
                    isinstance(node, ast.Call)
                    and node.args
                    and (
                        source in {"os.environ.get", "os.getenv"}
                        or (path.name == "config.py" and source == "env.get")
                    )
                ):
                    names.add(literal(node.args[0]))
                elif (isinstance(node, ast.Call) and source == "_secret"
                      and path.name == "config.py"):  # fmt: skip
                    names.add(literal(node.args[1]))
                elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in {
                    "os.environ", "env"
                }:  # fmt: skip
                    names.add(literal(node.slice))
    return names


def test_the_secret_lists_exactly_the_variables_rearguard_reads() -> None:
    """The Secret's keys are the environment variables the code reads, no more, no fewer; and
    the example config's header documents each."""
    read = _read_names()
    assert config.ENV_GITHUB_TOKEN in read  # the scan finds what it should
    assert set(one("Secret")["stringData"]) == read
    example = (DEPLOY / "rearguard.example.toml").read_text()
    assert [name for name in sorted(read) if f"#   {name}" not in example] == []

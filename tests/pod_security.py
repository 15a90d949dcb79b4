"""The checks of Kubernetes' Pod Security Standards, `restricted` profile (which includes
`baseline`), as the Pod Security admission controller applies them to a pod spec
(kubernetes.io/docs/concepts/security/pod-security-standards, policy version 1.30+).

`violations(pod_spec)` lists each check a pod fails, by the name the standard gives it; an empty
list means the pod is admitted into a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Baseline: capabilities a container may add.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
# Baseline: the safe sysctls.
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})  # fmt: skip
# Restricted: the volume types a pod may use.
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                "persistentVolumeClaim", "projected", "secret"})  # fmt: skip


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key, [])


def _baseline(spec: dict[str, Any]) -> Iterator[str]:
    pod = spec.get("securityContext", {})
    contexts = [pod, *(c.get("securityContext", {}) for c in _containers(spec))]
    if any(c.get("windowsOptions", {}).get("hostProcess") for c in contexts):
        yield "HostProcess"
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        yield "Host Namespaces"
    if any(c.get("securityContext", {}).get("privileged") for c in _containers(spec)):
        yield "Privileged Containers"
    capabilities = [c.get("securityContext", {}).get("capabilities", {}) for c in _containers(spec)]
    added = {a for c in capabilities for a in c.get("add", [])}
    if added - BASELINE_CAPABILITIES:
        yield "Capabilities (baseline)"
    if any("hostPath" in v for v in spec.get("volumes", [])):
        yield "HostPath Volumes"
    if any(p.get("hostPort", 0) for c in _containers(spec) for p in c.get("ports", [])):
        yield "Host Ports"
    if any(c.get("appArmorProfile", {}).get("type", "RuntimeDefault") == "Unconfined"
           for c in contexts):  # fmt: skip
        yield "AppArmor"
    selinux = [c.get("seLinuxOptions", {}) for c in contexts]
    if any(s.get("type", "") not in SELINUX_TYPES or s.get("user") or s.get("role")
           for s in selinux):  # fmt: skip
        yield "SELinux"
    if any(c.get("procMount", "Default") != "Default" for c in contexts[1:]):
        yield "/proc Mount Type"
    if any(c.get("seccompProfile", {}).get("type") == "Unconfined" for c in contexts):
        yield "Seccomp (baseline)"
    if any(s.get("name") not in SAFE_SYSCTLS for s in pod.get("sysctls", [])):
        yield "Sysctls"


def _restricted(spec: dict[str, Any]) -> Iterator[str]:
    pod = spec.get("securityContext", {})
    containers = list(_containers(spec))
    contexts = [c.get("securityContext", {}) for c in containers]
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= RESTRICTED_VOLUMES:
            yield "Volume Types"
    if any(c.get("allowPrivilegeEscalation") is not False for c in contexts):
        yield "Privilege Escalation"
    # Set on each container, or on the pod and not set to false on any container.
    if not all(c.get("runAsNonRoot", pod.get("runAsNonRoot")) is True for c in contexts):
        yield "Running as Non-root"
    if pod.get("runAsUser") == 0 or any(c.get("runAsUser") == 0 for c in contexts):
        yield "Running as Non-root user"
    pod_seccomp = pod.get("seccompProfile", {}).get("type")
    allowed = {"RuntimeDefault", "Localhost"}
    if not all(c.get("seccompProfile", {}).get("type", pod_seccomp) in allowed for c in contexts):
        yield "Seccomp (restricted)"
    for c in contexts:
        capabilities = c.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {
            "NET_BIND_SERVICE"
        }:
            yield "Capabilities (restricted)"
            break


def violations(spec: dict[str, Any]) -> list[str]:
    """The restricted profile's checks that `spec` (a PodSpec) fails."""
    return sorted(set(_baseline(spec)) | set(_restricted(spec)))

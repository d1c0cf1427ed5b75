"""The security contexts a job may set (`podTemplate.spec.securityContext`, `stages[].securityContext`),
shaped as corev1's, bounded by the Pod Security Standards.

Who refuses what (README, "Pod templates"):
- the schema, in every namespace, whatever the client: what no profile allows. Fields whose only
  safe value is the default accept that value alone (`privileged: false`, `procMount: Default`);
  seccomp and AppArmor profiles are RuntimeDefault or Localhost (never Unconfined); capabilities
  may be added only from the *baseline* profile's set; sysctls only from the safe set. So the schema
  allows at most *baseline*.
- the operator (core.podsecurity), per namespace: *restricted* outside the namespaces the platform
  lists (--baseline-namespaces): no uid, gid or fsGroup 0, runAsNonRoot not false, no privilege
  escalation, no added capability but NET_BIND_SERVICE. Such a job fails InvalidSpec before a pod.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from procjob.models.base import ApiModel
from procjob.models.container import cel_rules
from procjob.models.syntax import RELATIVE_PATH

# The Pod Security Standards (k8s.io/pod-security-admission/policy, v1.35): the capabilities the
# baseline profile lets a container add, the one restricted allows, and the safe sysctls.
Capability = Literal[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
]
BASELINE_CAPABILITIES: tuple[str, ...] = get_args(Capability)
RESTRICTED_CAPABILITIES = ("NET_BIND_SERVICE",)
SafeSysctl = Literal[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
]
SAFE_SYSCTLS: tuple[str, ...] = get_args(SafeSysctl)
MAX_ID = 2147483647  # uids and gids are int32 in the Pod API

Id = Annotated[int, Field(ge=0, le=MAX_ID)]
LocalhostProfile = Annotated[str, Field(min_length=1, max_length=1024, pattern=RELATIVE_PATH)]

LOCALHOST_PROFILE = "localhostProfile is set exactly when type is Localhost"


class ProfileType(StrEnum):
    """A seccomp or AppArmor profile; Unconfined is not allowed."""

    RUNTIME_DEFAULT = "RuntimeDefault"
    LOCALHOST = "Localhost"


def _localhost_rules() -> list[dict[str, str]]:
    return [
        {
            "rule": "(self.type == 'Localhost') == has(self.localhostProfile)",
            "message": LOCALHOST_PROFILE,
            "fieldPath": ".localhostProfile",
        }
    ]


class _Profile(ApiModel):
    model_config = cel_rules(_localhost_rules())

    type: ProfileType = Field(description="RuntimeDefault (the container runtime's) or Localhost (a file on the node).")
    localhost_profile: LocalhostProfile | None = Field(
        default=None, description="With type Localhost: the profile's path on the node, relative to its profile root."
    )

    @model_validator(mode="after")
    def _localhost(self) -> _Profile:
        if (self.type is ProfileType.LOCALHOST) != (self.localhost_profile is not None):
            raise ValueError(LOCALHOST_PROFILE)
        return self


class SeccompProfile(_Profile):
    """The seccomp profile: RuntimeDefault (the default) or Localhost. Unconfined is not allowed."""


class AppArmorProfile(_Profile):
    """The AppArmor profile: RuntimeDefault or Localhost. Unconfined is not allowed."""


class Capabilities(ApiModel):
    """Linux capabilities. ALL are always dropped; a container may add back capabilities of the Pod
    Security Standards' baseline set, and outside the namespaces the operator lists for baseline only
    NET_BIND_SERVICE (the restricted profile)."""

    add: list[Capability] | None = Field(
        default=None,
        max_length=len(BASELINE_CAPABILITIES),
        description="Capabilities to add: " + ", ".join(BASELINE_CAPABILITIES) + " (restricted: NET_BIND_SERVICE).",
    )
    drop: list[Annotated[str, Field(max_length=64, pattern="^[A-Z_]+$")]] | None = Field(
        default=None, max_length=64, description="Capabilities to drop; ALL is always dropped, whatever this says."
    )


class Sysctl(ApiModel):
    """A namespaced kernel parameter of the safe set (the Pod Security Standards' baseline)."""

    name: SafeSysctl = Field(description="One of the safe sysctls: " + ", ".join(SAFE_SYSCTLS) + ".")
    value: Annotated[str, Field(max_length=256)] = Field(description="Its value.")


SYSCTLS_UNIQUE = "sysctl names must be unique"


class PodSecurityContext(ApiModel):
    """The pod's security context, merged over the operator's (non-root uid/gid/fsGroup 65532,
    runAsNonRoot, seccomp RuntimeDefault) field by field. uid, gid and fsGroup 0 and runAsNonRoot
    false are allowed only in namespaces the operator lists for the baseline profile."""

    run_as_user: Id | None = Field(default=None, description="uid of the containers' processes (default 65532).")
    run_as_group: Id | None = Field(
        default=None, description="Primary gid of the containers' processes (default 65532)."
    )
    run_as_non_root: bool | None = Field(
        default=None, description="The kubelet refuses to start a container running as uid 0 (default true)."
    )
    fs_group: Id | None = Field(
        default=None, description="Group that owns the pod's volumes and is added to every process (default 65532)."
    )
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = Field(
        default=None, description="When volume ownership is changed to fsGroup: OnRootMismatch or Always."
    )
    supplemental_groups: list[Id] | None = Field(
        default=None, max_length=32, description="More gids for the first process of each container."
    )
    supplemental_groups_policy: Literal["Merge", "Strict"] | None = Field(
        default=None, description="Merge (with the image's /etc/group) or Strict (only the pod's groups)."
    )
    seccomp_profile: SeccompProfile | None = Field(
        default=None, description="Seccomp profile (default RuntimeDefault)."
    )
    app_armor_profile: AppArmorProfile | None = Field(default=None, description="AppArmor profile.")
    sysctls: list[Sysctl] | None = Field(
        default=None,
        max_length=len(SAFE_SYSCTLS),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Namespaced sysctls of the safe set.",
    )

    @model_validator(mode="after")
    def _unique_sysctls(self) -> PodSecurityContext:
        names = [s.name for s in self.sysctls or []]
        if len(set(names)) != len(names):
            raise ValueError(SYSCTLS_UNIQUE)
        return self


class SecurityContext(ApiModel):
    """The stage container's security context, merged over the operator's (no privilege escalation,
    read-only root filesystem, all capabilities dropped, runAsNonRoot, seccomp RuntimeDefault) field by
    field. Privileged containers and /proc unmasking are never allowed."""

    run_as_user: Id | None = Field(default=None, description="uid of the process; overrides the pod's.")
    run_as_group: Id | None = Field(default=None, description="gid of the process; overrides the pod's.")
    run_as_non_root: bool | None = Field(default=None, description="Overrides the pod's runAsNonRoot.")
    read_only_root_filesystem: bool | None = Field(
        default=None, description="false: a writable root filesystem (default true; /tmp is writable either way)."
    )
    allow_privilege_escalation: bool | None = Field(
        default=None,
        description="true (setuid binaries work) only in namespaces listed for baseline (default false).",
    )
    privileged: Literal[False] | None = Field(
        default=None, description="Only false: privileged containers are refused."
    )
    capabilities: Capabilities | None = Field(default=None, description="Capabilities to add back (ALL are dropped).")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Overrides the pod's seccomp profile.")
    app_armor_profile: AppArmorProfile | None = Field(default=None, description="Overrides the pod's AppArmor profile.")
    proc_mount: Literal["Default"] | None = Field(default=None, description="Only Default: /proc stays masked.")

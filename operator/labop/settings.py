"""The operator's settings: one typed, frozen object built once at start from flags and env.

Role: ``OperatorSettings`` holds every knob (workers, queue size, resync period, default image,
namespaces, ports); ``from_env`` and ``parse_args`` build it; nothing else reads the environment.
Two builders because ``kopf run`` owns the command line (env only there), while ``python -m
labop`` takes flags; either way the result is passed explicitly, never read from a global.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from labop.naming import FIELD_MANAGER
from labop.spec import DEFAULT_IMAGE

ENV_PREFIX = "LABOP_"
# kopf's --log-format choices (kopf.LogFormat), lower case as on its command line.
LOG_FORMATS = ("plain", "full", "json")


class SettingsError(ValueError):
    """A flag or environment variable has a value the operator cannot run with."""


@dataclass(frozen=True)
class OperatorSettings:
    """Every knob; the field's ``help`` metadata is the README table's text."""

    workers: int = field(default=2, metadata={"help": "concurrent reconciles (worker tasks)"})
    queue_size: int = field(
        default=1000,
        metadata={"help": "distinct normal-priority keys waiting before producers of new ones wait"},
    )
    resync_seconds: float = field(
        default=300.0, metadata={"help": "period of the full re-enqueue, every key at low priority (0 = off)"}
    )
    default_image: str = field(default=DEFAULT_IMAGE, metadata={"help": "image when spec.image is empty"})
    namespaces: tuple[str, ...] = field(
        default=(), metadata={"help": "namespaces to watch, comma-separated (empty = all)"}
    )
    metrics_port: int = field(default=8080, metadata={"help": "port of /metrics (0 = off)"})
    health_port: int = field(default=8081, metadata={"help": "port of /healthz and /readyz (0 = off)"})
    bind_address: str = field(default="0.0.0.0", metadata={"help": "address the two ports bind to"})
    field_manager: str = field(default=FIELD_MANAGER, metadata={"help": "server-side apply field manager"})
    shutdown_timeout: float = field(default=30.0, metadata={"help": "grace for in-flight reconciles"})
    api_timeout: float = field(default=30.0, metadata={"help": "timeout of one API request, seconds"})
    leader_elect: bool = field(
        default=False, metadata={"help": "elect a leader on a Lease; only the leader reconciles"}
    )
    leader_election_namespace: str = field(
        default="", metadata={"help": "the Lease's namespace (empty = the pod's, else default)"}
    )
    leader_election_id: str = field(default="k8s-lab-operator", metadata={"help": "the Lease's name"})
    lease_duration: float = field(default=15.0, metadata={"help": "how long a standby waits, seconds"})
    renew_deadline: float = field(default=10.0, metadata={"help": "the leader's renewal deadline, seconds"})
    retry_period: float = field(default=2.0, metadata={"help": "period of each election attempt, seconds"})
    log_format: str = field(
        default="full",
        metadata={"help": "plain, full or json (python -m labop; with kopf run: --log-format)"},
    )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingsError("workers must be at least 1")
        if self.queue_size < 1:
            raise SettingsError("queue_size must be at least 1")
        if self.resync_seconds < 0:
            raise SettingsError("resync_seconds must be 0 (off) or positive")
        for name in ("metrics_port", "health_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise SettingsError(f"{name} must be 0..65535, not {port}")
        if not self.default_image:
            raise SettingsError("default_image must not be empty")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}"
            )

        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise SettingsError("lease_duration > renew_deadline > retry_period > 0 must hold")
        if self.leader_elect and not self.leader_election_id:
            raise SettingsError("leader_election_id must not be empty")

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _boolean(raw: str) -> bool:
    if raw.strip().lower() in TRUE:
        return True
    if raw.strip().lower() in FALSE:
        return False
    raise ValueError(f"not a boolean (one of {', '.join(TRUE + FALSE[:-1])})")


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def election_namespace(settings: OperatorSettings, sa_file: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The Lease's namespace: the setting, else the pod's (its service account's), else default."""
    if settings.leader_election_namespace:
        return settings.leader_election_namespace
    try:
        with open(sa_file, encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _convert(source: str, raw: str, default: object) -> object:
    """``raw`` as the type of ``default``; ``source`` names the variable or flag in the error."""
    try:
        if isinstance(default, bool):  # before int: a bool is an int
            return _boolean(raw)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as err:
        raise SettingsError(f"{source}={raw!r}: {err}") from None
    return raw


def from_env(env: Mapping[str, str], base: OperatorSettings | None = None) -> OperatorSettings:
    """Settings from ``LABOP_*`` variables over ``base`` (the defaults if None)."""
    base = base or OperatorSettings()
    changes: dict[str, Any] = {
        f.name: _convert(env_name(f.name), env[env_name(f.name)], getattr(base, f.name))
        for f in fields(OperatorSettings)
        if env_name(f.name) in env
    }
    return replace(base, **changes)


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> OperatorSettings:
    """Flags win over environment variables, which win over defaults."""
    from_environment = from_env(env)
    parser = argparse.ArgumentParser(prog="python -m labop", description="The LabServer operator.")
    for f in fields(OperatorSettings):
        default = getattr(from_environment, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        help_text = f"{f.metadata['help']} (default {shown!r}; env {env_name(f.name)})"
        # A boolean flag alone means true (--leader-elect), or takes a value (--leader-elect=false).
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}
        parser.add_argument(flag_name(f.name), dest=f.name, default=None, help=help_text, **extra)
    parsed = parser.parse_args(list(argv))
    changes: dict[str, Any] = {
        f.name: _convert(flag_name(f.name), value, getattr(from_environment, f.name))
        for f in fields(OperatorSettings)
        if (value := getattr(parsed, f.name)) is not None
    }
    return replace(from_environment, **changes)

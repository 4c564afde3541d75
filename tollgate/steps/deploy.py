"""Deploy: make a registered version the one that serves.

Target ``local``: move the ``production`` alias; ``tollgate serve`` serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollgate.errors import TollgateError
from tollgate.registry import Registry


@dataclass(frozen=True)
class DeployResult:
    """Where the version went and what the aliases look like now."""

    target: str
    version: int
    aliases: dict[str, Any]
    detail: str


def deploy_local(registry: Registry, model_name: str, version: int) -> DeployResult:
    """Promote ``version`` to production in the registry."""
    aliases = registry.promote(model_name, version, reason="gate passed")
    return DeployResult("local", version, aliases, f"production -> v{version}")


def deploy(target: str, registry: Registry, model_name: str, version: int, options: dict[str, Any] | None = None) -> DeployResult:
    """Dispatch to the configured deploy target."""
    if target == "local":
        return deploy_local(registry, model_name, version)
    raise TollgateError(f"deploy target {target!r} is not available; use 'local'")

"""RayServeDeployOperator: make a registered version the one serving its project (zero downtime)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def triggering_version(context: Context) -> int | None:
    """The highest model version named by the asset events that started this run, if any."""
    events = context.get("triggering_asset_events") or {}
    versions = [
        int(event.extra["version"])
        for asset_events in events.values()
        for event in asset_events
        if (event.extra or {}).get("version") is not None
    ]
    return max(versions) if versions else None


class RayServeDeployOperator(ProjectOperator):
    """`version`: templated; empty = the version of the triggering asset event, else the latest registered."""

    template_fields: Sequence[str] = ("version",)
    ui_color = "#e4f4e4"

    def __init__(self, *, version: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.environments.project import project_python
        from mlops.serving.deploy import deploy_version

        version = int(self.version) if str(self.version or "").strip() else triggering_version(context)
        settings = self.settings()
        python = project_python(settings, self.config)  # None: the shared layer; else its replicas run there
        result = deploy_version(settings, self.config.name, self.config.serving, version, python)
        if result["changed"]:
            self.log.info(
                "%s v%s serves at %s (was v%s); replicas %s; ready in %.1f s; drain: %s",
                result["project"], result["version"], result["url"], result["previous"],
                result["replicas"], result["ready_s"], result["drain"],
            )
        else:
            self.log.info("%s v%s already serves at %s", result["project"], result["version"], result["url"])
        return result

"""BentoBuildOperator: package the registered model version as a BentoML Bento (once per version)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class BentoBuildOperator(ProjectOperator):
    """`registered` is the register step's XCom: {"name", "version", ...}.

    Its outlets (the factory gives it the project's model asset) get an event whose extra
    names the version, which schedules the project's deploy DAG.
    """

    template_fields: Sequence[str] = ("registered",)
    ui_color = "#fde9d9"

    def __init__(self, *, registered: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered = registered

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.serving.bento import build_bento

        version = int(self.registered["version"])
        result = build_bento(self.settings(), self.registered["name"], version)
        self.log.info("bento %s (new: %s) at %s", result["tag"], result["created"], result["path"])
        for asset in self.outlets:  # the model asset: its event carries the version to deploy
            context["outlet_events"][asset].extra = {"version": version, "bento": result["tag"]}
        return result

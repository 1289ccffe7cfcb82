"""BentoBuildOperator: package the registered model version as a BentoML Bento (once per version)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class BentoBuildOperator(ProjectOperator):
    """`registered` is the register step's XCom: {"name", "version", ...}."""

    template_fields: Sequence[str] = ("registered",)
    ui_color = "#fde9d9"

    def __init__(self, *, registered: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered = registered

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.serving.bento import build_bento

        result = build_bento(self.settings(), self.registered["name"], int(self.registered["version"]))
        self.log.info("bento %s (new: %s) at %s", result["tag"], result["created"], result["path"])
        return result

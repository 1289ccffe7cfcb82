"""The local Evidently workspace drift snapshots are kept in, one Evidently project per platform project.

Browse it with `mlops evidently-ui` (started by `mlops up`, behind a login). Evidently's local
workspace is plain JSON files with no locking of its own, so finding-or-creating a project runs
under an flock: two drift checks of one project never create it twice.

Projects and snapshots are written as Evidently's own file layer writes them
(`evidently.ui.storage.local.base.LocalState`, what `Workspace.add_project` / `Workspace.add_run`
use), not through `Workspace`: making a `Workspace` parses every snapshot already stored in every
project (its project manager's `LocalState.load`), so a monitor adding one snapshot an hour would
get slower every hour (~0.08 s per stored 20-column snapshot), and one malformed snapshot would stop
every later check. A snapshot's JSON is made by one `json.dumps`: `LocalState.write_snapshot`'s
`json.dump` streams through json's pure-Python encoder in ~200k small writes (~4x slower).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.settings import Settings


def workspace_dir(settings: Settings) -> Path:
    return settings.home / "monitoring" / "evidently"


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    # Not a UUID, so Evidently's project listing skips the lock file.
    with open(root / ".mlops.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def serialize(snapshot: Any, name: str) -> tuple[str, str]:
    """`snapshot`, named `name`, as its HTML report and as the JSON text the workspace stores (`add_snapshot`).

    Evidently makes each from scratch (`save_html`; `to_snapshot_model().dict()` in `add_run`), both
    walking every widget through pydantic: here the snapshot is turned into JSON once
    (`snapshot_json`) and the HTML is put round its widgets (`_html`, Evidently's own template;
    tests/monitoring/test_evidently_workspace.py checks both against Evidently's).
    """
    snapshot.set_name(name)
    model = snapshot.to_snapshot_model()
    text = snapshot_json(model)
    return _html(model, json.loads(text)), text


def snapshot_json(model: Any) -> str:
    """`json.dumps(model.dict(), cls=NumpyEncoder)`, the text `LocalState.write_snapshot` writes, without `dict()`.

    pydantic v1's `dict()` visits every element of every list, and a 20-column drift report's
    figures hold ~90k numbers (0.075 s); json's C encoder walks them instead and asks `_plain` only
    for what it cannot encode itself: a model (its field values, which are what `dict()` iterates)
    or a numpy value (Evidently's `NumpyEncoder`). A model that shapes its own dict gets `dict()`.
    """
    from evidently.legacy.utils import NumpyEncoder
    from pydantic.v1 import BaseModel

    numpy_encoder = NumpyEncoder()

    def _plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            if type(value).dict is BaseModel.dict and not (value.__exclude_fields__ or value.__include_fields__):
                return value.__dict__
            return value.dict()
        return numpy_encoder.default(value)

    return json.dumps(model, default=_plain)


class _Serialized:
    """A pydantic model already turned into its dict: the HTML template only calls `dict()` on it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def dict(self) -> dict[str, Any]:
        return self._data


def _html(model: Any, document: dict[str, Any]) -> str:
    """`Snapshot.get_html_str(as_iframe=False)` (`render_widgets`), with the widgets' dicts taken from `document`."""
    import uuid

    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils.dashboard import TemplateParams, file_html_template

    graphs: dict[str, Any] = {}
    widgets, serialized = [*model.widgets, *model.tests_widgets], document["widgets"] + document["tests_widgets"]
    for widget, widget_dict in zip(widgets, serialized):
        _additional_graphs(widget, widget_dict, graphs)
    # copies: the template pops each top-level widget's additionalGraphs
    group = {**group_widget(title="", widgets=[]).dict(), "widgets": document["widgets"]}
    top = [group, *map(dict, document["tests_widgets"])]
    dashboard = {**DashboardInfo(name="Report", widgets=[]).dict(), "widgets": top}
    dashboard_id = "metric_" + str(uuid.uuid4()).replace("-", "")
    return file_html_template(TemplateParams(dashboard_id, _Serialized(dashboard), graphs))


def _additional_graphs(widget: Any, serialized: dict[str, Any], graphs: dict[str, Any]) -> None:
    """`widget.get_additional_graphs()` keyed as `render_widgets` keys them, widgets' dicts taken from `serialized`."""
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo

    for graph, graph_dict in zip(widget.additionalGraphs, serialized["additionalGraphs"]):
        if isinstance(graph, AdditionalGraphInfo):
            graphs[f"{graph.id}"] = graph.params
        elif isinstance(graph, BaseWidgetInfo):
            graphs[f"{graph.id}"] = graph_dict
        else:  # a PlotlyGraphInfo goes to the template's JSON encoder as it is, as in render_widgets
            graphs[f"{graph.id}"] = graph
    for child, child_dict in zip(widget.widgets, serialized["widgets"]):
        _additional_graphs(child, child_dict, graphs)


def add_snapshot(settings: Settings, project: str, document: str) -> tuple[str, str]:
    """Store a snapshot's JSON `document` (`serialize`) in the Evidently project named `project` (created on first use).

    Returns (Evidently project id, snapshot id). With several projects of that name (made by
    hand), the one with the smallest id is used, so every check lands in the same one. Only the
    find-or-create is locked: a snapshot has a fresh uuid7 file of its own.
    """
    from evidently.legacy.core import new_id
    from evidently.ui.storage.local.base import LocalState

    if not isinstance(document, str):
        raise TypeError(
            f"add_snapshot stores a snapshot's JSON text (the second value serialize() returns), got {type(document).__name__}"
        )
    root = workspace_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    state = LocalState(str(root))
    with _exclusive(root):
        project_id = _project_id(state, project)
    snapshot_id = new_id()
    _write_snapshot(root, project_id, snapshot_id, document)
    return str(project_id), str(snapshot_id)


def _project_id(state: Any, project: str) -> Any:
    """The id of the Evidently project named `project`, made if there is none; reads projects' metadata only."""
    from evidently.sdk.models import ProjectModel

    named = []
    for project_id in state.list_projects():
        try:
            stored = state.read_project(project_id)
        except FileNotFoundError:  # a project directory without metadata: not a project (Evidently skips it too)
            continue
        if stored.name == project:
            named.append(stored.id)
    if named:
        return min(named, key=str)
    return state.write_project(ProjectModel(name=project, description=f"Drift checks of {project}")).id


def _write_snapshot(root: Path, project_id: Any, snapshot_id: Any, document: str) -> None:
    """The file `LocalState.write_snapshot` writes (same path, same JSON), in one write."""
    from evidently.ui.storage.local.base import DOT_JSON, SNAPSHOTS_DIR_NAME

    folder = root / str(project_id) / SNAPSHOTS_DIR_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{snapshot_id}{DOT_JSON}").write_text(document, encoding="utf-8")


__all__ = ["add_snapshot", "serialize", "snapshot_json", "workspace_dir"]

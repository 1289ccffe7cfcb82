"""serialize makes what Evidently makes; add_snapshot writes what its Workspace reads, not reading stored snapshots."""

from __future__ import annotations

import json
import re
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring.evidently_workspace import add_snapshot, serialize, snapshot_json, workspace_dir


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from mlops.settings import Settings

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    return Settings.from_env()


@pytest.fixture(scope="module")
def snapshot():
    from evidently import Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(0)
    frame = lambda shift: pd.DataFrame({"x": rng.normal(shift, size=200), "y": rng.normal(size=200)})  # noqa: E731
    return Report([DataDriftPreset()], include_tests=True).run(frame(1.0), frame(0.0))


def store(settings, project: str, snapshot, name: str) -> tuple[str, str]:
    return add_snapshot(settings, project, serialize(snapshot, name)[1])


def test_serialize_makes_evidentlys_html_and_snapshot_document(snapshot):
    from evidently.legacy.utils import NumpyEncoder

    html, document = serialize(snapshot, "drift-1")

    assert snapshot.get_name() == "drift-1"
    # the very text LocalState.write_snapshot writes
    assert document == json.dumps(snapshot.to_snapshot_model().dict(), cls=NumpyEncoder)
    assert json.loads(document)["tests_widgets"]  # the tests' widgets are in the HTML too
    assert fixed(html) == fixed(snapshot.get_html_str(as_iframe=False))


def test_snapshot_json_is_dict_then_json_for_any_model():
    """Models that exclude fields or shape their own dict, numpy values, nesting: the text `dict()` + NumpyEncoder gives."""
    from evidently.legacy.utils import NumpyEncoder
    from pydantic.v1 import BaseModel, Field

    class Leaf(BaseModel):
        value: float
        hidden: str = Field("secret", exclude=True)

    class Shaped(BaseModel):
        a: int = 1

        def dict(self, **kwargs):
            return {"shaped": True, **super().dict(**kwargs)}

    class Root(BaseModel):
        class Config:
            arbitrary_types_allowed = True

        leaves: list = []
        table: dict = {}
        array: np.ndarray = None

    root = Root(
        leaves=[Leaf(value=1.5), [Shaped(), {"deep": Leaf(value=np.float64(2.0))}]],
        table={"n": np.int64(3), "x": [0.1, None, "s"]},
        array=np.arange(3.0),
    )

    assert snapshot_json(root) == json.dumps(root.dict(), cls=NumpyEncoder)
    assert "secret" not in snapshot_json(root) and '"shaped": true' in snapshot_json(root)


def test_add_snapshot_names_what_it_takes(settings, snapshot):
    with pytest.raises(TypeError, match=r"JSON text .*serialize\(\).*got dict"):
        add_snapshot(settings, "demo", snapshot.to_snapshot_model().dict())
    assert not list(workspace_dir(settings).glob("*/snapshots/*.json"))


def fixed(html: str) -> str:
    """`html` without the two ids made anew at each rendering: the dashboard's and its group widget's."""
    html = re.sub(r"metric_[0-9a-f]{32}", "DASHBOARD", html)
    return re.sub(r'("type": "group", "title": "", "size": 2, "id": )"[^"]+"', r"\1GROUP", html, count=1)


def test_snapshots_land_in_one_project_evidently_can_read(settings, snapshot):
    from evidently.ui.workspace import Workspace

    first = store(settings, "demo", snapshot, "drift-1")
    second = store(settings, "demo", snapshot, "drift-2")
    other = store(settings, "other", snapshot, "drift-1")

    workspace = Workspace(str(workspace_dir(settings)))
    (project,) = workspace.search_project("demo")
    assert first[0] == second[0] == str(project.id) != other[0]
    assert project.description == "Drift checks of demo"
    assert sorted(str(s) for s in workspace.list_runs(project.id)) == sorted([first[1], second[1]])
    assert workspace.get_run(project.id, second[1]).name == "drift-2"


def test_stored_snapshots_are_not_read(settings, snapshot):
    """A broken stored snapshot (Workspace() refuses to load one) or a stray directory does not stop the next check."""
    project_id, _ = store(settings, "demo", snapshot, "drift-1")
    root = workspace_dir(settings)
    (root / project_id / "snapshots" / f"{uuid.uuid4()}.json").write_text("{}")
    (root / str(uuid.uuid4())).mkdir()  # a UUID-named directory without metadata.json

    again, snapshot_id = store(settings, "demo", snapshot, "drift-2")

    assert again == project_id
    assert (root / project_id / "snapshots" / f"{snapshot_id}.json").exists()


def test_the_smallest_id_wins_among_projects_of_one_name(settings, snapshot):
    from evidently.sdk.models import ProjectModel
    from evidently.ui.storage.local.base import LocalState

    state = LocalState(str(workspace_dir(settings)))
    made = [state.write_project(ProjectModel(name="demo")).id for _ in range(3)]

    assert store(settings, "demo", snapshot, "drift-1")[0] == str(min(made, key=str))

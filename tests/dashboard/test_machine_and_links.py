"""The machine section (thermal read now, from a fake sysfs) and the links (Evidently ids, reports)."""

from __future__ import annotations

import json
import os
import uuid

from mlops_testing import fake_thermal_zone, set_zone_state

from mlops.dashboard import links
from mlops.dashboard.airflow_state import AirflowState
from mlops.dashboard.machine import machine_section
from mlops.settings import Settings


def test_thermal_is_read_on_every_call_and_pools_pass_through(tmp_path):
    root = fake_thermal_zone(tmp_path / "hw", "nominal")
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_HARDWARE_ROOT": str(root)})
    pools = [{"name": "mlx_compute", "slots": 4, "running": 1, "queued": 0, "open": 3, "extra": 1}]
    first = machine_section(settings, AirflowState(pools=pools))
    assert first["thermal"] == "nominal" and first["pools"] == [{k: v for k, v in pools[0].items() if k != "extra"}]
    set_zone_state(root, "serious")
    assert machine_section(settings, AirflowState())["thermal"] == "serious"
    assert first["chip"] and first["device"] in ("gpu", "cpu", "unknown")


def test_evidently_projects_by_name_smallest_id_wins(tmp_path):
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    root = tmp_path / "monitoring" / "evidently"
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    for project_id, name in zip(ids, ("shop", "shop", "other")):
        (root / project_id).mkdir(parents=True)
        (root / project_id / "metadata.json").write_text(json.dumps({"id": project_id, "name": name}))
    (root / "not-a-project").mkdir()
    found = links.evidently_projects(settings)
    assert found == {"shop": ids[0], "other": ids[2]}
    assert links.evidently_project_url(settings, ids[0]) == f"http://127.0.0.1:8002/projects/{ids[0]}"


def test_report_links_only_for_written_reports(tmp_path):
    from mlops.analytics.report_files import project_report_path, toolkit_report_path

    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    assert links.report_status(settings, "p") == {"url": None, "exists": False, "generated": None}
    for path in (project_report_path(settings, "p"), toolkit_report_path(settings)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("<html></html>")
    os.utime(toolkit_report_path(settings), (1_780_000_000, 1_780_000_000))
    assert links.report_status(settings, "p")["url"] == "reports/p"
    assert links.report_status(settings, None) == {"url": "reports/toolkit", "exists": True,
                                                   "generated": "2026-05-28T20:26:40+00:00"}


def test_mlflow_links_follow_the_tracking_uri(tmp_path):
    local = Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_MLFLOW_PORT": "5123"})
    remote = Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_TRACKING_URI": "http://mlflow.example:80/"})
    assert links.mlflow_base(local) == "http://127.0.0.1:5123"
    assert links.mlflow_base(remote) == "http://mlflow.example:80"
    assert links.model_version_url("http://m", "a b", 3) == "http://m/#/models/a%20b/versions/3"

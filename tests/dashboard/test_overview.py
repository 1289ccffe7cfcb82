"""`build_overview` and `build_project` on a real MLflow store: family-fit figures, latest vs best under each
goal, an invalid YAML beside complete valid ones, an unknown project, and sources that are down."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dashboard_support import BROKEN, M4, ORPHAN, PROJECTS, settings_for
from mlops_testing import free_port

from mlops.dashboard.airflow_state import AirflowState, DagRunInfo
from mlops.dashboard.overview import UnknownProject, build_overview, build_project

EMPTY = AirflowState()


@pytest.fixture(scope="module")
def overview(store) -> dict:
    return build_overview(store.settings, EMPTY, store.client)


def by_name(overview: dict) -> dict[str, dict]:
    return {p["name"]: p for p in overview["projects"]}


def test_the_overview_is_json_and_lists_every_project(overview):
    assert json.loads(json.dumps(overview)) == overview
    assert set(by_name(overview)) == {*PROJECTS, BROKEN, ORPHAN}
    assert [p["name"] for p in overview["projects"]] == sorted(by_name(overview))
    assert overview["seconds"] > 0 and datetime.fromisoformat(overview["generated"]).tzinfo is not None
    assert overview["links"]["airflow"] == "/" and overview["links"]["toolkit_report"] is None
    assert set(overview["machine"]) >= {"chip", "memory_gb", "device", "thermal", "thermal_source", "pools"}


@pytest.mark.parametrize(("project", "metric", "goal", "extra"), [
    ("shop_classifier", "accuracy", "max", "loss"),
    ("story_lm", "perplexity", "min", "loss"),
    ("pixel_diffusion", "loss", "min", "sample_mmd"),
    ("clip_pairs", "recall_at_1", "max", "loss"),
])
def test_each_family_shows_its_own_figures_and_latest_vs_best(overview, project, metric, goal, extra):
    entry = by_name(overview)[project]
    fit = PROJECTS[project]
    versions = entry["versions"]
    assert (versions["count"], versions["metric"], versions["goal"]) == (3, metric, goal)
    latest, best = versions["latest"], versions["best"]
    assert latest["version"] == 3 and best["version"] == 2
    assert latest["metrics"] == {metric: fit.values[2], extra: fit.values[2] / 2} if metric != extra else True
    assert best["quality"] == fit.values[1] and latest["quality"] == fit.values[2]
    assert best["url"].endswith(f"/#/models/{project}/versions/2")
    assert best["run_id"] and latest["created"] and latest["quantization"] == "none"
    assert entry["family"] == fit.family and entry["owner"] == f"team-{fit.family}" and entry["valid"] is True
    assert entry["tags"] == {fit.family: "true", "seeded": "true"} and entry["errors"] == []


def test_a_quantized_version_shows_its_footprint_and_quantization(overview):
    latest = by_name(overview)["tiny_quant"]["versions"]["latest"]
    assert latest["quantization"] == "int4" and latest["footprint_mb"] == pytest.approx(1.15)
    assert latest["technique"] == "quantization"


def test_an_invalid_yaml_is_listed_with_located_errors_beside_complete_valid_ones(overview):
    projects = by_name(overview)
    broken = projects[BROKEN]
    assert broken["valid"] is False and broken["versions"]["count"] == 0
    fields = {e["field"]: e for e in broken["errors"]}
    assert set(fields) == {"priorty", "retries"}
    assert fields["priorty"]["line"] == 4 and fields["priorty"]["column"] == 1
    assert "priority" in fields["priorty"]["suggestion"]
    assert fields["retries"]["line"] == 5 and fields["retries"]["file"].endswith(f"{BROKEN}.yaml")
    assert any("does not load" in n for n in broken["notes"])
    assert projects["shop_classifier"]["versions"]["best"]["version"] == 2  # the rest unaffected


def test_a_project_known_only_from_mlflow_is_listed_from_its_experiment_tags(overview):
    orphan = by_name(overview)[ORPHAN]
    assert (orphan["owner"], orphan["family"], orphan["tags"]) == ("ghost", "tiny_lm", {"legacy": "true"})
    assert orphan["valid"] is False and any("no project file" in n for n in orphan["notes"])
    assert orphan["links"]["mlflow_experiment"] and orphan["links"]["mlflow_model"] is None


def test_latest_monitoring_run_and_best_technique(store, overview):
    entry = by_name(overview)["shop_classifier"]
    monitoring = entry["monitoring"]
    assert (monitoring["drift_share"], monitoring["drift_detected"], monitoring["version"]) == (0.6, True, "3")
    assert monitoring["accuracy"] == pytest.approx(0.77)
    assert monitoring["url"].endswith(f"/runs/{store.monitoring['shop_classifier']}")
    assert by_name(overview)["story_lm"]["monitoring"] is None
    best = entry["best_technique"]
    assert (best["technique"], best["machine"]) == ("lora", M4)  # the machine its latest version trained on
    assert best["all"] == {M4: "lora", "Other, 8 GB, cpu": "none"}


def test_airflow_state_fed_by_hand(store):
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    runs = [DagRunInfo("story_lm__lifecycle", "manual__2", "running", "manual", start, None),
            DagRunInfo("story_lm__lifecycle", "scheduled__1", "success", "scheduled", start, start)]
    airflow = AirflowState(
        dag_runs={"story_lm__lifecycle": runs}, paused={"story_lm__lifecycle": True},
        waiting=[{"dag_id": "story_lm__lifecycle", "task_id": "train", "waiting_for": "pool mlx_compute full",
                  "since": "x"}, {"dag_id": "other__lifecycle", "task_id": "train", "waiting_for": "?"}],
        pools=[{"name": "mlx_compute", "slots": 2, "running": 2, "queued": 1, "open": 0}],
        note="import errors table unreadable",
    )
    overview = build_overview(store.settings, airflow, store.client)
    entry = by_name(overview)["story_lm"]
    assert entry["lifecycle"]["run_id"] == "manual__2" and entry["lifecycle"]["state"] == "running"
    assert entry["lifecycle"]["url"] == "/dags/story_lm__lifecycle/runs/manual__2"
    assert entry["paused"] is True and by_name(overview)["clip_pairs"]["paused"] is None
    assert entry["queue"] == {"waiting": 1, "tasks": [{"dag_id": "story_lm__lifecycle", "task_id": "train",
                                                      "reason": "pool mlx_compute full"}]}
    assert overview["machine"]["pools"][0]["queued"] == 1
    assert "import errors table unreadable" in overview["notes"]


def test_the_project_page_has_its_history(store):
    page = build_project(store.settings, "shop_classifier", EMPTY, store.client)
    assert json.loads(json.dumps(page)) == page
    assert [v["version"] for v in page["all_versions"]] == [1, 2, 3]
    assert [r["quality"] for r in page["runs"]] == list(PROJECTS["shop_classifier"].values)
    assert all(r["status"] == "FINISHED" and r["url"] for r in page["runs"])
    assert [m["drift_detected"] for m in page["monitoring_history"]] == [False, True]
    assert page["monitoring_history"][1]["requests"] == 1200.0
    assert page["versions"]["best"]["version"] == 2 and page["monitoring"]["drift_share"] == 0.6
    assert page["yaml"]["valid"] is True and page["yaml"]["text"].startswith("name: shop_classifier")
    assert page["report"] == {"url": None, "exists": False, "generated": None}
    assert page["lifecycle_runs"] == page["deploy_runs"] == page["monitor_runs"] == page["deployments"] == []


def test_an_invalid_project_page_shows_its_yaml_and_errors(store):
    page = build_project(store.settings, BROKEN, EMPTY, store.client)
    assert page["yaml"]["valid"] is False and "priorty: 3" in page["yaml"]["text"]
    assert {e["field"] for e in page["yaml"]["errors"]} == {"priorty", "retries"}


def test_an_unknown_project_suggests_the_closest(store):
    with pytest.raises(UnknownProject) as raised:
        build_project(store.settings, "shop_clasifier", EMPTY, store.client)
    assert raised.value.name == "shop_clasifier" and raised.value.suggestions[0] == "shop_classifier"
    assert str(raised.value) == "no project 'shop_clasifier' (did you mean 'shop_classifier'?)"
    with pytest.raises(UnknownProject, match=r"^no project 'zzz'$"):
        build_project(store.settings, "zzz", EMPTY, store.client)


def test_mlflow_down_is_a_note_and_the_yamls_still_show(store):
    down = settings_for(store.settings.home, f"http://127.0.0.1:{free_port()}")
    overview = build_overview(down, EMPTY)
    assert any("MLflow at http://127.0.0.1" in n and "unreachable" in n for n in overview["notes"])
    entry = by_name(overview)["story_lm"]
    assert entry["family"] == "tiny_lm" and entry["versions"] == {
        "count": 0, "metric": None, "goal": None, "latest": None, "best": None}
    page = build_project(down, "story_lm", EMPTY)
    assert page["runs"] == [] and page["all_versions"] == [] and page["yaml"]["valid"] is True

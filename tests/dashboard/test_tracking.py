"""MLflow reads: how many calls a page makes (one search per kind per project, none per version), and
the pure rules: best under each goal, the quality metric, the best-technique verdict."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
from dashboard_support import LEGACY, M4, PROJECTS

from mlops.analytics import names
from mlops.dashboard import tracking
from mlops.dashboard.airflow_state import AirflowState
from mlops.dashboard.overview import build_overview, build_project


class CountingClient:
    """The real client, counting the calls made through it."""

    def __init__(self, client):
        self.client, self.calls = client, Counter()

    def __getattr__(self, name):
        self.calls[name] += 1
        return getattr(self.client, name)


def test_the_overview_reads_each_kind_once_per_project(store):
    client = CountingClient(store.client)
    build_overview(store.settings, AirflowState(), client)
    with_experiment = len(PROJECTS) + 1  # + the orphan
    # search_runs: every experiment's latest monitoring run, plus the runs of LEGACY's untagged versions only
    assert client.calls == Counter({"search_experiments": 1, "search_model_versions": with_experiment + 1,  # + broken
                                    "search_runs": with_experiment + 1})


def test_the_project_page_reads_the_history_once(store):
    client = CountingClient(store.client)
    page = build_project(store.settings, "story_lm", AirflowState(), client)
    assert client.calls == Counter({"search_experiments": 1, "search_model_versions": 1, "search_runs": 1})
    assert [v["metrics"] for v in page["all_versions"]] == [{"perplexity": q, "loss": q / 2}
                                                            for q in PROJECTS["story_lm"].values]


def test_runs_by_id_is_one_search(store):
    client = CountingClient(store.client)
    wanted = store.runs["clip_pairs"]
    found = tracking.runs_by_id(client, [store.experiments["clip_pairs"]], wanted + ["", wanted[0]])
    assert set(found) == set(wanted) and client.calls == Counter({"search_runs": 1})
    assert tracking.runs_by_id(client, [store.experiments["clip_pairs"]], []) == {}


def _version(n: int, quality: float | None) -> dict:
    return {"version": n, "quality": quality}


@pytest.mark.parametrize(("goal", "best"), [("max", 3), ("min", 2)])
def test_best_follows_the_goal_and_a_tie_goes_to_the_newer(goal, best):
    versions = [_version(1, 0.5), _version(2, 0.2), _version(3, 0.9), _version(4, None)]
    assert tracking.best_of(versions, goal)["version"] == best
    assert tracking.best_of([_version(1, 0.5), _version(2, 0.5)], goal)["version"] == 2
    assert tracking.best_of([_version(1, None)], goal) is None


def test_best_technique_prefers_this_machine_then_the_latest_versions():
    verdict = json.dumps({"objective": "smallest", "best": {M4: "lora", "here": "quantization"}})
    experiment = SimpleNamespace(tags={names.BEST_TECHNIQUE: verdict})
    run = SimpleNamespace(data=SimpleNamespace(tags={names.MACHINE: M4}))
    assert tracking.best_technique(experiment, "here", run)["technique"] == "quantization"
    assert tracking.best_technique(experiment, "elsewhere", run)["machine"] == M4
    assert tracking.best_technique(experiment, None, None)["objective"] == "smallest"
    assert tracking.best_technique(SimpleNamespace(tags={names.BEST_TECHNIQUE: "not json"}), None, None) is None


def test_a_version_tagged_with_its_evaluation_needs_no_run(store):
    """The same figures from the version's tags (registration's `evaluation_tags`) as from its run."""
    tagged = [v for v in store.client.search_model_versions("name = 'story_lm'") if int(v.version) == 2][0]
    run = store.client.get_run(tagged.run_id)
    assert tracking.version_dict(tagged, None, "u") == tracking.version_dict(tagged, run, "u")
    legacy = [v for v in store.client.search_model_versions(f"name = '{LEGACY}'") if int(v.version) == 2][0]
    assert tracking.tagged_quality(legacy) is None and tracking.version_dict(legacy, None, "u")["quality"] is None
    assert tracking.version_dict(legacy, store.client.get_run(legacy.run_id), "u")["quality"] == PROJECTS[LEGACY].values[1]

"""Worker queues follow the probe: Apple Silicon and GPUs are proven, never assumed."""

from __future__ import annotations

from pathlib import Path

from mlops.config import parse_project_text
from mlops.hardware import HardwareProfile, probe_from_dir
from mlops.lifecycle import lifecycle_plan
from mlops.resources.names import queue_for, worker_queues

FIXTURES = Path(__file__).resolve().parents[1] / "hardware" / "fixtures"


def bases(queues: list[str]) -> list[str]:
    return [q for q in queues if "_mem" not in q]


def test_apple_silicon_bundle_serves_apple_silicon_and_gpu_queues():
    queues = worker_queues(probe_from_dir(FIXTURES / "m2pro_bundle"))  # 32 GiB
    assert bases(queues) == ["default", "apple_silicon", "gpu"]
    assert "apple_silicon_mem32gb" in queues and "gpu_mem1gb" in queues and "default_mem64gb" not in queues


def test_intel_mac_and_unknown_machines_serve_default_only():
    assert bases(worker_queues(probe_from_dir(FIXTURES / "intel_throttled_bundle"))) == ["default"]
    assert worker_queues(HardwareProfile()) == ["default"]  # memory unknown: no memory classes either


def test_cuda_machine_serves_gpu():
    assert bases(worker_queues(HardwareProfile(is_apple_silicon=False, cuda_available=True))) == ["default", "gpu"]


def test_min_memory_routes_to_a_class_only_big_enough_workers_serve():
    assert queue_for("apple_silicon", 24) == "apple_silicon_mem32gb"
    assert queue_for("any", 0.5) == "default_mem1gb" and queue_for("gpu", 32) == "gpu_mem32gb"
    m2pro = worker_queues(probe_from_dir(FIXTURES / "m2pro_bundle"))
    assert queue_for("apple_silicon", 24) in m2pro and queue_for("apple_silicon", 33) not in m2pro


def test_heavy_steps_are_routed_by_requires():
    yaml = "name: routed\nmodel:\n  family: mlp_classifier\nscheduling:\n  requires: apple_silicon\n"
    steps = {s.name: s for s in lifecycle_plan(parse_project_text(yaml, "x.yaml"))}
    assert steps["train"].queue == steps["evaluate"].queue == "apple_silicon"
    assert steps["pull_data"].queue is None


def test_worker_dry_run_prints_this_machines_queues(capsys):
    from mlops.cli import main

    assert main(["worker", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "queues for this machine: default, default_mem1gb" in out and "celery worker --queues default," in out

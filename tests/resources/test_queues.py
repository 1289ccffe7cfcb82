"""Worker queues follow the probe: Apple Silicon and GPUs are proven, never assumed."""

from __future__ import annotations

from pathlib import Path

from mlops.config import parse_project_text
from mlops.hardware import HardwareProfile, probe_from_dir
from mlops.lifecycle import lifecycle_plan
from mlops.resources.names import worker_queues

FIXTURES = Path(__file__).resolve().parents[1] / "hardware" / "fixtures"


def test_apple_silicon_bundle_serves_apple_silicon_and_gpu_queues():
    assert worker_queues(probe_from_dir(FIXTURES / "m2pro_bundle")) == ["default", "apple_silicon", "gpu"]


def test_intel_mac_and_unknown_machines_serve_default_only():
    assert worker_queues(probe_from_dir(FIXTURES / "intel_throttled_bundle")) == ["default"]
    assert worker_queues(HardwareProfile()) == ["default"]


def test_cuda_machine_serves_gpu():
    assert worker_queues(HardwareProfile(is_apple_silicon=False, cuda_available=True)) == ["default", "gpu"]


def test_heavy_steps_are_routed_by_requires():
    yaml = "name: routed\nmodel:\n  family: mlp_classifier\nscheduling:\n  requires: apple_silicon\n"
    steps = {s.name: s for s in lifecycle_plan(parse_project_text(yaml, "x.yaml"))}
    assert steps["train"].queue == steps["evaluate"].queue == "apple_silicon"
    assert steps["pull_data"].queue is None


def test_worker_dry_run_prints_this_machines_queues(capsys):
    from mlops.cli import main

    assert main(["worker", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "queues for this machine: default" in out and "celery worker --queues default" in out

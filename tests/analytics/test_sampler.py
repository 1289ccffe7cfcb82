"""The hardware sampler: what it logs to a real MLflow store, how a failing reader stops alone,
that it stops with its block, and the figures it feeds (energy, thermal share) on an injected clock."""

from __future__ import annotations

import threading

import pytest

from mlops.analytics import names
from mlops.analytics.sampler import HardwareSampler, Series
from mlops.hardware.usage import ReaderUnavailable


@pytest.fixture
def run(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("sampled", artifact_location=(tmp_path / "a").as_uri())
    return client, client.create_run(experiment).info.run_id


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_sample_is_logged_under_mlflows_system_names_and_a_broken_reader_stops_alone(run):
    client, run_id = run
    calls = {"flaky": 0}

    def gpu_from_macmon() -> dict[str, float]:
        return {names.GPU_UTILIZATION: 99.0, names.GPU_POWER_WATTS: 3.0}

    def flaky() -> dict[str, float]:
        calls["flaky"] += 1
        if calls["flaky"] == 2:
            raise OSError("ioreg: broken pipe")
        return {names.GPU_UTILIZATION: 40.0 + calls["flaky"]}

    def absent() -> dict[str, float]:
        raise ReaderUnavailable("no macmon on PATH")

    readers = {"cpu": lambda: {names.CPU_UTILIZATION: 12.5}, "flaky": flaky, "absent": absent, "macmon": gpu_from_macmon}
    clock = Clock()
    sampler = HardwareSampler(client, run_id, interval=5, readers=readers, clock=clock)
    for _ in range(3):
        sampler.sample()
        clock.now += 5
    assert calls["flaky"] == 2  # called until it failed, never after
    assert sampler.readers_report() == {
        "cpu": "sampled",
        "absent": "unavailable: no macmon on PATH",
        "macmon": "sampled",
        "flaky": "failed: OSError: ioreg: broken pipe",
    }
    cpu = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    gpu = client.get_metric_history(run_id, "system/gpu_0_utilization_percentage")
    assert [(m.step, m.value) for m in cpu] == [(0, 12.5), (1, 12.5), (2, 12.5)]
    # the first reader of a name wins (Apple's counter over macmon's); then macmon's when the first failed
    assert [(m.step, m.value) for m in gpu] == [(0, 41.0), (1, 99.0), (2, 99.0)]
    assert sampler.means()[names.GPU_POWER_WATTS] == 3.0
    assert not any("pressure" in key for key in client.get_run(run_id).data.metrics)


def test_a_second_sampler_on_the_same_run_continues_its_steps(run):
    """The evaluation task's samples follow the training task's on the run's timeline."""
    client, run_id = run
    first = HardwareSampler(client, run_id, 5, readers={"cpu": lambda: {names.CPU_UTILIZATION: 1.0}})
    first.start()
    first.stop()  # one sample when started, one when stopped
    second = HardwareSampler(client, run_id, 5, readers={"cpu": lambda: {names.CPU_UTILIZATION: 2.0}})
    second.start()
    second.stop()
    history = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 1.0), (2, 2.0), (3, 2.0)]


def test_the_thread_samples_until_its_block_ends_and_never_after(run):
    client, run_id = run
    ticks = threading.Semaphore(0)

    def counting() -> dict[str, float]:
        ticks.release()
        return {names.CPU_UTILIZATION: 5.0}

    with HardwareSampler(client, run_id, interval=0.01, readers={"cpu": counting}) as sampler:
        for _ in range(3):  # the first sample at start, then one per interval
            assert ticks.acquire(timeout=30)
        thread = sampler._thread
    assert thread is not None and not thread.is_alive()
    done = sampler.samples
    assert done >= 4  # with the last one, taken when the block ended
    sampler.stop()  # a second stop changes nothing
    assert sampler.samples == done
    assert len(client.get_metric_history(run_id, "system/cpu_utilization_percentage")) == done


def test_energy_and_thermal_share_from_the_samples_on_an_injected_clock():
    clock = Clock()
    watts = iter([10.0, 20.0, 30.0])
    levels = iter([0.0, 2.0, 3.0, 1.0])
    sampler = HardwareSampler(None, None, 5, readers={
        "power": lambda: {names.PACKAGE_POWER_WATTS: next(watts)},
        "thermal": lambda: {names.THERMAL_LEVEL: next(levels)},
    }, clock=clock)
    sampler.started_at = clock.now
    for _ in range(3):
        sampler.sample()
        clock.now += 2
    sampler.readers.pop("power")
    sampler.sample()
    sampler.stopped_at = clock.now + 4
    # power samples at t = 0, 2, 4 s, each holding until the next, the last until the end at 10 s
    assert sampler.energy_joules() == pytest.approx(20 + 40 + 180)
    assert sampler.throttled_share() == 0.5  # serious (2) and critical (3) of four thermal samples
    assert sampler.seconds == 10


def test_without_power_or_thermal_readings_there_is_no_energy_and_no_share():
    sampler = HardwareSampler(None, None, 5, readers={"cpu": lambda: {names.CPU_UTILIZATION: 3.0}})
    sampler.sample()
    assert sampler.energy_joules() is None and sampler.throttled_share() is None


def test_cpu_and_gpu_power_add_up_when_no_package_power():
    series = {names.CPU_POWER_WATTS: Series([4.0], [0.0]), names.GPU_POWER_WATTS: Series([6.0], [0.0])}
    sampler = HardwareSampler(None, None, 5, readers={})
    sampler.series, sampler.started_at, sampler.stopped_at = series, 0.0, 3.0
    assert sampler.energy_joules() == pytest.approx(30.0)

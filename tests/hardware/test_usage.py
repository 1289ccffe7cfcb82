"""The sampler's per-sample readers (mlops.hardware.usage).

The macOS parsers are fed verbatim recordings of real Macs (fixtures/recorded/, sources in
fixtures/SOURCES.md); every inline string marked "hand-made" is an edge case composed here, not a
recording.  The Linux readers run for real on this host (psutil, /proc/pressure/memory, NVML
without a driver); the macOS readers must say they cannot read here.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import psutil
import pytest

from mlops.analytics import names
from mlops.hardware import usage
from mlops.hardware.usage import ReaderUnavailable

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="runs the Linux readers for real")


def recorded(directory: str, file: str) -> str:
    return (RECORDED / directory / file).read_text(encoding="utf-8")


# ----------------------------------------------------------------- ioreg PerformanceStatistics


def test_m1_macbook_air_ioreg_l_excerpt():
    """Verbatim `ioreg -l` excerpt of an M1 MacBook Air (macOS 11.0.1): idle GPU, 6.4 MB in use."""
    values = usage.parse_ioreg_performance_statistics(recorded("m1_macbookair10_1_thomaskaiser", "ioreg-accelerator.txt"))
    assert values == {names.GPU_UTILIZATION: 0.0, names.GPU_MEMORY_MB: 6373376 / 1e6}


def test_m1_pro_ioreg_accelerator_output():
    """Verbatim `ioreg -r -d 1 -w 0 -c "IOAccelerator"` of an M1 Pro (macOS 12.6), exelban/stats#1094."""
    text = recorded("m1pro_macbookpro16_2021_stats1094", "ioreg-accelerator.txt")
    values = usage.parse_ioreg_performance_statistics(text)
    assert values == {names.GPU_UTILIZATION: 2.0, names.GPU_MEMORY_MB: 340983808 / 1e6}
    assert values[names.GPU_MEMORY_MB] == pytest.approx(340.983808)


def test_ioreg_keys_are_read_by_name_whatever_their_order():
    """hand-made: the M1 Pro's figures in another order, with the newer "(driver)" key first -> same values.

    Both recordings here happen to list the keys in the same order; newer macOS versions put
    "In use system memory (driver)" first and move the others, so nothing may depend on position.
    """
    m1pro = recorded("m1pro_macbookpro16_2021_stats1094", "ioreg-accelerator.txt")
    reordered = (
        '      "PerformanceStatistics" = {"In use system memory (driver)"=0,"In use system memory"=340983808,'
        '"Tiler Utilization %"=9,"Device Utilization %"=2,"Renderer Utilization %"=7}\n'
    )
    assert usage.parse_ioreg_performance_statistics(reordered) == usage.parse_ioreg_performance_statistics(m1pro)


def test_ioreg_l_tree_glyphs_do_not_matter():
    """The M1 recording is an `ioreg -l` excerpt (lines prefixed by "| |   |   |"), the M1 Pro one is not."""
    m1 = recorded("m1_macbookair10_1_thomaskaiser", "ioreg-accelerator.txt")
    line = next(line for line in m1.splitlines() if '"PerformanceStatistics"' in line)
    assert line.lstrip().startswith("|")
    assert usage.parse_ioreg_performance_statistics(line.split("|")[-1]) == usage.parse_ioreg_performance_statistics(m1)


def test_in_use_system_memory_driver_is_not_taken_for_in_use_system_memory():
    """hand-made: only the "(driver)" variant present -> no GPU memory figure at all."""
    text = '"PerformanceStatistics" = {"In use system memory (driver)"=123456789,"Device Utilization %"=40}'
    assert usage.parse_ioreg_performance_statistics(text) == {names.GPU_UTILIZATION: 40.0}


def test_a_cut_off_statistics_line_is_not_read():
    """hand-made: the M1 Pro line cut mid-number (no closing brace) -- its last figure could be wrong."""
    line = next(
        line
        for line in recorded("m1pro_macbookpro16_2021_stats1094", "ioreg-accelerator.txt").splitlines()
        if '"PerformanceStatistics"' in line
    )
    cut = line[: line.index("340983808") + 4] + "\n"
    assert usage.parse_ioreg_performance_statistics(cut) == {}


def test_statistics_without_the_keys_or_without_a_dictionary_give_nothing():
    """hand-made: an accelerator without those keys (e.g. a VM's), other dictionaries, no output."""
    assert usage.parse_ioreg_performance_statistics('"PerformanceStatistics" = {"Tiler Utilization %"=3}') == {}
    assert usage.parse_ioreg_performance_statistics('"OtherStatistics" = {"Device Utilization %"=99}') == {}
    assert usage.parse_ioreg_performance_statistics("") == {}
    # the first dictionary that has the figures is read, not a same-named key elsewhere
    text = (
        '"OtherStatistics" = {"Device Utilization %"=99}\n'
        '"PerformanceStatistics" = {"Tiler Utilization %"=1}\n'
        '"PerformanceStatistics" = {"Device Utilization %"=8}\n'
    )
    assert usage.parse_ioreg_performance_statistics(text) == {names.GPU_UTILIZATION: 8.0}


# ----------------------------------------------------------------- macmon


def test_macmon_pipe_line_from_beszel_1796():
    """Verbatim `macmon pipe -i 1000` line (16 GB Apple Silicon Mac): all_power is the package figure."""
    values = usage.parse_macmon_line(recorded("applesilicon_16gb_macmon_beszel1796", "macmon-pipe.txt"))
    assert values == {
        names.CPU_POWER_WATTS: 0.25233203172683716,
        names.GPU_POWER_WATTS: 0.004442947451025248,
        names.PACKAGE_POWER_WATTS: 0.25677499175071716,
        names.CPU_TEMPERATURE_C: 44.509185791015625,
    }


def test_macmon_gpu_temperature_zero_means_no_sensor_not_zero_degrees():
    """The recording's "gpu_temp_avg":0.0 is macmon's average over no sensor: it is not logged."""
    values = usage.parse_macmon_line(recorded("applesilicon_16gb_macmon_beszel1796", "macmon-pipe.txt"))
    assert names.GPU_TEMPERATURE_C not in values
    # nor is the frequency-scaled "gpu_usage" pair taken for a utilisation
    assert names.GPU_UTILIZATION not in values


def test_macmon_08_active_ratio_is_the_gpu_utilization():
    """hand-made (macmon 0.8 field names, values invented): gpu_active_ratio 0.42 -> 42 %."""
    line = (
        '{"cpu_power":1.5,"gpu_power":3.25,"all_power":4.75,"sys_power":20.0,'
        '"temp":{"cpu_temp_avg":51.5,"gpu_temp_avg":47.0},"gpu_scaled_ratio":0.1,"gpu_active_ratio":0.42,'
        '"gpu_usage":[900,0.1]}'
    )
    assert usage.parse_macmon_line("\n" + line + "\n") == {
        names.CPU_POWER_WATTS: 1.5,
        names.GPU_POWER_WATTS: 3.25,
        names.PACKAGE_POWER_WATTS: 4.75,
        names.CPU_TEMPERATURE_C: 51.5,
        names.GPU_TEMPERATURE_C: 47.0,
        names.GPU_UTILIZATION: pytest.approx(42.0),
    }


def test_macmon_missing_or_odd_fields_are_left_out_and_non_json_is_an_error():
    """hand-made: missing keys, a string, a boolean, a ratio above 1, then two non-JSON outputs."""
    line = '{"cpu_power":"n/a","gpu_power":true,"temp":{"cpu_temp_avg":null},"gpu_active_ratio":1.7}'
    assert usage.parse_macmon_line(line) == {}
    with pytest.raises(ValueError):
        usage.parse_macmon_line('{"cpu_power":0.2,"gpu_po')  # cut off
    with pytest.raises(ValueError):
        usage.parse_macmon_line("")
    with pytest.raises(ValueError):
        usage.parse_macmon_line("[1, 2]")


# ----------------------------------------------------------------- memory pressure


def test_vm_pressure_level_recorded_light_and_heavy_load():
    """Verbatim `sysctl ... kern.memorystatus_vm_pressure_level` outputs (OS X 10.10.2): 1 -> 0, 4 -> 2."""
    directory = "mac_yosemite_10_10_2_superunix_memory_pressure"
    light = usage.parse_vm_pressure_level(recorded(directory, "sysctl-memory-pressure-light.txt"))
    heavy = usage.parse_vm_pressure_level(recorded(directory, "sysctl-memory-pressure-heavy.txt"))
    assert light == {names.MEMORY_PRESSURE: 0.0}
    assert heavy == {names.MEMORY_PRESSURE: 2.0}


def test_vm_pressure_level_bare_form_and_unknown_levels():
    """hand-made: the `-n` form the reader runs prints the number alone; 1/2/4 are the only levels."""
    assert usage.parse_vm_pressure_level("1\n") == {names.MEMORY_PRESSURE: 0.0}
    assert usage.parse_vm_pressure_level("2\n") == {names.MEMORY_PRESSURE: 1.0}
    assert usage.parse_vm_pressure_level("4") == {names.MEMORY_PRESSURE: 2.0}
    for text in ("0", "3", "8", "", "sysctl: unknown oid 'kern.memorystatus_vm_pressure_level'", "vm.memory_pressure: 2"):
        assert usage.parse_vm_pressure_level(text) == {}, text


def test_psi_memory_bands():
    """hand-made PSI texts (the kernel's format): some avg10 below 10 -> 0, below 40 -> 1, else 2."""

    def psi(avg10: str) -> str:
        return f"some avg10={avg10} avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"

    assert usage.parse_psi_memory(psi("0.00")) == {names.MEMORY_PRESSURE: 0.0}
    assert usage.parse_psi_memory(psi("9.99")) == {names.MEMORY_PRESSURE: 0.0}
    assert usage.parse_psi_memory(psi("10.00")) == {names.MEMORY_PRESSURE: 1.0}
    assert usage.parse_psi_memory(psi("39.99")) == {names.MEMORY_PRESSURE: 1.0}
    assert usage.parse_psi_memory(psi("40.00")) == {names.MEMORY_PRESSURE: 2.0}
    assert usage.parse_psi_memory(psi("100.00")) == {names.MEMORY_PRESSURE: 2.0}
    # "full" is not "some": a text with only the full line gives nothing
    assert usage.parse_psi_memory("full avg10=55.00 avg60=0.00 avg300=0.00 total=9\n") == {}
    assert usage.parse_psi_memory("") == {}


def test_psi_reader_on_a_missing_file_and_an_unrecognised_one(tmp_path):
    with pytest.raises(ReaderUnavailable, match="pressure stall"):
        usage._read_psi_memory(tmp_path / "no-such-file")
    odd = tmp_path / "memory"
    odd.write_text("nothing here\n")  # hand-made
    with pytest.raises(RuntimeError, match="unrecognised"):
        usage._read_psi_memory(odd)


# ----------------------------------------------------------------- readers, for real on this host


def _in_fresh_thread(function, calls: int):
    results: list = []
    errors: list = []

    def run():
        try:
            for _ in range(calls):
                results.append(function())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_read_cpu_memory_for_real():
    """psutil on this host: the first call in a thread only primes the CPU baseline; then all four."""
    first, second = _in_fresh_thread(usage.read_cpu_memory, 2)
    assert names.CPU_UTILIZATION not in first
    assert set(second) == {names.CPU_UTILIZATION, names.MEMORY_USED_MB, names.MEMORY_USED_PERCENT, names.SWAP_USED_MB}
    assert 0.0 <= second[names.CPU_UTILIZATION] <= 100.0
    memory = psutil.virtual_memory()
    assert second[names.MEMORY_USED_MB] == pytest.approx(memory.used / 1e6, rel=0.2)
    assert 0.0 < second[names.MEMORY_USED_PERCENT] <= 100.0
    assert second[names.SWAP_USED_MB] == pytest.approx(psutil.swap_memory().used / 1e6, rel=0.5, abs=50)
    assert all(isinstance(value, float) for value in second.values())


@LINUX_ONLY
def test_read_memory_pressure_for_real():
    """Linux: PSI when this kernel has it, ReaderUnavailable when it has not -- never a guess."""
    try:
        expected = usage.parse_psi_memory(usage.PSI_MEMORY_PATH.read_text())
    except OSError:
        with pytest.raises(ReaderUnavailable):
            usage.read_memory_pressure()
        return
    got = usage.read_memory_pressure()
    assert set(got) == {names.MEMORY_PRESSURE}
    assert got[names.MEMORY_PRESSURE] in (0.0, 1.0, 2.0)
    assert abs(got[names.MEMORY_PRESSURE] - expected[names.MEMORY_PRESSURE]) <= 1.0  # read a moment apart


def test_read_nvidia_gpu_without_a_driver_is_unavailable():
    """This host has pynvml (nvidia-ml-py) but no NVIDIA driver: NVML cannot start."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - the expected case here
        with pytest.raises(ReaderUnavailable, match="NVML|pynvml"):
            usage.read_nvidia_gpu()
    else:  # a machine with a driver: GPU 0's figures, in MLflow's units
        pynvml.nvmlShutdown()
        values = usage.read_nvidia_gpu()
        assert values and set(values) <= {
            names.GPU_UTILIZATION,
            names.GPU_MEMORY_MB,
            names.GPU_MEMORY_PERCENT,
            names.GPU_POWER_WATTS,
        }


@pytest.mark.skipif(sys.platform == "darwin", reason="asserts the macOS readers cannot read off macOS")
def test_the_macos_readers_cannot_read_here():
    with pytest.raises(ReaderUnavailable, match="macOS only"):
        usage.read_apple_gpu()
    with pytest.raises(ReaderUnavailable, match="macOS only"):
        usage._read_vm_pressure_level()


def test_read_macmon_without_macmon_is_unavailable(monkeypatch, tmp_path):
    """No macmon on PATH (here: a PATH with nothing on it) -> ReaderUnavailable, nothing run."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ReaderUnavailable, match="macmon is not on PATH"):
        usage.read_macmon()


@pytest.mark.skipif(sys.platform == "darwin", reason="checks this non-macOS host has no macmon")
def test_read_macmon_on_this_host():
    import shutil

    if shutil.which("macmon") is None:
        with pytest.raises(ReaderUnavailable):
            usage.read_macmon()

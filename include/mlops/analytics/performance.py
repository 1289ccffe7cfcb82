"""The comparable performance figures of a training run and the identity of the machine it ran on.

Every family's run gets the same `perf/...` metrics (`mlops.analytics.names`) and `machine.*`
tags, so MLflow's run comparison puts Apple Silicon performance beside accuracy or loss for any
set of runs, and `mlops compare` groups runs by machine without reading hardware params.
A figure whose inputs were not read (no power source, no GPU reader) is left out, never zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops.analytics import names

if TYPE_CHECKING:
    from mlops.analytics.sampler import HardwareSampler
    from mlops.hardware.model import HardwareProfile
    from mlops.training.loop import EpochReport


def machine_tags(profile: HardwareProfile, device: str) -> dict[str, str]:
    """`machine.*` tags: chip, GPU cores, memory and MLX device, and one id joining them."""
    chip = str(profile.chip if profile.chip != "unknown" else profile.cpu_brand)
    gpu_cores = str(profile.gpu_cores)
    memory = profile.memory_total_gb
    return {
        names.MACHINE: machine_id(chip, gpu_cores, memory, device),
        names.MACHINE_CHIP: chip,
        names.MACHINE_GPU_CORES: gpu_cores,
        names.MACHINE_MEMORY_GB: memory,
        names.MACHINE_DEVICE: device,
    }


def machine_id(chip: str, gpu_cores: str, memory_gb: str, device: str) -> str:
    """One readable string per kind of machine, e.g. "Apple M2 Pro, 19 GPU cores, 16 GB, gpu"."""
    parts = [chip]
    if gpu_cores != "unknown":
        parts.append(f"{gpu_cores} GPU cores")
    if memory_gb != "unknown":
        parts.append(f"{float(memory_gb):.0f} GB")
    parts.append(device)
    return ", ".join(parts)


def run_figures(
    reports: list[EpochReport],
    peak_memory_bytes: int,
    weights_bytes: int | None,
    sampler: HardwareSampler | None = None,
) -> dict[str, float]:
    """The `perf/...` metrics of one training run from its epochs, its memory and its samples."""
    samples = sum(r.samples for r in reports)
    seconds = sum(r.seconds for r in reports)
    steps = sum(r.steps for r in reports)
    figures: dict[str, float] = {names.TRAIN_SECONDS: seconds}
    if seconds > 0:
        figures[names.THROUGHPUT] = samples / seconds
    if steps:
        figures[names.STEP_TIME_MS] = 1000 * seconds / steps
    if peak_memory_bytes > 0:
        figures[names.PEAK_MEMORY_MB] = peak_memory_bytes / 1e6
        if names.THROUGHPUT in figures:
            figures[names.THROUGHPUT_PER_GB] = figures[names.THROUGHPUT] / (peak_memory_bytes / 1e9)
    if weights_bytes:
        figures[names.MODEL_FOOTPRINT_MB] = weights_bytes / 1e6
    if sampler is not None:
        figures.update(_sampled_figures(sampler, samples))
    return figures


def _sampled_figures(sampler: HardwareSampler, samples: int) -> dict[str, float]:
    means = sampler.means()
    figures: dict[str, float] = {}
    if names.GPU_UTILIZATION in means:
        figures[names.GPU_UTILIZATION_MEAN] = means[names.GPU_UTILIZATION]
    if names.CPU_UTILIZATION in means:
        figures[names.CPU_UTILIZATION_MEAN] = means[names.CPU_UTILIZATION]
    energy = sampler.energy_joules()
    if energy is not None and sampler.seconds > 0:
        figures[names.ENERGY_JOULES] = energy
        figures[names.POWER_MEAN_WATTS] = energy / sampler.seconds
        if samples:
            figures[names.ENERGY_PER_SAMPLE_J] = energy / samples
    throttled = sampler.throttled_share()
    if throttled is not None:
        figures[names.THROTTLED_SHARE] = throttled
    return figures

"""The names every analytics writer and reader agrees on: MLflow metric names and run tags.

One scheme for every model family, so MLflow's run comparison lines up Apple Silicon performance
beside accuracy or loss for any set of runs. Where MLflow's own system-metrics monitor has a name
(`mlflow/system_metrics/metrics/*.py`), the sampler uses it, so MLflow's UI charts it with its own.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- sampled during a task
#: Prefix of every sampled series (MLflow's own; its UI groups them under "system").
SYSTEM = "system/"
#: MLflow's names (CPUMonitor, GPUMonitor), without the prefix.
CPU_UTILIZATION = "cpu_utilization_percentage"
MEMORY_USED_MB = "system_memory_usage_megabytes"
MEMORY_USED_PERCENT = "system_memory_usage_percentage"
GPU_UTILIZATION = "gpu_0_utilization_percentage"
GPU_MEMORY_MB = "gpu_0_memory_usage_megabytes"
GPU_MEMORY_PERCENT = "gpu_0_memory_usage_percentage"
GPU_POWER_WATTS = "gpu_0_power_usage_watts"
#: Ours, where MLflow has none.
SWAP_USED_MB = "swap_usage_megabytes"
MEMORY_PRESSURE = "memory_pressure_level"  # 0 normal, 1 warning, 2 critical (macOS's levels; PSI mapped on Linux)
THERMAL_LEVEL = "thermal_level"  # 0 nominal, 1 fair, 2 serious, 3 critical (mlops.hardware.thermal.STATES)
MLX_ACTIVE_MB = "mlx_active_memory_megabytes"
MLX_PEAK_MB = "mlx_peak_memory_megabytes"
MLX_CACHE_MB = "mlx_cache_memory_megabytes"
CPU_POWER_WATTS = "cpu_power_watts"
PACKAGE_POWER_WATTS = "package_power_watts"  # the whole SoC (CPU + GPU + ANE + DRAM where the source says)
CPU_TEMPERATURE_C = "cpu_temperature_celsius"
GPU_TEMPERATURE_C = "gpu_temperature_celsius"

# --------------------------------------------------------------------------- one per training run
#: Prefix of the comparable figures logged once at the end of every training run.
PERF = "perf/"
THROUGHPUT = "perf/throughput_per_second"  # the family's unit (tag PERF_UNIT) per second of training
STEP_TIME_MS = "perf/step_time_ms"
TRAIN_SECONDS = "perf/train_seconds"
PEAK_MEMORY_MB = "perf/peak_memory_mb"
THROUGHPUT_PER_GB = "perf/throughput_per_second_per_gb"  # memory efficiency: throughput per GB of peak memory
MODEL_FOOTPRINT_MB = "perf/model_footprint_mb"
GPU_UTILIZATION_MEAN = "perf/gpu_utilization_mean_percent"
CPU_UTILIZATION_MEAN = "perf/cpu_utilization_mean_percent"
POWER_MEAN_WATTS = "perf/power_mean_watts"
ENERGY_JOULES = "perf/energy_joules"
ENERGY_PER_SAMPLE_J = "perf/energy_per_sample_joules"
THROTTLED_SHARE = "perf/thermal_throttled_share"  # share of samples at "serious" or worse

# --------------------------------------------------------------------------- tags
PERF_UNIT = "perf.throughput_unit"  # samples, tokens, images, ... (the family's throughput_unit)
MACHINE = "machine.id"  # one string per machine kind: chip, GPU cores, memory, device
MACHINE_CHIP = "machine.chip"
MACHINE_GPU_CORES = "machine.gpu_cores"
MACHINE_MEMORY_GB = "machine.memory_gb"
MACHINE_DEVICE = "machine.device"
TECHNIQUES = "mlops.techniques"  # "none" or "lora,quantization" (set by the trainer since issue 2)
PROJECT = "mlops.project"
QUALITY_METRIC = "mlops.quality_metric"  # the metric that gates registration (evaluation.metric or the family's first)
QUALITY_GOAL = "mlops.quality_goal"  # "max" or "min"
FAILURE_CAUSE = "mlops.failure_cause"  # set by the failure callback (operators.diagnostics.TAG_CAUSE)
KIND = "mlops.kind"  # absent on training runs; "monitoring" on the monitor's runs
#: The verdict of `mlops compare`, on the project's experiment and its registered model versions.
BEST_TECHNIQUE = "mlops.best_technique"  # experiment tag: JSON {machine id: technique}
BEST_TECHNIQUE_HERE = "mlops.best_technique_on_machine"  # model-version tag: "<technique> on <machine id> (objective)"
IS_BEST_TECHNIQUE = "mlops.is_best_technique"  # model-version tag: "true" when the version's technique is that one

"""A real MLflow registry (sqlite) in a throwaway MLOPS_HOME with trained, registered models to serve.

Reuses the serving tests' `train_and_register` (data -> train -> register through the library,
no Airflow). The machine reads "serious" from a fake thermal zone (MLOPS_HARDWARE_ROOT), so the
captured thermal state is known.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from monitoring_support import DIFFUSION, LOCAL, ROUTED, THERMAL_STATE, Registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_support import train_and_register  # noqa: E402


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    from mlops_testing import fake_thermal_zone

    from mlops.settings import Settings

    home = tmp_path_factory.mktemp("monitoring-home")
    hardware = fake_thermal_zone(tmp_path_factory.mktemp("hardware"), THERMAL_STATE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        mp.setenv("MLOPS_HARDWARE_ROOT", str(hardware))
        mp.delenv("MLOPS_TRACKING_URI", raising=False)
        mp.delenv("MLOPS_API_KEYS", raising=False)
        settings = Settings.from_env()
        versions = {
            LOCAL: train_and_register(settings, LOCAL, "mlp_classifier")["version"],
            ROUTED: train_and_register(settings, ROUTED, "mlp_classifier", seed=1)["version"],
            DIFFUSION: train_and_register(settings, DIFFUSION, "tiny_diffusion")["version"],
        }
    # the environment is back to the suite's: tests pass `registry.settings` explicitly.
    return Registry(settings=settings, home=home, versions=versions)

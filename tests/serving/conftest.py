"""A real MLflow registry (sqlite) in a throwaway MLOPS_HOME with two tiny trained, registered projects.

Trained through the library, as the lifecycle's steps do (data -> train -> register), but
without Airflow: `serve_mlp` (mlp_classifier) and `serve_diffusion` (tiny_diffusion).
"""

from __future__ import annotations

import pytest
from serving_support import DIFFUSION, MLP, Served, train_and_register


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    from mlops.settings import Settings

    home = tmp_path_factory.mktemp("serving-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        mp.delenv("MLOPS_TRACKING_URI", raising=False)
        mp.delenv("MLOPS_API_KEYS", raising=False)
        settings = Settings.from_env()
        versions = {
            MLP: [train_and_register(settings, MLP, "mlp_classifier")["version"]],
            DIFFUSION: [train_and_register(settings, DIFFUSION, "tiny_diffusion")["version"]],
        }
    # MLOPS_HOME is back to the suite's: the tests pass `served.settings` (or an env) explicitly.
    return Served(settings=settings, home=home, versions=versions)

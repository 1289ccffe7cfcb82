"""Two "machines" for the federated tests: `a` coordinates (its DVC remote and MLflow store are the
shared ones), `b` is another Mac with its own MLOPS_HOME that reaches only that remote and store."""

from __future__ import annotations

import pytest

from mlops.settings import Settings


@pytest.fixture(scope="session")
def machines(tmp_path_factory) -> tuple[Settings, Settings]:
    root = tmp_path_factory.mktemp("federated")
    a = Settings.from_env({"MLOPS_HOME": str(root / "a")})
    b = Settings.from_env(
        {"MLOPS_HOME": str(root / "b"), "MLOPS_DVC_REMOTE": a.dvc_remote, "MLOPS_TRACKING_URI": a.tracking_uri}
    )
    return a, b

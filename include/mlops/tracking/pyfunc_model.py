"""The MLflow pyfunc face of an MLX model folder, so the registry holds a loadable model."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class MLXModel(mlflow.pyfunc.PythonModel):
    """Restores the MLX model from the logged folder and calls it on array input."""

    def load_context(self, context: Any) -> None:
        from pathlib import Path

        from mlops.training.artifacts import restore_session

        self.session = restore_session(Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import mlx.core as mx
        import numpy as np

        inputs = mx.array(np.asarray(model_input))
        return np.array(self.session.model(inputs))

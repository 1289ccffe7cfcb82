"""One tabular view of model inputs and outputs, shared by prediction capture and drift checks.

Drift is computed column by column, so every array a model takes or gives is flattened the
same way whether it comes from a served request or from the training data in DVC:

* shape [B]           -> one column `<name>`
* float shape [B, F], F <= MAX_WIDTH -> columns `<name>_0 ... <name>_<F-1>`
* anything wider or deeper (images), and integer arrays (token ids, whose length may vary
  from request to request) -> summary columns `<name>_mean, <name>_std, <name>_min,
  <name>_max` over each row

Columns are float64 (int inputs too: drift tests treat them as numbers). Prediction logs
prefix inputs with `in.` and outputs with `out.` (`prefixed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MAX_WIDTH = 64
SUMMARIES = ("mean", "std", "min", "max")


def flatten(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Column name -> float64 vector of length B, per the rules in the module docstring."""
    import numpy as np

    columns: dict[str, np.ndarray] = {}
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        rows = array.shape[0]
        if array.ndim == 1:
            columns[name] = array.astype(np.float64)
        elif array.ndim == 2 and array.shape[1] <= MAX_WIDTH and array.dtype.kind == "f":
            for i in range(array.shape[1]):
                columns[f"{name}_{i}"] = array[:, i].astype(np.float64)
        else:
            flat = array.reshape(rows, -1).astype(np.float64)
            columns[f"{name}_mean"] = flat.mean(axis=1)
            columns[f"{name}_std"] = flat.std(axis=1)
            columns[f"{name}_min"] = flat.min(axis=1)
            columns[f"{name}_max"] = flat.max(axis=1)
    return columns


def prefixed(prefix: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}.{name}": values for name, values in columns.items()}


__all__ = ["MAX_WIDTH", "flatten", "prefixed"]

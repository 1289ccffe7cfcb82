"""The gateway's PyTorch fallback: registered versions that have a `pytorch` flavor but no MLX form.

PyTorch is an optional extra (`uv sync --extra pytorch`), never in the default environment:
PyPI's Linux torch is a multi-GB CUDA build. So torch is imported only inside the functions
that run a model; reading a version's MLmodel and turning its MLflow tensor signature into
the gateway's signature needs no torch.

A session runs the model on `cuda` when available, then `mps`, else `cpu`, in eval mode under
`torch.inference_mode`, with the signature's inputs passed positionally in signature order
(what `torch.export` programs, MLflow's default pytorch format, expect).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

INSTALL_HINT = (
    "install the optional PyTorch extra: `uv sync --extra pytorch` (on Linux PyPI's torch is the "
    "multi-GB CUDA build; a CPU-only machine can take the CPU wheel instead: "
    "`uv pip install torch --index-url https://download.pytorch.org/whl/cpu`)"
)
SIGNATURE_HINT = (
    "log the model with a tensor signature, e.g. "
    "`mlflow.pytorch.log_model(model, name=..., input_example=x, signature=infer_signature(x, y))` "
    "with numpy arrays x, y"
)
# MLflow tensor dtype -> (the gateway's validation dtype, the range an integer input must lie in)
FLOAT_DTYPES = {"float16", "float32", "float64"}
INT_RANGES: dict[str, tuple[int, int] | None] = {
    "int8": (-(2**7), 2**7),
    "uint8": (0, 2**8),
    "int16": (-(2**15), 2**15),
    "int32": None,  # the gateway's own int32 bounds
    "int64": None,
}


class SignatureProblem(ValueError):
    """The version's MLflow signature cannot drive the gateway's validation (the reason says why)."""


def torch_installed() -> bool:
    """Whether torch can be imported, without importing it (seconds, and GBs of libraries)."""
    return importlib.util.find_spec("torch") is not None


def missing_torch_reason() -> str:
    return f"PyTorch is not installed; {INSTALL_HINT}"


def preferred_device() -> str:
    """`cuda` when available, then `mps`, else `cpu`."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class TensorContract:
    """The gateway signature of a pytorch version plus what the model itself takes."""

    signature: dict[str, Any]  # {"inputs": {name: spec}, "outputs": {name: spec}}, the gateway's format
    input_dtypes: dict[str, str]  # input name -> the numpy dtype the model takes, in call order

    @property
    def output_names(self) -> list[str]:
        return list(self.signature["outputs"])


def _names(specs: list[Any], stem: str) -> list[str]:
    """MLflow allows one or several unnamed tensors: call them `input`/`input_0`, ... (`output` likewise)."""
    if all(spec.name for spec in specs):
        return [str(spec.name) for spec in specs]
    return [stem] if len(specs) == 1 else [f"{stem}_{i}" for i in range(len(specs))]


def _input_spec(name: str, dtype: str, shape: tuple[int, ...]) -> dict[str, Any]:
    if not shape:
        raise SignatureProblem(f"input {name!r} is a scalar tensor; the gateway needs a batch axis first")
    if dtype in FLOAT_DTYPES:
        return {"dtype": "float32", "shape": list(shape)}
    if dtype in INT_RANGES:
        spec: dict[str, Any] = {"dtype": "int32", "shape": list(shape)}
        if INT_RANGES[dtype] is not None:
            spec["range"] = list(INT_RANGES[dtype])
        return spec
    raise SignatureProblem(
        f"input {name!r} is a {dtype} tensor; the gateway takes float16/32/64 and "
        f"int8/16/32/64/uint8 tensors"
    )


def contract_from_mlmodel(mlmodel: dict[str, Any]) -> TensorContract:
    """The gateway signature from the MLmodel's MLflow tensor signature, or SignatureProblem."""
    from mlflow.models.signature import ModelSignature

    if not mlmodel.get("signature") or not mlmodel["signature"].get("inputs"):
        raise SignatureProblem(f"it has no input signature, so requests cannot be validated; {SIGNATURE_HINT}")
    signature = ModelSignature.from_dict(mlmodel["signature"])
    if not signature.inputs.is_tensor_spec():
        raise SignatureProblem(f"its signature is column-based, not tensors; {SIGNATURE_HINT}")
    input_specs = signature.inputs.inputs
    inputs, dtypes = {}, {}
    for name, spec in zip(_names(input_specs, "input"), input_specs):
        inputs[name] = _input_spec(name, spec.type.name, tuple(spec.shape))
        dtypes[name] = spec.type.name
    outputs = {}
    if signature.outputs is not None and signature.outputs.is_tensor_spec():
        output_specs = signature.outputs.inputs
        for name, spec in zip(_names(output_specs, "output"), output_specs):
            kind = spec.type.name
            dtype = "float32" if kind in FLOAT_DTYPES else "int32" if kind in INT_RANGES else kind
            outputs[name] = {"dtype": dtype, "shape": list(spec.shape)}
    return TensorContract({"inputs": inputs, "outputs": outputs}, dtypes)


def read_mlmodel(folder: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((folder / "MLmodel").read_text())


class TorchSession:
    """A loaded pytorch model with `TrainingSession.predict`'s contract: named arrays in and out."""

    def __init__(self, model: Any, device: str, contract: TensorContract):
        self.model, self.device, self.contract = model, device, contract

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        tensors = [
            torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=dtype)).to(self.device)
            for name, dtype in self.contract.input_dtypes.items()
        ]
        with torch.inference_mode():
            result = self.model(*tensors)
        return self._named(result)

    def _named(self, result: Any) -> dict[str, np.ndarray]:
        """Outputs by name: a tensor, a tuple/list of tensors (signature order) or a dict of tensors."""
        import torch

        def to_numpy(tensor: Any) -> np.ndarray:
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"the model returned a {type(tensor).__name__}, expected tensors")
            tensor = tensor.detach().to("cpu")
            return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()

        names = self.contract.output_names
        if isinstance(result, dict):
            return {str(name): to_numpy(value) for name, value in result.items()}
        if isinstance(result, (tuple, list)):
            if len(names) != len(result):
                names = [f"output_{i}" for i in range(len(result))]
            return {name: to_numpy(value) for name, value in zip(names, result)}
        return {names[0] if len(names) == 1 else "output": to_numpy(result)}


def load_torch_session(folder: Path) -> TorchSession:
    """Load the MLflow pytorch model in `folder` (a downloaded model version) for inference.

    A `torch.export` program (`.pt2`) cannot be moved across devices: when it was saved on another
    device than the preferred one it runs where it was saved. Pickled models load only while
    MLflow allows pickles (MLFLOW_ALLOW_PICKLE_DESERIALIZATION, on by default; refused, MLflow says so).
    """
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    mlmodel = read_mlmodel(folder)
    contract = contract_from_mlmodel(mlmodel)
    exported = (folder / mlmodel["flavors"]["pytorch"]["model_data"] / "model.pt2").is_file()
    device = preferred_device()
    try:
        # weights_only=False: a pickled nn.Module is not a plain tensor file (MLflow's own pyfunc does the same)
        model = mlflow.pytorch.load_model(str(folder), device=device, weights_only=False)
    except MlflowException:
        if not exported or device == "cpu":
            raise
        model = mlflow.pytorch.load_model(str(folder))
        device = next((str(p.device) for p in model.parameters()), "cpu")
    if not exported:
        model.eval()  # MLflow does it too; an exported program refuses eval() and has no training mode
    return TorchSession(model, device, contract)

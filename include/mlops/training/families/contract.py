"""Does a class fulfil the `ModelFamily` contract? Each problem as a sentence its author can act on.

Checked when a family is imported (`get_family`) and by `mlops validate`, so a family from
outside the platform fails with "what is missing" instead of an AttributeError three tasks later.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

# class attribute -> (type it must have, what it is for)
REQUIRED_ATTRIBUTES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "name": (str, "a short name shown in `mlops families`"),
    "description": (str, "one line saying what the model does"),
    "metrics": (dict, 'every metric `evaluate` returns -> "max" or "min"'),
    "default_hyperparameters": (dict, "hyperparameter name -> default value"),
}


def contract_problems(family_class: Any) -> list[str]:
    """Why `family_class` cannot serve as a model family (empty when it can)."""
    from mlops.training.families.base import ModelFamily

    if not inspect.isclass(family_class):
        return [f"{family_class!r} is not a class"]
    if not issubclass(family_class, ModelFamily):
        return [f"{family_class.__qualname__} must subclass mlops.training.families.base.ModelFamily"]
    problems = []
    missing = sorted(getattr(family_class, "__abstractmethods__", ()))
    if missing:
        problems.append(f"{family_class.__qualname__} does not implement {', '.join(missing)}")
    for attribute, (kind, meaning) in REQUIRED_ATTRIBUTES.items():
        value = getattr(family_class, attribute, None)
        if not isinstance(value, kind):
            problems.append(f"class attribute {attribute!r} must be a {kind.__name__} ({meaning})")
    metrics = getattr(family_class, "metrics", None)
    if isinstance(metrics, dict):
        if not metrics:
            problems.append("`metrics` must name at least one metric (the first gates registration by default)")
        bad = [name for name, goal in metrics.items() if goal not in ("max", "min")]
        if bad:
            problems.append(f"metrics {', '.join(map(repr, bad))} must map to 'max' or 'min'")
    return problems


def signature_problems(signature: Any) -> list[str]:
    """What is wrong with a family's declared serving signature (see `ModelFamily.signature`)."""
    if not isinstance(signature, dict) or set(signature) != {"inputs", "outputs"}:
        return ['signature() must return {"inputs": {...}, "outputs": {...}}']
    problems = []
    for side in ("inputs", "outputs"):
        specs = signature[side]
        if not isinstance(specs, dict) or not specs:
            problems.append(f"signature {side} must map at least one name to a spec")
            continue
        for name, spec in specs.items():
            where = f"signature {side}.{name}"
            if not isinstance(spec, dict):
                problems.append(f"{where} must be a mapping with dtype and shape")
                continue
            if spec.get("dtype") not in ("float32", "int32"):
                problems.append(f"{where}.dtype must be 'float32' or 'int32', not {spec.get('dtype')!r}")
            shape = spec.get("shape")
            if not (isinstance(shape, list) and shape and all(isinstance(d, int) and (d > 0 or d == -1) for d in shape)):
                problems.append(f"{where}.shape must be a list of sizes (-1: batch or any length), not {shape!r}")
            elif shape[0] != -1:
                problems.append(f"{where}.shape must start with -1 (the batch axis)")
    return problems


def output_problems(signature: dict[str, Any], outputs: Any, rows: int) -> list[str]:
    """How `predict`'s answer for `rows` rows breaks the declared `signature["outputs"]` (empty when it keeps it)."""
    if not isinstance(outputs, dict):
        return [f"predict() must return a dict of named arrays, not {type(outputs).__name__}"]
    declared = signature["outputs"]
    problems = [f"predict() returned no output {name!r}" for name in declared if name not in outputs]
    problems += [f"predict() returned {name!r}, which the signature does not declare" for name in outputs if name not in declared]
    for name, spec in declared.items():
        if name not in outputs:
            continue
        value = outputs[name]
        dtype, shape = str(getattr(value, "dtype", type(value).__name__)), tuple(getattr(value, "shape", ()))
        if dtype != spec["dtype"]:
            problems.append(f"output {name!r} has dtype {dtype}, the signature declares {spec['dtype']}")
        expected = [rows, *spec["shape"][1:]]
        if len(shape) != len(expected) or any(e not in (-1, s) for e, s in zip(expected, shape)):
            problems.append(f"output {name!r} has shape {list(shape)} for {rows} rows, the signature declares {spec['shape']}")
    return problems


class FamilyCodeError(RuntimeError):
    """A family's own code failed in a step: the message names the project, the family and where it came from."""


@contextlib.contextmanager
def family_step(project: str, ref: str, origin: str, step: str) -> Iterator[None]:
    """Run one call into family code; any exception becomes a `FamilyCodeError` naming who and where.

    The original exception stays chained (`raise ... from`), so the task log keeps its traceback.
    """
    where = f"project {project!r}: model family {ref!r} ({origin}) failed in {step}"
    try:
        yield
    except FamilyCodeError:
        raise
    except MemoryError as exc:  # the machine's limit, not a bug in the family: diagnosed as out of memory
        exc.add_note(where)
        raise
    except Exception as exc:
        raise FamilyCodeError(f"{where}: {type(exc).__name__}: {exc}") from exc


def check_predict(session: Any, family: Any, data: dict[str, Any], hyperparameters: dict[str, Any], rows: int = 2) -> list[str]:
    """Predict on the first `rows` training rows and compare the answer with the declared signature.

    Empty for a family that declares no signature (it cannot be served; `mlops validate` says so
    when serving is enabled).
    """
    signature = declared_signature(family, hyperparameters)
    if signature is None:
        return []
    inputs = {name: value[:rows] for name, value in family.reference_inputs(data, hyperparameters).items()}
    return output_problems(signature, session.predict(inputs), rows)


def declared_signature(family: Any, hyperparameters: dict[str, Any]) -> dict[str, Any] | None:
    """The family's serving signature, or None when it declares none (it cannot be served)."""
    try:
        return family.signature(hyperparameters)
    except NotImplementedError:
        return None

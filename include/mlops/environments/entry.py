"""The child side of `run_in_environment`: call one function inside an isolated environment.

    <env>/bin/python -P -m mlops.environments.entry CALL.json RESULT.json

CALL.json holds `{"target": "module:function", "kwargs": {...}}`. The outcome is written to
RESULT.json (never to stdout, which belongs to the user's code and is streamed to the caller's
log): `{"ok": true, "result": ...}`, or `{"ok": false, "type": ..., "message": ..., "traceback": ...}`
for an exception (SystemExit included), a target that does not import, or a result JSON cannot
encode. The exit status is 0 whenever RESULT.json was written.

Standard library only: the environment holds the project's packages, not the platform's.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback


def resolve(target: str):
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"target {target!r}: expected 'module:function'")
    value = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    if not callable(value):
        raise TypeError(f"target {target!r} is not callable")
    return value


def _failure(exc: BaseException) -> dict:
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"ok": False, "type": name, "message": str(exc), "traceback": traceback.format_exc()}


def main(argv: list[str]) -> int:
    call_path, result_path = argv
    with open(call_path) as handle:
        call = json.load(handle)
    logging.basicConfig(level=call.get("log_level", logging.INFO), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        result = resolve(call["target"])(**call.get("kwargs", {}))
        try:
            text = json.dumps({"ok": True, "result": result})
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the result of {call['target']} cannot cross the boundary as JSON: {exc}") from exc
    except (Exception, SystemExit) as exc:
        text = json.dumps(_failure(exc))
    sys.stdout.flush()
    sys.stderr.flush()
    partial = f"{result_path}.partial"
    with open(partial, "w") as handle:
        handle.write(text)
    os.replace(partial, result_path)  # the caller reads a whole result or none
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run one library function inside an isolated environment, as if it were called here.

`run_in_environment(python, "module:function", kwargs)` starts
`<python> -P -m mlops.environments.entry` (see `entry`), which imports the target and calls it
with the keyword arguments. Across the boundary:

* **Code.** The platform's library comes from source (`PYTHONPATH=<repo>/include:<repo>`), never
  installed into the environment; everything else the function imports comes from the environment
  alone. The child's `sys.path` is the base interpreter's standard library, PYTHONPATH and the
  environment's site-packages: `-P` drops the working directory, the environment has no system
  site packages (and so no user site), and the caller's PYTHONPATH, PYTHONHOME and VIRTUAL_ENV
  are replaced. A PYTHONPATH passed in `env` goes first (a project's own code), but one naming a
  site-packages folder of this interpreter is refused: the shared layer must not leak in.
* **Data.** Keyword arguments and the result travel as JSON through files in a private temporary
  folder (not through stdout, which the user's code prints to): JSON types only.
* **Output.** The child's stdout and stderr are streamed line by line to `logger` as they come
  (so an Airflow task log shows them live); the child's logging goes to its stderr at INFO.
* **Errors.** An exception inside is raised here as `IsolatedRunError`, carrying the remote type
  name, message and traceback text. So are a child that dies without a result (a crash, a signal)
  and a timeout (type name "TimeoutError"; the child is killed). If the caller is interrupted
  while waiting (Airflow stopping the task), the child is killed before the exception propagates.
* **Environment variables.** Inherited (MLOPS_*, MLflow and DVC settings, cloud credentials: the
  function still tracks into the shared MLflow and pulls from the shared DVC remote), with the
  environment's `bin/` first on PATH and the shared venv's `bin/` removed from it; `env` adds or
  overrides.
"""

from __future__ import annotations

import json
import logging
import os
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from mlops.settings import REPO_ROOT

log = logging.getLogger(__name__)

ENTRY = "mlops.environments.entry"
_DROPPED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONUSERBASE",
            "PYTHONSAFEPATH", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


class IsolatedRunError(RuntimeError):
    """The function failed inside its environment (or the child process did).

    `type_name` is the remote exception's type ("ValueError", "mypkg.errors.BadData";
    "TimeoutError" for a timeout, "ProcessExit" for a child that died without a result),
    `message` its message, `remote_traceback` the child's formatted traceback.
    """

    def __init__(self, target: str, type_name: str, message: str, remote_traceback: str = "",
                 returncode: int | None = None):
        self.target = target
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.returncode = returncode
        text = f"{target} raised {type_name}: {message}" if message else f"{target} raised {type_name}"
        if remote_traceback:
            text += f"\n--- traceback in the isolated environment ---\n{remote_traceback.rstrip()}"
        super().__init__(text)

    def __reduce__(self):  # picklable (Airflow and multiprocessing carry exceptions across processes)
        return type(self), (self.target, self.type_name, self.message, self.remote_traceback, self.returncode)


def run_in_environment(python: Path | str, target: str, kwargs: Mapping[str, Any], *,
                       env: Mapping[str, str] | None = None, timeout: float | None = None,
                       logger: logging.Logger | None = None) -> Any:
    """Call `target` ("module:function") with `kwargs` under the interpreter `python`; its result.

    `python` is an environment's interpreter (`ensure_environment`'s answer). Raises
    IsolatedRunError for anything that goes wrong on the other side, TypeError here if `kwargs`
    are not JSON.
    """
    logger = logger or log
    child_env = child_environment(python, env)
    with tempfile.TemporaryDirectory(prefix="mlops-run-") as tmp:
        call_path, result_path = Path(tmp, "call.json"), Path(tmp, "result.json")
        call_path.write_text(json.dumps({"target": target, "kwargs": dict(kwargs),
                                         "log_level": logging.INFO}))
        process = subprocess.Popen(
            [str(python), "-P", "-m", ENTRY, str(call_path), str(result_path)],
            env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        pumps = [threading.Thread(target=_pump, args=(stream, logger), daemon=True)
                 for stream in (process.stdout, process.stderr)]
        for pump in pumps:
            pump.start()
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(process, pumps)
            raise IsolatedRunError(target, "TimeoutError", f"no result after {timeout:g} s: the process was killed",
                                   returncode=process.returncode) from None
        except BaseException:
            _kill(process, pumps)
            raise
        for pump in pumps:
            pump.join(timeout=5)  # a grandchild the function left running may hold the pipes open
        try:
            outcome = json.loads(result_path.read_text())
        except FileNotFoundError:
            raise IsolatedRunError(target, "ProcessExit", f"the process exited with status {returncode} "
                                   "without a result (see its output above)", returncode=returncode) from None
    if outcome.get("ok"):
        return outcome.get("result")
    raise IsolatedRunError(target, outcome.get("type", "Exception"), outcome.get("message", ""),
                           outcome.get("traceback", ""), returncode=returncode)


def child_environment(python: Path | str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables of a child running under `python` (see the module docstring)."""
    root = Path(python).parent.parent  # <env>/bin/python -> <env> (no resolve: bin/python is a symlink)
    extra = dict(env or {})
    paths = [p for p in extra.pop("PYTHONPATH", "").split(os.pathsep) if p]
    shared = _shared_site_packages()
    for entry in paths:
        if os.path.realpath(entry) in shared:
            raise ValueError(f"PYTHONPATH entry {entry} is a site-packages folder of the shared environment: "
                             "an isolated environment must not see the shared layer")
    paths += [str(REPO_ROOT / "include"), str(REPO_ROOT)]
    child = {name: value for name, value in os.environ.items() if name not in _DROPPED}
    shared_bin = os.path.realpath(Path(sys.prefix) / "bin") if sys.prefix != sys.base_prefix else None
    path = [p for p in child.get("PATH", os.defpath).split(os.pathsep) if p and os.path.realpath(p) != shared_bin]
    child.update(extra)
    child.update({
        "PYTHONPATH": os.pathsep.join(paths),
        "VIRTUAL_ENV": str(root),
        "PATH": os.pathsep.join([str(root / "bin"), *path]),
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",  # the user's prints reach the log as they happen
    })
    return child


def _shared_site_packages() -> set[str]:
    """Site-packages folders of this interpreter: the shared venv's, its base installation's, the user site."""
    folders = set(site.getsitepackages()) | {site.getusersitepackages()}
    for base in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        folders |= {sysconfig.get_paths(vars=base)[name] for name in ("purelib", "platlib")}
    return {os.path.realpath(folder) for folder in folders}


def _pump(stream: IO[bytes], logger: logging.Logger) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            logger.info("%s", raw.decode(errors="replace").rstrip("\n"))


def _kill(process: subprocess.Popen, pumps: list[threading.Thread]) -> None:
    process.kill()
    process.wait()
    for pump in pumps:
        pump.join(timeout=5)  # a grandchild the function started may still hold the pipes open

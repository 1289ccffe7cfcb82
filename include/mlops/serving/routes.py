"""The route table: which deployed version serves each project, and where (one JSON file).

`<state>/serving/routes.json` = {"generation": n, "routes": {project: Route}}. The deployer
writes it (whole file, `os.replace`: readers see the old table or the new one, never half);
the gateway re-reads it when its mtime changes. A switch is therefore atomic: every request
the gateway accepts after it noticed generation n goes to generation n's targets.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.settings import Settings


@dataclass(frozen=True)
class Route:
    project: str
    version: int
    url: str  # where POST {"inputs": ...} goes
    backend: str = "ray"  # "ray" (answers {"outputs": ...}) | "bentoml" (a Bento's /predict: the columns)
    app: str = ""  # Ray Serve application name (what the deployer deletes when draining)
    device: str = "cpu"
    replicas: dict[str, Any] = field(default_factory=dict)  # min, max, memory_bytes per replica
    deployed_at: float = 0.0


def routes_file(settings: Settings) -> Path:
    return settings.home / "serving" / "routes.json"


def read_routes(path: Path) -> tuple[int, dict[str, Route]]:
    """(generation, routes); an absent file is generation 0 with no routes."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return 0, {}
    return int(data.get("generation", 0)), {name: Route(**r) for name, r in data.get("routes", {}).items()}


_write_lock = threading.Lock()


def write_route(settings: Settings, route: Route | None, project: str | None = None) -> int:
    """Set (or, with `route=None`, remove) one project's route; returns the new generation.

    Read-modify-write under an flock, so two deployers of different projects never lose
    each other's routes.
    """
    import fcntl

    path = routes_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _write_lock, open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        generation, routes = read_routes(path)
        if route is not None:
            routes[route.project] = route
        else:
            routes.pop(project or "", None)
        generation += 1
        body = {"generation": generation, "routes": {name: asdict(r) for name, r in sorted(routes.items())}}
        fd, staging = tempfile.mkstemp(prefix=".routes-", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=2)
        os.replace(staging, path)
    return generation


class RouteWatcher:
    """The gateway's view of the table: re-read when the file changes (checked at most every `interval`)."""

    def __init__(self, path: Path, interval: float = 0.1):
        self.path, self.interval = path, interval
        self.generation, self.routes = 0, {}
        # time.monotonic() just after `routes` were read: every version they name was registered by then
        # (a deployer registers, then writes the route), so a registry scan started later lists it
        self.loaded_at = 0.0
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    def current(self) -> dict[str, Route]:
        now = time.monotonic()
        if now - self._checked >= self.interval:
            self._checked = now
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_ino)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                self._stamp = stamp
                self.generation, self.routes = read_routes(self.path)
                self.loaded_at = time.monotonic()
        return self.routes


__all__ = ["Route", "RouteWatcher", "read_routes", "routes_file", "write_route"]

"""Request ids for captured predictions, and what the last of them were (for the feedback route).

Why: the gateway used to remember its last 100k ids in an OrderedDict of id -> (project, rows).
That is three new objects per request kept alive for 100k requests, a dict that grows and churns
with load: about 5 us of a 150 us request at concurrency 32 (`bench/capture.py`, the `idonly`
variant). Here an id is 24 random hex digits (96 bits, from `os.urandom`, drawn 4,096 ids at a
time) then 8 hex digits of a sequence number. The sequence number picks a slot in a ring of
preallocated arrays that keeps the random part, the project and the row count: nothing outlives
its request, and a feedback's id is checked in O(1).

An id is known while its slot has not been reused, i.e. for the last `capacity` ids; the random
part makes ids unguessable, so a client cannot attach labels to another client's request.
"""

from __future__ import annotations

import os
from array import array

RANDOM_BYTES = 12  # 96 random bits: hex digits 0-23 of an id
POOL_IDS = 4096  # ids drawn per os.urandom call (one syscall per request cost 0.4 us)
HEX_DIGITS = frozenset("0123456789abcdef")


class RecentRequests:
    """Makes request ids and remembers (project, rows) of the last `capacity` (rounded up to a power of two)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = 1 << (capacity - 1).bit_length()  # divides 2**32: the 8-digit sequence finds its slot
        self._random = bytearray(RANDOM_BYTES * self.capacity)
        self._sequence = array("q", [-1]) * self.capacity  # the full sequence number in each slot; -1: empty
        self._rows = array("q", [0]) * self.capacity
        self._project = array("l", [0]) * self.capacity  # index into _projects
        self._projects: list[str] = []
        self._project_index: dict[str, int] = {}
        self._pool, self._pool_at = b"", 0
        self._next = 0

    def new(self, project: str, rows: int) -> str:
        """A fresh id for a prediction of `rows` rows of `project`."""
        at = self._pool_at
        if at >= len(self._pool):
            self._pool, at = os.urandom(RANDOM_BYTES * POOL_IDS), 0
        self._pool_at = at + RANDOM_BYTES
        random = self._pool[at : at + RANDOM_BYTES]
        sequence = self._next
        self._next = sequence + 1
        slot = sequence & (self.capacity - 1)
        start = slot * RANDOM_BYTES
        self._random[start : start + RANDOM_BYTES] = random
        self._sequence[slot] = sequence
        self._rows[slot] = rows
        index = self._project_index.get(project)
        if index is None:
            index = self._project_index[project] = len(self._projects)
            self._projects.append(project)
        self._project[slot] = index
        return f"{random.hex()}{sequence & 0xFFFFFFFF:08x}"

    def get(self, request_id: str) -> tuple[str, int] | None:
        """(project, rows) of a recent id, or None for an id this gateway did not make or no longer remembers."""
        if len(request_id) != 2 * RANDOM_BYTES + 8 or not HEX_DIGITS.issuperset(request_id):
            return None
        sequence = int(request_id[2 * RANDOM_BYTES :], 16)
        slot = sequence & (self.capacity - 1)
        start = slot * RANDOM_BYTES
        stored = self._sequence[slot]
        if stored < 0 or stored & 0xFFFFFFFF != sequence or self._random[start : start + RANDOM_BYTES] != bytes.fromhex(request_id[: 2 * RANDOM_BYTES]):
            return None
        return self._projects[self._project[slot]], self._rows[slot]

    def __len__(self) -> int:
        """How many ids are remembered now."""
        return min(self._next, self.capacity)


__all__ = ["RecentRequests"]

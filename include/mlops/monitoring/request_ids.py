"""Request ids for captured predictions, and what the last of them were (for the feedback route).

Why: the gateway used to remember its last 100k ids in an OrderedDict of id -> (project, rows):
three new objects per request kept alive for 100k requests, in a dict that grows and churns with
load. Here an id is 24 random hex digits (96 bits, from `os.urandom`, drawn 4,096 ids at a time)
then 8 hex digits of a sequence number: making one is a slice and a format on the request path.
The prediction log's writer `remember`s it later, in the slot its sequence number picks in a ring
of preallocated arrays (the random part, the project, the row count): nothing outlives its
request, and a feedback's id is checked in O(1).

An id is known while its slot has not been reused, i.e. for the last `capacity` ids; the random
part makes ids unguessable, so a client cannot attach labels to another client's request.
"""

from __future__ import annotations

import itertools
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
        self._sequence = array("q", [-1]) * self.capacity  # the sequence number (8 hex digits) in each slot; -1: empty
        self._rows = array("q", [0]) * self.capacity
        self._project = array("l", [0]) * self.capacity  # index into _projects
        self._projects: list[str] = []
        self._project_index: dict[str, int] = {}
        self._pool = ""  # random hex digits for POOL_IDS ids
        self._counter = itertools.count()
        self._remembered = 0

    def make_id(self) -> str:
        """A fresh id (the request path: a slice of the random pool and the next sequence number)."""
        sequence = next(self._counter)  # itertools.count: atomic, so ids stay unique across threads
        at = (sequence % POOL_IDS) * 2 * RANDOM_BYTES
        if at == 0:
            self._pool = os.urandom(RANDOM_BYTES * POOL_IDS).hex()
        return self._pool[at : at + 2 * RANDOM_BYTES] + "%08x" % (sequence & 0xFFFFFFFF)

    def remember(self, request_id: str, project: str, rows: int) -> None:
        """Keep (project, rows) of an id `make_id` gave, in its sequence number's slot (off the request path).

        Ids of another form (a caller's own) are not kept: `get` cannot find them anyway.
        """
        if not _well_formed(request_id):
            return
        sequence = int(request_id[2 * RANDOM_BYTES :], 16)
        slot = sequence & (self.capacity - 1)
        start = slot * RANDOM_BYTES
        self._random[start : start + RANDOM_BYTES] = bytes.fromhex(request_id[: 2 * RANDOM_BYTES])
        self._sequence[slot] = sequence
        self._rows[slot] = rows
        index = self._project_index.get(project)
        if index is None:
            index = self._project_index[project] = len(self._projects)
            self._projects.append(project)
        self._project[slot] = index
        self._remembered += 1

    def get(self, request_id: str) -> tuple[str, int] | None:
        """(project, rows) of a recent id, or None for an id this gateway did not make or no longer remembers."""
        if not _well_formed(request_id):
            return None
        sequence = int(request_id[2 * RANDOM_BYTES :], 16)
        slot = sequence & (self.capacity - 1)
        start = slot * RANDOM_BYTES
        stored = self._sequence[slot]
        if stored != sequence or self._random[start : start + RANDOM_BYTES] != bytes.fromhex(request_id[: 2 * RANDOM_BYTES]):
            return None
        return self._projects[self._project[slot]], self._rows[slot]

    def __len__(self) -> int:
        """How many ids are remembered now."""
        return min(self._remembered, self.capacity)


def _well_formed(request_id: str) -> bool:
    return len(request_id) == 2 * RANDOM_BYTES + 8 and HEX_DIGITS.issuperset(request_id)


__all__ = ["RecentRequests"]

"""Plotly's property-path parser, memoized: about a fifth of an Evidently drift report's time.

Evidently 0.7 draws its reports with plotly 5 (it requires plotly<6). Every figure property that
plotly reads or sets goes through `plotly.basedatatypes._str_to_dict_path_full`, which parses
paths such as 'xaxis.title.text' anew each time (splitting on '.[]_', defining a helper class per
call). A 20-column `DataDriftPreset` report makes ~145k such calls on only ~110 distinct paths.

The parse depends on the string alone, so `install()` puts a cache in front of it, once per
process. Each call still gets its own list of positions, as plotly returns; anything that is not
a string goes to plotly's parser as it is. With plotly's parser gone or renamed (another major
version) nothing is changed. `check_drift` installs it before running Evidently;
tests/monitoring/test_plotly_paths.py checks that results and whole reports are unchanged.

Measured (in one process, alternating, median of 8 runs): `Report([DataDriftPreset()])` at
10k x 20 columns took 0.89 s with the cache, 1.10 s without.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

CACHED_PATHS = 4096  # distinct paths kept; a drift report uses ~110

Parser = Callable[[Any], tuple[tuple, list]]


def install() -> bool:
    """Cache plotly's path parser in this process (idempotent); False when plotly has none to cache."""
    import plotly.basedatatypes as datatypes

    parse = getattr(datatypes, "_str_to_dict_path_full", None)
    if parse is None:
        return False
    if not getattr(parse, "mlops_cached", False):
        datatypes._str_to_dict_path_full = cached_parser(parse)
    return True


def cached_parser(parse: Parser) -> Parser:
    """`parse`, remembering its answer for each string path."""

    @functools.lru_cache(maxsize=CACHED_PATHS)
    def parsed(path: str) -> tuple[tuple, tuple]:
        keys, starts = parse(path)
        return keys, tuple(starts)

    @functools.wraps(parse)
    def cached(path: Any) -> tuple[tuple, list]:
        if type(path) is not str:
            return parse(path)
        keys, starts = parsed(path)
        return keys, list(starts)  # a fresh list each call: a caller may change it

    cached.mlops_cached = True  # type: ignore[attr-defined]
    cached.cache_info = parsed.cache_info  # type: ignore[attr-defined]
    return cached


__all__ = ["CACHED_PATHS", "cached_parser", "install"]

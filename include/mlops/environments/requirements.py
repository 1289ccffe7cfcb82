"""`environment.requirements`: what a project may ask for, checked without resolving anything.

A requirement is a PEP 508 string for a package from the package index (`six==1.16.0`,
`scikit-learn>=1.5`, `requests[socks]`, `tomli; python_version < "3.11"`). A URL (`pkg @ https://...`),
a path (`./pkg`, `pkg.whl`), a VCS link and a pip option (`-e`, `-r`, `--index-url`) are refused: an
environment is recorded as name==version pins, which only a registry can turn back into the same
files. These checks are cheap (no uv, no network): the schema runs them on every parse.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_FILE_LIKE = re.compile(r"\.(whl|zip|tar(\.gz|\.bz2|\.xz)?|tgz|egg)$", re.IGNORECASE)
_PATH_OR_URL = re.compile(r"^(\.{1,2}[/\\]|[/\\~]|[a-zA-Z]:[/\\]|[a-zA-Z][a-zA-Z0-9+.-]*://|git\+)")
REGISTRY_ONLY = "only packages from the package index (name and version specifier) can be required"


def parse_requirement(text: str) -> Requirement:
    """The requirement `text` names; ValueError saying what is wrong (for a person) when it is not one
    this platform installs."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("an empty requirement")
    if stripped.startswith("-"):
        raise ValueError(f"{text!r} is a pip option, not a requirement: {REGISTRY_ONLY}")
    if _PATH_OR_URL.match(stripped):
        raise ValueError(f"{text!r} is a path or URL: {REGISTRY_ONLY}")
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise ValueError(f"{text!r} is not a PEP 508 requirement ({reason}); e.g. 'six==1.16.0' or "
                         "'scikit-learn>=1.5,<2'") from None
    if requirement.url:
        raise ValueError(f"{text!r} names a URL ({requirement.url}): {REGISTRY_ONLY}")
    if _FILE_LIKE.search(requirement.name):
        raise ValueError(f"{text!r} names a file: {REGISTRY_ONLY}")
    if requirement.marker is not None and "extra" in str(requirement.marker):
        raise ValueError(f"{text!r}: an `extra` marker means nothing for a project; use python_version, "
                         "sys_platform, platform_machine...")
    return requirement


def duplicate_problem(texts: Iterable[str]) -> str | None:
    """What is wrong when a package is listed twice (names compared normalized: Six_Pkg == six-pkg), else None.

    Texts that do not parse are skipped: `parse_requirement` reports them, each at its own item."""
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        try:
            name = canonicalize_name(Requirement(text.strip()).name)
        except InvalidRequirement:
            continue
        if name in first:
            return (f"{name} is listed twice (items {first[name]} and {i}): list it once, with one combined "
                    "specifier (e.g. 'six>=1.15,<1.17')")
        first[name] = i
    return None


def applies(requirement: Requirement, environment: dict[str, str] | None = None) -> bool:
    """Whether the requirement's marker holds for this interpreter and platform (no marker: always)."""
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({"extra": "", **(environment or {})})


def marker_holds(marker: str | None) -> bool:
    """A marker string of a `uv export` line, evaluated for this interpreter (None: holds)."""
    return marker is None or Marker(marker).evaluate({"extra": ""})


def canonical(name: str) -> str:
    return canonicalize_name(name)


def python_version() -> str:
    """The interpreter's full version: markers such as `python_full_version < '3.11.3'` depend on it."""
    return ".".join(map(str, sys.version_info[:3]))

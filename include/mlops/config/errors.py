"""A config error a person can act on: file, line, column, field, what is wrong, what to do."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return ascii(char)[1:-1]


def printable(text: str) -> str:
    """`text` on one printable line: control characters and undecodable bytes as backslash escapes.

    A file name may hold a newline or bytes that are not UTF-8; printing it raw would split an
    error over lines, or raise UnicodeEncodeError when written out.
    """
    return _UNPRINTABLE.sub(lambda m: _escape(m.group()), text)


@dataclass(frozen=True)
class ConfigError:
    file: str
    line: int | None
    column: int | None
    field: str  # dotted path, "" for the whole file
    message: str
    suggestion: str | None = None

    def format(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field or '<file>'}: {self.message}"
        if self.suggestion:
            text += f" ({self.suggestion})"
        return printable(text)


class ProjectConfigError(ValueError):
    """Raised for a project YAML that does not load; carries every error found in it."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(e.format() for e in errors))


def did_you_mean(word: str, choices: list[str] | set[str]) -> str | None:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None

"""Read one project file as text, safely: every way it can fail is a located `ConfigError`.

A project file may be anything a folder can hold: a directory or a FIFO named `x.yaml`, a
broken or looping symlink, a link to /dev/zero, a sparse 100 GB file, UTF-16 or Latin-1
text, binary junk. `read_project_text` never blocks (it stats before it opens, and opens
with O_NONBLOCK so a file swapped for a FIFO in between still cannot hang), never reads
more than `MAX_BYTES` (+1 to detect overflow), and turns each failure into one error
naming the file and, where it is known, the line and column (e.g. of the first byte that
is not UTF-8), with what to do about it.

Encoding: project files are UTF-8. A UTF-8 byte-order mark is accepted and stripped (YAML
allows it and Windows editors write it); UTF-16/UTF-32, with or without a BOM, is refused
with "save the file as UTF-8". Characters YAML forbids (C0/C1 controls but tab, LF, CR and
NEL; U+FFFE/U+FFFF) are refused here, with their position, before the YAML parser sees them.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
from pathlib import Path

from mlops.config.errors import ConfigError, ProjectConfigError

MAX_BYTES = 1024 * 1024  # 1 MiB: a project file is a few hundred bytes; this is for junk, not a real limit
MAX_LABEL = "1 MiB"
UTF8_HINT = "save the file as UTF-8"

_FORBIDDEN = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def _refuse(file: str, message: str, suggestion: str | None = None, line: int | None = None, column: int | None = None):
    return ProjectConfigError([ConfigError(file, line, column, "", message, suggestion)])


def _too_big(file: str, size: int | None) -> ProjectConfigError:
    what = f"{size} bytes" if size is not None else "more than that"
    return _refuse(file, f"file is larger than the {MAX_LABEL} limit of a project file ({what})",
                   "is this really a project YAML? move other files out of the projects folder")


def _os_error(file: str, path: Path, exc: OSError) -> ProjectConfigError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return _refuse(file, f"cannot read file: broken symbolic link (its target {target!r} does not exist)",
                       "fix or remove the link")
    if exc.errno == errno.ENOENT:
        return _refuse(file, "cannot read file: no such file or directory")
    if exc.errno == errno.ELOOP:
        return _refuse(file, "cannot read file: symbolic link loop (too many levels of symbolic links)",
                       "fix or remove the link")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _refuse(file, "cannot read file: permission denied",
                       "make it readable by the user running Airflow, e.g. chmod a+r")
    return _refuse(file, f"cannot read file: {reason}")


def _not_regular(file: str, mode: int) -> ProjectConfigError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    hint = "rename it: only files named *.yaml/*.yml belong to the projects folder"
    return _refuse(file, f"not a regular file: it is {kind}", hint)


def read_project_text(path: str | Path) -> str:
    """The file's text (UTF-8, BOM stripped); `ProjectConfigError` for anything else."""
    path = Path(path)
    file = str(path)
    try:
        info = os.stat(path)  # before opening: a FIFO or a device is never opened
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(file, info.st_mode)
        if info.st_size > MAX_BYTES:
            raise _too_big(file, info.st_size)
        fd = os.open(path, _OPEN_FLAGS)
        try:
            info = os.fstat(fd)  # what was opened may not be what was stat'ed
            if not stat.S_ISREG(info.st_mode):
                raise _not_regular(file, info.st_mode)
            chunks, size = [], 0
            while size <= MAX_BYTES:
                chunk = os.read(fd, MAX_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _os_error(file, path, exc) from None
    if size > MAX_BYTES:  # grew since the stat, or a file whose size stat does not know
        raise _too_big(file, None)
    return decode_project_bytes(b"".join(chunks), file)


def _line_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte `offset`."""
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", "replace")) + 1


def _utf16_without_bom(data: bytes) -> str | None:
    """'UTF-16LE'/'UTF-16BE' when NULs sit on every other byte, as in UTF-16 text of mostly ASCII."""
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if len(sample) >= 4 and max(even, odd) >= len(sample) // 4 and min(even, odd) <= max(even, odd) // 10:
        return "UTF-16LE" if odd > even else "UTF-16BE"
    return None


def decode_project_bytes(data: bytes, file: str) -> str:
    """UTF-8 text of a project file, or a located error for the first thing that is not."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise _refuse(file, f"file is {name} encoded (it starts with a {name} byte-order mark)", UTF8_HINT, 1, 1)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    nul = data.find(b"\0")
    if nul >= 0:
        encoding = _utf16_without_bom(data)
        if encoding:
            raise _refuse(file, f"file looks {encoding} encoded (a NUL byte beside each character)", UTF8_HINT, 1, 1)
        line, column = _line_column(data, nul)
        raise _refuse(file, "NUL byte: this is not a text file",
                      "remove it, or move binary files out of the projects folder", line, column)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(data, exc.start)
        byte = data[exc.start]
        latin1 = bytes([byte]).decode("cp1252", "replace")
        guess = f" ({latin1!r} in Latin-1/Windows-1252)" if latin1.isprintable() and latin1 != "\ufffd" else ""
        truncated = exc.reason == "unexpected end of data"
        what = "truncated character at the end" if truncated else f"byte 0x{byte:02x}{guess}"
        raise _refuse(file, f"not valid UTF-8: {what}", UTF8_HINT, line, column) from None
    bad = _FORBIDDEN.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise _refuse(file, f"control character U+{ord(bad.group()):04X} is not allowed in YAML",
                      "remove it, or write it as an escape inside a double-quoted string", line, column)
    return text

"""Every file of the projects folder that cannot be read, decoded or parsed is one located error.

A corpus of broken files (built at test time): each must, beside a good project, leave the
good project's DAGs loaded and give one error naming the file (with line:column where it is
known), through `collect_project_dags`, Airflow's real DagBag on dags/, `mlops validate`
in-process and as a subprocess; none may hang, read without bound or print a traceback.

Tests run as root here, where chmod 000 stops nothing: `unprivileged()` drops the thread's
CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH around in-process loads, and `_drop_dac` drops them from
the bounding set of subprocesses, so the permission case hits a real EACCES.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops.cli import main
from mlops.config import load_projects, project_files
from mlops.config.errors import printable
from mlops.config.loader import position_of
from mlops.config.reading import MAX_BYTES
from mlops_testing import tiny_project
from mlops_airflow.dag_factory import collect_project_dags

REPO = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux")
GOOD = tiny_project("good_project")
GOOD_DAGS = {"good_project__lifecycle"}


@dataclass(frozen=True)
class Kind:
    id: str
    build: Callable[[Path], Path]
    fragment: str  # in the error message
    where: str | None = ""  # ":line:column" expected after the path; None: any position


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return build


def _text(name: str, text: str) -> Callable[[Path], Path]:
    return _bytes(name, text.encode())


def _special(name: str, make: Callable[[Path], None]) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        make(d / name)
        return d / name
    return build


def _socket(path: Path) -> None:
    with contextlib.chdir(path.parent), socket.socket(socket.AF_UNIX) as s:  # relative: AF_UNIX paths are short
        s.bind(path.name)


def _chmod_000(path: Path) -> None:
    path.write_text(GOOD.replace("good_project", "secret_project"))
    path.chmod(0)


def _sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(size)
    return make


def _billion_laughs() -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n" + GOOD


def _deep_block(levels: int) -> str:
    return "description:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(levels)) + " " * (levels + 1) + "v\n"


# Capabilities: per thread in Linux; header version 3 takes two 32-bit data structs.
_DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
_PR_CAPBSET_DROP = 24


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def unprivileged() -> Iterator[bool]:
    """Root without the capabilities that bypass file permissions, on this thread, while inside.

    Yields whether reads of a chmod-000 file now fail (always for a non-root user)."""
    if os.geteuid() != 0:
        yield True
        return
    if not LINUX:
        yield False
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        yield False
        return
    saved = data[0].effective
    data[0].effective &= ~_DAC
    dropped = libc.capset(ctypes.byref(header), data) == 0
    try:
        yield dropped
    finally:
        if dropped:
            data[0].effective = saved
            libc.capset(ctypes.byref(header), data)


def _reads_can_be_denied() -> bool:
    if os.geteuid() != 0:
        return True
    if not LINUX:
        return False
    with open("/proc/self/status") as f:  # dropping from the bounding set (subprocesses) needs CAP_SETPCAP
        effective = int(next(ln for ln in f if ln.startswith("CapEff:")).split()[1], 16)
    with unprivileged() as dropped:
        return dropped and bool(effective & (1 << 8))


def _drop_dac() -> None:  # preexec_fn: the child (root) execs without the permission-bypassing capabilities
    if LINUX and os.geteuid() == 0:
        libc = ctypes.CDLL(None)
        for cap in (1, 2):
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)


KINDS = [
    Kind("latin1", _bytes("latin1.yaml", GOOD.encode() + b"description: caf\xe9\n"), "not valid UTF-8: byte 0xe9",
         f":{GOOD.count(chr(10)) + 1}:17"),
    Kind("utf16_bom", _bytes("utf16_bom.yaml", GOOD.encode("utf-16")), "UTF-16 encoded", ":1:1"),
    Kind("utf16le_no_bom", _bytes("utf16le.yaml", GOOD.encode("utf-16-le")), "looks UTF-16LE encoded", ":1:1"),
    Kind("utf16be_no_bom", _bytes("utf16be.yaml", GOOD.encode("utf-16-be")), "looks UTF-16BE encoded", ":1:1"),
    Kind("utf32_bom", _bytes("utf32.yaml", GOOD.encode("utf-32")), "UTF-32 encoded", ":1:1"),
    Kind("truncated_utf8", _bytes("truncated.yaml", b"name: x\ndescription: caf\xc3"), "truncated character", ":2:17"),
    Kind("surrogate_in_utf8", _bytes("surrogate.yaml", b"name: \xed\xa0\x80\n"), "not valid UTF-8: byte 0xed", ":1:7"),
    Kind("nul_byte", _bytes("nul.yaml", b"name: ab\x00c\n"), "NUL byte", ":1:9"),
    Kind("binary_png", _bytes("image.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "NUL byte", ":3:1"),
    Kind("control_char", _text("bell.yaml", GOOD + "description: ring\x07\n"), "control character U+0007",
         f":{GOOD.count(chr(10)) + 1}:18"),
    Kind("c1_control", _text("c1.yaml", "name: a\u0086\n"), "control character U+0086", ":1:8"),
    Kind("directory", _special("folder.yaml", Path.mkdir), "not a regular file: it is a directory"),
    Kind("dangling_symlink", _special("dangling.yaml", lambda p: p.symlink_to("nowhere.yaml")), "broken symbolic link"),
    Kind("symlink_loop", _special("loop.yaml", lambda p: p.symlink_to(p.name)), "symbolic link loop"),
    Kind("fifo", _special("pipe.yaml", os.mkfifo), "it is a FIFO"),
    Kind("socket", _special("sock.yaml", _socket), "it is a socket"),
    Kind("link_to_dev_zero", _special("zero.yaml", lambda p: p.symlink_to("/dev/zero")), "it is a character device"),
    Kind("sparse_4gib", _special("sparse.yaml", _sparse(4 << 30)), "larger than the 1 MiB limit of a project file"),
    Kind("over_1mib", _text("big.yaml", GOOD + "#" * MAX_BYTES + "\n"), "1 MiB limit of a project file ("),
    Kind("deep_flow", _text("deep_flow.yaml", GOOD + "description: " + "[" * 10_000 + "]" * 10_000), "nest", None),
    Kind("deep_block", _text("deep_block.yaml", GOOD + _deep_block(100)), "nested more than 64 levels deep", None),
    Kind("billion_laughs", _text("laughs.yaml", _billion_laughs()), "once its aliases (*name) are expanded", None),
    Kind("recursive_alias", _text("recursive.yaml", GOOD + "tags: &t [a, *t]\n"), "recursive structure", None),
    Kind("merge_key", _text("merge.yaml", "base: &b {x: 1}\n" + GOOD + "extra:\n  <<: *b\n"), "merge keys (<<)",
         f":{GOOD.count(chr(10)) + 3}:3"),
    Kind("multi_document", _text("multi.yaml", GOOD + "---\n" + GOOD), "a second YAML document",
         f":{GOOD.count(chr(10)) + 1}:1"),
    Kind("tab_indent", _text("tabs.yaml", "name: tabbed\nmodel:\n\tfamily: mlp_classifier\n"), "indent with spaces",
         ":3:1"),
    Kind("bool_key", _text("boolkey.yaml", GOOD + "on: push\n"), "key 'on' reads as a boolean, not text",
         f":{GOOD.count(chr(10)) + 1}:1"),
    Kind("list_key", _text("listkey.yaml", GOOD + "? [a, b]\n: 1\n"), "a key must be text, not a list", None),
    Kind("python_tag", _text("python.yaml", "name: !!python/object/apply:os.system ['touch PWNED']\n"),
         "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'", ":1:7"),
    Kind("scalar_document", _text("scalar.yaml", "just some words\n"), "expected a mapping of keys, got str", ":1:1"),
    Kind("list_document", _text("list.yaml", "- name: a\n- name: b\n"), "expected a mapping of keys, got list", ":1:1"),
    Kind("huge_integer", _text("bigint.yaml", GOOD + "priority: " + "9" * 5000 + "\n"), "too long to read",
         f":{GOOD.count(chr(10)) + 1}:11"),
    Kind("impossible_date", _text("date.yaml", GOOD + "description: 2026-13-45\n"), "month must be in 1..12",
         f":{GOOD.count(chr(10)) + 1}:14"),
    Kind("empty", _text("empty.yaml", ""), "empty file", ":1:1"),
    Kind("undecodable_file_name", _bytes(os.fsdecode(b"caf\xe9.yaml"), b"name: [\n"), "YAML syntax error", None),
    Kind("newline_in_file_name", _text("bad\nname.yaml", "[1, 2]\n"), "expected a mapping of keys", ":1:1"),
]
if _reads_can_be_denied():  # chmod 000 stops a read: not root, or root that can shed CAP_DAC_OVERRIDE
    KINDS.append(Kind("permission_denied", _special("secret.yaml", _chmod_000), "cannot read file: permission denied"))
if LINUX:  # a regular file (size 0) whose read fails: EIO, for real
    KINDS.append(Kind("read_error_eio", _special("mem.yaml", lambda p: p.symlink_to("/proc/self/mem")),
                      "cannot read file: Input/output error"))


def _error_line(kind: Kind, path: Path, text: str) -> str:
    """The line of `text` reporting `path` (with `kind.where`) and the kind's message."""
    prefix = printable(str(path)) + ("" if kind.where is None else kind.where + ": ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(prefix) and kind.fragment in ln]
    assert lines, f"no line starts with {prefix!r} and holds {kind.fragment!r} in:\n{text}"
    return lines[0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_loader_keeps_good_dags_and_locates_the_bad_file(kind: Kind, tmp_path: Path):
    (tmp_path / "good.yaml").write_text(GOOD)
    bad = kind.build(tmp_path)
    with unprivileged():
        result = collect_project_dags(tmp_path)
    assert set(result.dags) == GOOD_DAGS
    assert list(result.errors) == [bad]
    _error_line(kind, bad, "\n".join(result.errors[bad]))
    report = result.error_report()
    _error_line(kind, bad, report)
    assert "Traceback" not in report and not (tmp_path / "PWNED").exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_validate_prints_the_error_and_exits_1(kind: Kind, tmp_path: Path, capsys):
    (tmp_path / "good.yaml").write_text(GOOD)
    bad = kind.build(tmp_path)
    with unprivileged():
        assert main(["validate", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    _error_line(kind, bad, out)
    assert f"{tmp_path / 'good.yaml'}: ok (good_project__lifecycle)" in out
    assert "Traceback" not in out + err and "2 file(s), 1 invalid" in err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """One folder holding every broken kind, a good project, a good one with a UTF-8 BOM, an editor lock."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "good.yaml").write_text(GOOD)
    (folder / "bom.yml").write_bytes(b"\xef\xbb\xbf" + tiny_project("bom_project").encode())
    (folder / ".#good.yaml").symlink_to("root@host.1234")  # Emacs lock: hidden, so ignored
    return folder, {k.id: k.build(folder) for k in KINDS}


PARSE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    errors = {k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()}
    print(json.dumps({"dags": sorted(bag.dag_ids), "errors": errors}))
    """
)


@pytest.mark.timeout(120)
def test_dagbag_shows_every_bad_file_in_one_import_error_and_loads_the_good_dags(corpus):
    folder, paths = corpus
    env = {**os.environ, "MLOPS_PROJECTS_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(REPO / "dags")], env=env, capture_output=True,
                          text=True, timeout=100, preexec_fn=_drop_dac)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["dags"]) == GOOD_DAGS | {"bom_project__lifecycle", "toolkit__report"}
    assert list(result["errors"]) == ["project_errors.py"]
    message = result["errors"]["project_errors.py"]
    assert f"{len(KINDS)} project file(s) could not become DAGs" in message
    for kind in KINDS:
        _error_line(kind, paths[kind.id], message)
    # Airflow prints the frame of project_errors.py's `raise`; no frame of the loader or the factory: nothing crashed.
    assert "mlops/config" not in message and "factory.py" not in message
    assert ".#good.yaml" not in message  # an editor lock file is hidden, so ignored


@pytest.mark.timeout(60)
def test_mlops_validate_subprocess_on_the_whole_corpus(corpus):
    folder, paths = corpus
    mlops = REPO / ".venv" / "bin" / "mlops"
    if not mlops.exists():
        mlops = Path(sys.executable).with_name("mlops")
    done = subprocess.run([str(mlops), "validate", str(folder)], capture_output=True, text=True, timeout=50,
                          preexec_fn=_drop_dac, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 1, done.stderr
    for kind in KINDS:
        _error_line(kind, paths[kind.id], done.stdout)
    assert f"{folder / 'good.yaml'}: ok (good_project__lifecycle)" in done.stdout
    assert f"{folder / 'bom.yml'}: ok (bom_project__lifecycle)" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{len(KINDS) + 2} file(s), {len(KINDS)} invalid" in done.stderr


def test_utf8_bom_is_accepted_and_positions_ignore_it(tmp_path: Path):
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"retrys: 1\n")
    _, errors = load_projects([tmp_path / "bom.yaml"])
    (error,) = errors[tmp_path / "bom.yaml"]
    assert (error.line, error.column, error.field) == (GOOD.count("\n") + 1, 1, "retrys")


def test_size_cap_is_exact(tmp_path: Path):
    exact = GOOD + "#" * (MAX_BYTES - len(GOOD) - 1) + "\n"
    assert len(exact.encode()) == MAX_BYTES
    (tmp_path / "exact.yaml").write_text(exact)
    (tmp_path / "over.yaml").write_text(exact.replace("good_project", "over_project") + "\n")
    configs, errors = load_projects(project_files(tmp_path))
    assert list(configs) == [tmp_path / "exact.yaml"]
    assert "1048577 bytes" in errors[tmp_path / "over.yaml"][0].message


def test_file_removed_between_listing_and_loading(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "gone.yaml").write_text(GOOD.replace("good_project", "gone_project"))
    paths = project_files(tmp_path)
    (tmp_path / "gone.yaml").unlink()
    configs, errors = load_projects(paths)
    assert list(configs) == [tmp_path / "good.yaml"]
    (error,) = errors[tmp_path / "gone.yaml"]
    assert error.format() == f"{tmp_path / 'gone.yaml'}: <file>: cannot read file: no such file or directory"
    (tmp_path / "good.yaml").write_bytes(b"\xff")  # changed after loading: a later position lookup gives up quietly
    assert position_of(tmp_path / "good.yaml", ("name",)) == (None, None)
    (tmp_path / "good.yaml").unlink()
    assert position_of(tmp_path / "good.yaml", ("name",)) == (None, None)


def test_unlistable_projects_folder_is_one_error(tmp_path: Path, capsys):
    result = collect_project_dags(tmp_path / "missing")
    assert result.dags == {}
    (messages,) = result.errors.values()
    assert messages == [f"{tmp_path / 'missing'}: <file>: cannot list the projects folder: No such file or directory"]
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "good.yaml").write_text(GOOD)
    locked.chmod(0)
    try:
        with unprivileged() as denied:
            if not denied:
                pytest.skip("cannot deny a read here")
            assert main(["validate", str(locked)]) == 1
    finally:
        locked.chmod(0o700)
    assert f"{locked}: <file>: cannot list the folder: Permission denied" in capsys.readouterr().out


def test_a_loader_bug_on_one_file_is_that_file_s_error(tmp_path: Path, monkeypatch):
    import mlops.config.loader as loader

    real = loader.parse_project_text
    def buggy(text: str, file: str, deep: bool = False):
        if file.endswith("bug.yaml"):
            raise KeyError("boom")
        return real(text, file, deep)
    monkeypatch.setattr(loader, "parse_project_text", buggy)
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bug.yaml").write_text(GOOD.replace("good_project", "bug_project"))
    result = collect_project_dags(tmp_path)
    assert set(result.dags) == GOOD_DAGS
    assert result.errors[tmp_path / "bug.yaml"] == [
        f"{tmp_path / 'bug.yaml'}: <file>: internal error while loading: KeyError: 'boom' (please report it)"
    ]


@pytest.mark.timeout(10)
def test_a_fifo_swapped_in_after_the_stat_does_not_block(tmp_path: Path, monkeypatch):
    """stat said regular file, then the name became a FIFO: O_NONBLOCK + fstat still refuse it at once."""
    import mlops.config.reading as reading

    regular = tmp_path / "regular"
    regular.write_text(GOOD)
    os.mkfifo(tmp_path / "pipe.yaml")
    real_stat = os.stat
    monkeypatch.setattr(reading.os, "stat", lambda p, *a, **k: real_stat(regular if Path(p).name == "pipe.yaml" else p))
    _, errors = load_projects([tmp_path / "pipe.yaml"])
    monkeypatch.undo()
    assert "not a regular file: it is a FIFO" in errors[tmp_path / "pipe.yaml"][0].message


@pytest.mark.timeout(10)
def test_validate_named_fifo_does_not_block(tmp_path: Path, capsys):
    os.mkfifo(tmp_path / "pipe.yaml")
    assert main(["validate", str(tmp_path / "pipe.yaml")]) == 1
    assert f"{tmp_path / 'pipe.yaml'}: <file>: not a regular file: it is a FIFO" in capsys.readouterr().out


def test_validate_names_a_broken_symlink_instead_of_exit_2(tmp_path: Path, capsys):
    (tmp_path / "dangling.yaml").symlink_to("nowhere.yaml")
    assert main(["validate", str(tmp_path / "dangling.yaml")]) == 1
    assert "broken symbolic link" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "nothing-here.yaml")]) == 2


def test_undecodable_file_name_of_a_valid_project_prints(tmp_path: Path, capsys):
    name = os.fsdecode(b"caf\xe9.yaml")
    (tmp_path / name).write_text(GOOD)
    assert main(["validate", str(tmp_path)]) == 0
    assert f"{tmp_path}/caf\\xe9.yaml: ok (good_project__lifecycle)" in capsys.readouterr().out

"""Turn project YAML files into validated `ProjectConfig`s, or into located errors.

Validation runs in two passes: the pydantic schema (types, bounds, unknown keys), then
the checks that need the model-family registry. Both report every error at once, each
pointing at the YAML node it is about (file:line:column), so one `mlops validate` run
shows everything to fix.

No file can make loading raise anything but `ProjectConfigError`, hang, or take unbounded
memory: reading is bounded and never blocks (`mlops.config.reading`), a document nested
deeper than `MAX_DEPTH` or expanding through aliases to more than `MAX_NODES` values
("billion laughs") or into itself is refused before it is built, a value Python cannot
build (a 5000-digit integer, 2026-13-45) and a key that is not text are located errors,
and a file holds exactly one YAML document.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mlops.config.checks import project_checks
from mlops.config.errors import ConfigError, ProjectConfigError, did_you_mean
from mlops.config.reading import read_project_text
from mlops.config.schema import ProjectConfig

PROJECT_SUFFIXES = (".yaml", ".yml")
PROJECT_FOLDER_FILES = ("project.yaml", "project.yml")  # projects/<name>/project.yaml
MAX_DEPTH = 64  # nesting levels; a project needs about 4
MAX_NODES = 100_000  # values of the document once aliases are expanded
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KEY_TYPES = {bool: "a boolean", int: "a number", float: "a number", type(None): "null", bytes: "binary data"}
log = logging.getLogger(__name__)


class _Refused(yaml.MarkedYAMLError):
    """A document this loader will not build, at `problem_mark`, with what to do about it."""

    def __init__(self, mark: Any, message: str, suggestion: str | None = None):
        super().__init__(problem=message, problem_mark=mark)
        self.suggestion = suggestion


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: ~10x faster
    """SafeLoader that refuses duplicate and non-text keys, and locates values Python cannot build."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:  # int('9' * 5000), date(2026, 13, 45), ...
            raise _Refused(node.start_mark, _bad_value(node, exc)) from None


def _bad_value(node: yaml.Node, exc: Exception) -> str:
    kind = str(node.tag).rsplit(":", 1)[-1]
    value = node.value if isinstance(node.value, str) else ""
    if "integer string conversion" in str(exc):
        return f"integer of {len(value)} characters is too long to read"
    shown = value if len(value) <= 40 else value[:40] + "..."
    return f"cannot read {shown!r} as {kind}: {exc}"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            raise _Refused(key_node.start_mark, "merge keys (<<) are not supported", "write the keys out")
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise _Refused(key_node.start_mark, f"a key must be text, not a {kind}", "use a plain name as the key")
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            kind = _KEY_TYPES.get(type(key), "a date" if hasattr(key, "year") else type(key).__name__)
            raise _Refused(key_node.start_mark, f"key {key_node.value!r} reads as {kind}, not text",
                           f"quote it: '{key_node.value}'")
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...], key: bool) -> yaml.Node | None:
    """The deepest node on `loc`: the last key itself if `key`, else its value."""
    node = root
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return node
            node = match[0] if (last and key) else match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _position(root: yaml.Node | None, loc: tuple[Any, ...], key: bool = False) -> tuple[int | None, int | None]:
    """1-based (line, column) of the value at `loc` (or of its key), for error messages."""
    node = _node_at(root, loc, key)
    if node is None:
        return None, None
    return node.start_mark.line + 1, node.start_mark.column + 1


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic section class that owns the last key of `loc` (for did-you-mean)."""
    model: type[BaseModel] | None = ProjectConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model else None
        annotation = field.annotation if field else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _schema_errors(file: str, root: yaml.Node | None, exc: ValidationError) -> list[ConfigError]:
    errors = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"])
        line, column = _position(root, loc, key=err["type"] == "extra_forbidden")
        field = ".".join(str(p) for p in loc)
        suggestion = None
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            owner = _model_at(loc)
            message = "unknown field"
            if owner is not None:
                suggestion = did_you_mean(str(loc[-1]), set(owner.model_fields))
        elif err["type"] == "missing":
            line, column = _position(root, loc[:-1]) if loc[:-1] else (1, 1)
        elif err["type"] in ("string_pattern_mismatch",) and loc == ("name",):
            message = f"{err['input']!r} is not a valid project name: use lowercase letters, digits and _ (2-63 chars, starting with a letter)"
        errors.append(ConfigError(file, line, column, field, message, suggestion))
    return errors


def _check_shape(root: yaml.Node | None) -> None:
    """Refuse, before building it, a node graph too deep, too big once aliases expand, or cyclic.

    Aliases make the composed graph a DAG (or a cycle): sizes are memoized per collection, so the
    walk is iterative and linear in the distinct nodes however much they would expand. Scalars are
    leaves counted by their parent (most nodes: this keeps the walk cheap on every DAG parse).
    """
    if not isinstance(root, yaml.CollectionNode):
        return
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, int, list | None]] = [(root, 1, None)]
    while stack:
        node, depth, kids = stack.pop()
        key = id(node)
        if kids is not None:  # every kid is done: close the node
            open_nodes.discard(key)
            total, tallest = 1, 1
            for kid in kids:
                if isinstance(kid, yaml.CollectionNode):
                    total += size[id(kid)]
                    tallest = max(tallest, height[id(kid)] + 1)
                else:
                    total += 1
            size[key], height[key] = total, tallest
            if total > MAX_NODES:
                raise _Refused(node.start_mark, f"document has more than {MAX_NODES} values once its aliases (*name) "
                               "are expanded", "a project file needs far fewer: remove the repeated aliases")
            continue
        if key in open_nodes:
            raise _Refused(node.start_mark, "an alias refers to the collection holding it (a recursive structure)",
                           "remove the alias")
        if depth > MAX_DEPTH or (key in height and depth + height[key] - 1 > MAX_DEPTH):
            raise _Refused(node.start_mark, f"nested more than {MAX_DEPTH} levels deep", "flatten the document")
        if key in size:
            continue
        open_nodes.add(key)
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        stack.append((node, depth, kids))
        stack.extend((kid, depth + 1, None) for kid in kids if isinstance(kid, yaml.CollectionNode))


def _mark_position(mark: Any) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _char_at(text: str, line: int | None, column: int | None) -> str:
    lines = text.split("\n")
    if line is None or column is None or line > len(lines) or column > len(lines[line - 1]):
        return ""
    return lines[line - 1][column - 1]


def _yaml_error(text: str, file: str, exc: yaml.YAMLError) -> ConfigError:
    """A located error for anything PyYAML/libyaml raised (syntax, reader, composer, constructor)."""
    if isinstance(exc, _Refused):
        line, column = _mark_position(exc.problem_mark)
        return ConfigError(file, line, column, "", exc.problem, exc.suggestion)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, column = _mark_position(mark)
        if isinstance(exc, yaml.composer.ComposerError) and "another document" in (exc.problem or ""):
            return ConfigError(file, line, column, "", "a second YAML document: a project file holds exactly one",
                               "remove the '---' line, or put each project in its own file")
        if isinstance(exc, yaml.constructor.ConstructorError) and "determine a constructor" in (exc.problem or ""):
            tag = (exc.problem or "").rsplit(" ", 1)[-1]  # e.g. !!python/object/apply:os.system: never run
            return ConfigError(file, line, column, "", f"unsupported YAML tag {tag}",
                               "project files are plain YAML: remove the tag")
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        tab = _char_at(text, line, column) == "\t"
        return ConfigError(file, line, column, "", f"YAML syntax error: {problem}",
                           "indent with spaces, not tabs" if tab else None)
    position = getattr(exc, "position", None)  # ReaderError: a character index
    line = column = None
    if isinstance(position, int) and 0 <= position <= len(text):
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
    reason = getattr(exc, "reason", None) or str(exc)
    character = getattr(exc, "character", None)
    if isinstance(character, int):
        reason += f" (U+{character:04X})"
    return ConfigError(file, line, column, "", f"YAML error: {reason}")


def parse_project_text(text: str, file: str, deep: bool = False) -> ProjectConfig:
    """Validate one project's YAML text; raise `ProjectConfigError` with every error found."""
    loader = None
    try:  # one parse: the node tree (for error positions), then the data built from it
        loader = _Loader(text)  # the pure-Python reader checks the characters here
        root = loader.get_single_node()
        _check_shape(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise ProjectConfigError([_yaml_error(text, file, exc)]) from None
    except RecursionError:  # the pure-Python parser (no libyaml) recurses while composing
        raise ProjectConfigError([ConfigError(file, None, None, "", "nested too deeply to parse",
                                              "flatten the document")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise ProjectConfigError(
            [ConfigError(file, 1, 1, "", "empty file", "a project needs at least `name:` and `model: {family: ...}`")]
        )
    if not isinstance(data, dict):
        raise ProjectConfigError([ConfigError(file, 1, 1, "", f"expected a mapping of keys, got {type(data).__name__}")])
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ProjectConfigError(_schema_errors(file, root, exc)) from None
    locate = functools.partial(_located, file, root)
    errors = _folder_errors(file, root, config) + [
        locate(*problem) for problem in project_checks(file, config, _code_dir(file, config), _projects_dir(file), deep)
    ]
    if errors:
        raise ProjectConfigError(errors)
    return config


def _located(file: str, root: yaml.Node | None, loc: tuple[Any, ...], message: str, suggestion: str | None = None,
             key: bool = False) -> ConfigError:
    """A check's problem at `loc`, placed at its line and column in the file."""
    line, column = _position(root, loc, key)
    return ConfigError(file, line, column, ".".join(map(str, loc)), message, suggestion)


def _is_folder_project(file: str | Path) -> bool:
    return Path(file).name in PROJECT_FOLDER_FILES


def _projects_dir(file: str) -> Path:
    """The projects folder holding the file (`<dir>/x.yaml` or `<dir>/<name>/project.yaml`)."""
    return Path(file).parent.parent if _is_folder_project(file) else Path(file).parent


def _code_dir(file: str, config: ProjectConfig) -> Path:
    """Where the project's own `module:Class` code is looked up (same rule as `project_code_dir`)."""
    from mlops.training.families import code_dir_for

    return code_dir_for(_projects_dir(file), config.name)


def _folder_errors(file: str, root: yaml.Node | None, config: ProjectConfig) -> list[ConfigError]:
    """A project folder is named after its project: tasks and serving find its code by that name."""
    folder = Path(file).parent
    if not _is_folder_project(file) or folder.name == config.name:
        return []
    line, column = _position(root, ("name",))
    return [ConfigError(file, line, column, "name", f"project {config.name!r} lives in folder {folder.name!r}",
                        f"rename the folder to {config.name!r} or the project to {folder.name!r}")]


def project_file(projects_dir: Path, name: str) -> Path:
    """The file of project `name`: `<name>.yaml`/`.yml`, else `<name>/project.yaml`/`.yml` (the first that
    exists; `<name>.yaml` when none does, so the caller's error names the usual place)."""
    candidates = [projects_dir / f"{name}{suffix}" for suffix in PROJECT_SUFFIXES]
    candidates += [projects_dir / name / file for file in PROJECT_FOLDER_FILES]
    return next((c for c in candidates if os.path.lexists(c)), candidates[0])


def load_project(path: str | Path, deep: bool = False) -> ProjectConfig:
    """The validated project of one file; `ProjectConfigError` (located) for any problem with it.

    `deep` also imports a family from a package or project code and checks it (`mlops validate`).
    """
    return parse_project_text(read_project_text(path), str(path), deep)


def project_files(directory: str | Path) -> list[Path]:
    """Every project file of `directory`: its `*.yaml`/`*.yml` entries and each subfolder's `project.yaml`.

    Whatever an entry is (a directory or a FIFO so named is reported by `load_project`, not skipped
    unseen), except hidden ones (`.#x.yaml` editor locks, macOS `._x.yaml` resource forks). A
    project folder (`projects/<name>/project.yaml`) holds the project's own code and data beside it.
    Raises OSError when the directory cannot be listed."""
    directory = Path(directory)
    found = []
    for entry in directory.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.suffix in PROJECT_SUFFIXES:
            found.append(entry)
        elif entry.is_dir():
            found.extend(entry / name for name in PROJECT_FOLDER_FILES if os.path.lexists(entry / name))
    return sorted(found)


def load_projects(
    paths: list[Path], deep: bool = False
) -> tuple[dict[Path, ProjectConfig], dict[Path, list[ConfigError]]]:
    """Load every file; a bad one only adds to the errors. A name used twice is an error on the later file."""
    configs: dict[Path, ProjectConfig] = {}
    errors: dict[Path, list[ConfigError]] = {}
    owner_of: dict[str, Path] = {}
    for path in paths:
        try:
            config = load_project(path, deep)
        except ProjectConfigError as exc:
            errors[path] = exc.errors
            continue
        except Exception as exc:  # noqa: BLE001 - a loader bug must not hide the other projects
            log.debug("loading %s failed", path, exc_info=True)  # debug: `mlops validate` prints no traceback
            errors[path] = [ConfigError(str(path), None, None, "", f"internal error while loading: "
                                        f"{type(exc).__name__}: {exc}", "please report it")]
            continue
        if config.name in owner_of:
            line, column = position_of(path, ("name",))
            errors[path] = [
                ConfigError(
                    str(path), line, column, "name",
                    f"project name {config.name!r} is already used by {owner_of[config.name]}",
                    "give each project a unique name",
                )
            ]
            continue
        owner_of[config.name] = path
        configs[path] = config
    return configs, errors


def position_of(path: Path, loc: tuple[Any, ...]) -> tuple[int | None, int | None]:
    """(line, column) of the value at `loc` in a project file (for checks made after loading).

    The file is read again, so it may have changed or gone since: then (None, None)."""
    try:
        text = read_project_text(path)
    except ProjectConfigError:
        return None, None
    loader = None
    try:
        loader = _Loader(text)
        return _position(loader.get_single_node(), loc)
    except (yaml.YAMLError, RecursionError):
        return None, None
    finally:
        if loader is not None:
            loader.dispose()

"""Turn project YAML files into validated `ProjectConfig`s, or into located errors.

Validation runs in two passes: the pydantic schema (types, bounds, unknown keys), then
the checks that need the model-family registry. Both report every error at once, each
pointing at the YAML node it is about (file:line:column), so one `mlops validate` run
shows everything to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mlops.config.errors import ConfigError, ProjectConfigError, did_you_mean
from mlops.config.schema import ProjectConfig

PROJECT_SUFFIXES = (".yaml", ".yml")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: ~10x faster
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
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


def _family_errors(file: str, root: yaml.Node | None, config: ProjectConfig) -> list[ConfigError]:
    """Checks against the model-family registry (needs no MLX: families import it lazily)."""
    from mlops.training.families import family_names, get_family

    def error(loc: tuple[Any, ...], message: str, suggestion: str | None = None, key: bool = False) -> ConfigError:
        line, column = _position(root, loc, key)
        return ConfigError(file, line, column, ".".join(map(str, loc)), message, suggestion)

    name = config.model.family
    if name not in family_names():
        hint = did_you_mean(name, family_names()) or f"known families: {', '.join(family_names())}"
        return [error(("model", "family"), f"unknown model family {name!r}", hint)]
    family = get_family(name)
    errors = []
    for key in family.check_hyperparameters(config.model.hyperparameters):
        hint = did_you_mean(key, set(family.default_hyperparameters)) or (
            f"{name} takes: {', '.join(sorted(family.default_hyperparameters))}"
        )
        errors.append(error(("model", "hyperparameters", key), f"unknown hyperparameter for family {name!r}", hint, key=True))
    for i, technique in enumerate(config.training.techniques):
        if technique not in family.supported_techniques:
            supported = ", ".join(sorted(family.supported_techniques)) or "none"
            errors.append(
                error(("training", "techniques", i), f"family {name!r} does not support {technique!r}", f"supported: {supported}")
            )
    metric = config.evaluation.metric
    if metric is not None and metric not in family.metrics:
        hint = did_you_mean(metric, set(family.metrics)) or f"{name} reports: {', '.join(family.metrics)}"
        errors.append(error(("evaluation", "metric"), f"family {name!r} does not report metric {metric!r}", hint))
    return errors


def parse_project_text(text: str, file: str) -> ProjectConfig:
    """Validate one project's YAML text; raise `ProjectConfigError` with every error found."""
    loader = _Loader(text)
    try:  # one parse: the node tree (for error positions), then the data built from it
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ProjectConfigError([ConfigError(file, line, column, "", f"YAML syntax error: {problem}")]) from None
    finally:
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
    errors = _family_errors(file, root, config)
    if errors:
        raise ProjectConfigError(errors)
    return config


def load_project(path: str | Path) -> ProjectConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectConfigError([ConfigError(str(path), None, None, "", f"cannot read file: {exc.strerror}")]) from None
    return parse_project_text(text, str(path))


def project_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if p.suffix in PROJECT_SUFFIXES and p.is_file())


def load_projects(paths: list[Path]) -> tuple[dict[Path, ProjectConfig], dict[Path, list[ConfigError]]]:
    """Load every file; a bad one only adds to the errors. A name used twice is an error on the later file."""
    configs: dict[Path, ProjectConfig] = {}
    errors: dict[Path, list[ConfigError]] = {}
    owner_of: dict[str, Path] = {}
    for path in paths:
        try:
            config = load_project(path)
        except ProjectConfigError as exc:
            errors[path] = exc.errors
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
    """(line, column) of the value at `loc` in a project file (for checks made after loading)."""
    loader = _Loader(Path(path).read_text(encoding="utf-8"))
    try:
        return _position(loader.get_single_node(), loc)
    finally:
        loader.dispose()

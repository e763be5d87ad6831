"""Reading a study file: YAML -> :class:`StudySpec`, every mistake reported as one line naming file and field.

Messages look like ``spaces/x.yaml: space.optim.lr.low must be > 0 for log scale, got 0.0`` or
``x.yaml: unknown key 'shceduler' (did you mean 'scheduler'?)``, so the CLI can print them as they are.

YAML details that would otherwise surprise a study author:

- ``1e-6`` is a number. PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-6``) and ``1e-6`` is a
  string; Ray Tune and Optuna users write ``1e-6``, so the loader reads it as YAML 1.2 does.
- A key written twice in one mapping is an error (plain PyYAML keeps the last one silently).

Bundled files: a relative path that does not exist, given as ``NAME.yaml``, ``spaces/NAME.yaml`` or
``search_spaces/NAME.yaml``, falls back to the file of that name shipped in :mod:`search_spaces`, so
``agvp-hpo run spaces/mfho.yaml`` works from any directory. Other missing paths (absolute, or in another
folder) are errors: falling back there would hide a typo in a path the user meant.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpo.space import FieldError, field_error_from_validation
from hpo.study.spec import StudySpec
from search_spaces import BUNDLED_DIR
from trainers.errors import AgvpError

__all__ = [
    "StudyError",
    "bundled_study_names",
    "dump_study",
    "load_study",
    "loads_study",
    "parse_study",
    "resolve_study_path",
]

log = logging.getLogger(__name__)

#: Folders whose missing files fall back to the bundled study of the same name.
_FALLBACK_PARENTS = ("", ".", "spaces", "search_spaces")


class StudyError(AgvpError):
    """A study file that cannot be used. ``source`` is the file, ``field`` the dotted path ('' for the
    whole file) and ``rule`` what is wrong; ``str()`` is the one-line message ``source: ...``."""

    def __init__(self, source: str, message: str, *, field: str = "", rule: str = "") -> None:
        self.source = source
        self.field = field
        self.rule = rule or message
        super().__init__(f"{source}: {message}")


class _StudyLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 exponent floats and duplicate keys rejected (see the module docstring)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may legitimately repeat keys of the merged mapping
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base constructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def bundled_study_names() -> list[str]:
    """File names of the study files shipped in :mod:`search_spaces`."""
    return sorted(path.name for path in BUNDLED_DIR.glob("*.yaml"))


def resolve_study_path(path: str | Path) -> Path:
    """``path`` if it is a file; else the bundled study of that name (see the module docstring).

    Raises :class:`StudyError` naming the path and listing the bundled names when neither exists.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.exists():
        raise StudyError(str(path), "is a directory, not a study file")
    if not candidate.is_absolute() and candidate.parent.as_posix() in _FALLBACK_PARENTS:
        name = candidate.name if candidate.suffix else f"{candidate.name}.yaml"
        bundled = BUNDLED_DIR / name
        if bundled.is_file():
            log.info("%s not found here; using the bundled study file %s", path, bundled)
            return bundled
    names = ", ".join(bundled_study_names()) or "none"
    raise StudyError(str(path), f"file does not exist (bundled study files: {names})")


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file (with the bundled fallback). Every error is a :class:`StudyError`."""
    resolved = resolve_study_path(path)
    source = str(resolved)
    try:
        text = resolved.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise StudyError(source, f"is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise StudyError(source, f"cannot be read: {error.strerror or error}") from None
    return loads_study(text, source=source)


def loads_study(text: str, *, source: str = "<study>") -> StudySpec:
    """Validate study YAML given as text; ``source`` names it in error messages."""
    try:
        data = yaml.load(text, Loader=_StudyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(error.problem or error.context or "syntax error").split())
        raise StudyError(source, f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise StudyError(source, f"invalid YAML: {' '.join(str(error).split())}") from None
    return parse_study(data, source=source)


def parse_study(data: Any, *, source: str = "<study>") -> StudySpec:
    """Validate an already-parsed study (a mapping, e.g. from a REST request body)."""
    if data is None:
        raise StudyError(source, "is empty; a study needs name, space, fidelity, scheduler, budget, trainer")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise StudyError(
            source, f"top level must be a mapping of study settings (name, space, ...), got {kind}"
        )
    for key in data:
        if not isinstance(key, str):
            raise StudyError(source, f"top-level key {key!r} must be a string", field=str(key))
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        problem = field_error_from_validation(error, StudySpec)
    except FieldError as error:
        problem = error
    raise StudyError(source, " ".join(problem.message.split()), field=problem.field, rule=problem.rule)


def dump_study(spec: StudySpec) -> str:
    """YAML that :func:`loads_study` reads back to an equal spec (what the results folder keeps)."""
    return yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True)

"""Load YAML into pydantic models, reporting every error with file, line and field path.

Operators edit these files by hand at remote sites; an error has to point at the
line to fix (``agent.yaml:14 links[0].targets[2].interval: ...``), never be a
traceback. PyYAML's node tree keeps the line of every key and value, so we
compose the tree once, build plain Python values from it and remember where
each path came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located as precisely as we can."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class LocatedChecks:
    """Mixin for models with rules across fields: ``located_issues`` yields (path, message).

    pydantic's model validators cannot say *where* a cross-field problem is, so
    such rules run after validation and name the path themselves.
    """

    def located_issues(self) -> list[tuple[Loc, str]]:
        return []


class ConfigError(Exception):
    """Raised with every issue found, so the user can fix them all in one go."""

    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class LineMap:
    """Maps a value's path in the document to the 1-based line it was written on."""

    lines: dict[Loc, int] = field(default_factory=dict)

    def line_for(self, loc: Loc) -> int | None:
        """The line of the deepest known ancestor of ``loc``."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct(node: yaml.Node, loc: Loc, linemap: LineMap, loader: yaml.SafeLoader) -> Any:
    linemap.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, list | dict | set):
                raise ConfigError([ConfigIssue("", key_node.start_mark.line + 1, _render_loc(loc),
                                               "a key must be a plain name, not a list or mapping")])
            if key in out:
                raise ConfigError([ConfigIssue("", key_node.start_mark.line + 1,
                                               _render_loc(loc + (key,)), "duplicate key")])
            linemap.lines[loc + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, loc + (key,), linemap, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loc + (i,), linemap, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, filename: str = "<string>") -> tuple[Any, LineMap]:
    """Parse YAML text into plain values plus the line of every path in it."""
    linemap = LineMap()
    try:
        loader = _UniqueKeyLoader(text)  # the reader refuses control characters here, before parsing
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"invalid YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, linemap
        return _construct(node, (), linemap, loader), linemap
    except ConfigError as exc:
        raise ConfigError([ConfigIssue(filename, i.line, i.path, i.message) for i in exc.issues]) from None
    except yaml.MarkedYAMLError as exc:
        line, message = explain_yaml_error(exc)
        raise ConfigError([ConfigIssue(filename, line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


#: (words in the parser's context or problem, whether the context's line is the one to fix, the hint)
_YAML_HINTS: tuple[tuple[tuple[str, ...], bool, str], ...] = (
    (("'\\t'",), False, "a tab character: YAML indents with spaces only; replace the tab with spaces"),
    (("quoted scalar",), True, "a quoted value is not closed: add the closing quote on this line"),
    (("flow sequence",), True, "a '[' opened on this line is not closed with ']'"),
    (("flow mapping",), True, "a '{' opened on this line is not closed with '}'"),
    (("could not find expected ':'",), True,
     "a line without its ':' (write key: value, with a space after the colon)"),
    (("expected <block end>",), False,
     "this line is not indented like the lines above it: the keys of one section start in the same "
     "column, and a list's items start with '- ' in the same column (spaces, never tabs)"),
    (("mapping values are not allowed",), False,
     "a ': ' where none can be: put a value that contains ': ' in quotes (\"...\"); otherwise check "
     "this line's indentation and that the line above has its ':'"),
)


def explain_yaml_error(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line to fix and a plain hint for PyYAML's syntax errors (which speak of tokens and block ends)."""
    said = f"{exc.context or ''} {exc.problem or ''}"
    for words, at_context, hint in _YAML_HINTS:
        if any(w in said for w in words):
            mark = (exc.context_mark if at_context else None) or exc.problem_mark or exc.context_mark
            return (mark.line + 1 if mark else None), f"invalid YAML: {hint}"
    mark = exc.problem_mark or exc.context_mark
    return (mark.line + 1 if mark else None), f"invalid YAML: {exc.problem or exc}"


def _render_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _holds(node: Any, part: Any) -> bool:
    return (isinstance(node, dict) and part in node) or (
        isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))


def _clean_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Drop the tags pydantic inserts for unions (``icmp``, ``function-after[...]``).

    A tag can equal a key of the same mapping (a device of ``kind: snmp`` has an
    ``snmp:`` block): it is a tag when the next part is found beside it, not under it.
    """
    out: list[str | int] = []
    cursor = data
    for i, part in enumerate(loc):
        following = loc[i + 1] if i + 1 < len(loc) else None
        if isinstance(cursor, dict) and part in cursor and not (
                following is not None and _holds(cursor, following) and not _holds(cursor[part], following)):
            out.append(part)
            cursor = cursor[part]
        elif isinstance(cursor, list) and isinstance(part, int) and 0 <= part < len(cursor):
            out.append(part)
            cursor = cursor[part]
        # anything else is a union/validator tag, not a place in the document
    return tuple(out)


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and indentation)"
    if kind in ("missing", "union_tag_not_found"):
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{ctx.get('tag')!r} is not one of {expected}"
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if "input" in err and not isinstance(err["input"], dict | list):
        shown = "null" if err["input"] is None else repr(err["input"])
        # our own validators say "is not a duration ...": read as a sentence after the value
        return f"{shown} {msg}" if msg.startswith(("is ", "must ")) else f"{shown}: {msg}"
    return msg


def issues_from_validation(exc: ValidationError, data: Any, linemap: LineMap, filename: str) -> list[ConfigIssue]:
    """Turn a pydantic error into one located issue per problem."""
    issues = []
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]), data)
        full = tuple(err["loc"])
        # for a missing or unknown key, the key itself is the field to name
        if err.get("type") in ("missing", "extra_forbidden") and full and full[-1] not in loc:
            path = _render_loc(loc + (full[-1],))
        elif err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            field_name = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
            path = _render_loc(loc + (field_name,))
            loc = loc + (field_name,)
        else:
            path = _render_loc(loc)
        issues.append(ConfigIssue(filename, linemap.line_for(loc), path, _message(err)))
    return issues


def load_model(model: type[M], path: str | Path) -> M:
    """Read ``path`` and validate it as ``model``; raise ConfigError naming file, line, field."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"cannot read: {exc}")]) from None
    return parse_model(model, text, filename)


def parse_model(model: type[M], text: str, filename: str = "<string>") -> M:
    """Validate YAML text as ``model``; raise ConfigError naming file, line, field."""
    data, linemap = load_yaml(text, filename)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(filename, 1, "", "the file must be a YAML mapping")])
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc, data, linemap, filename)) from None
    cross = getattr(obj, "located_issues", None)
    found = list(cross()) if cross else []
    if found:
        raise ConfigError([ConfigIssue(filename, linemap.line_for(loc), _render_loc(loc), msg) for loc, msg in found])
    return obj

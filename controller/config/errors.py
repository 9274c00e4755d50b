"""Config errors as people read them: every problem as `key.path[index].name (line N): what is wrong;
expected ...`, with a did-you-mean hint for an unknown key.

`issues_from_validation` turns pydantic's errors into `ConfigIssue`s, following the config's model tree
(from its root model) to drop pydantic's internal location entries and to name the keys a section allows,
and the composed YAML tree to find each key's line. Validators raise `LocatedError` for a cross-field
problem, to point at the exact key it is about.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "ConfigIssue", "LocatedError", "describe_kind", "issues_from_validation"]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where (`path`, e.g. `cameras[2].source.seed`) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """A deployment config that cannot be used. `str(err)` is a readable multi-line report."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        head = f"invalid deployment config {source}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(f"  - {issue}" for issue in self.issues)]))

    @property
    def paths(self) -> list[str]:
        return [issue.path for issue in self.issues]


class LocatedError(ValueError):
    """A cross-field error raised in a validator, pointing at a key path relative to the validated object."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def issues_from_validation(
    exc: ValidationError, root: type[BaseModel], node: yaml.Node | None
) -> list[ConfigIssue]:
    """The readable issues of a failed validation of `root`; `node`: the composed YAML, for line numbers."""
    return _dedupe([_issue_from_pydantic(err, root, node) for err in exc.errors(include_url=False)])


_SECRET_KEYS = {"admin_key"}


def _issue_from_pydantic(
    err: Mapping[str, Any], root: type[BaseModel], node: yaml.Node | None
) -> ConfigIssue:
    raw_loc: tuple[str | int, ...] = tuple(err.get("loc", ()))
    loc, model = _clean_loc(raw_loc, root)
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    located = ctx.get("error")
    if isinstance(located, LocatedError):  # a cross-field check that knows the exact key
        full = loc + located.loc
        return ConfigIssue(_format_loc(full), located.message, _line_of(node, full))
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        message = _unknown_key_message(str(loc[-1]) if loc else "", model)
    elif kind == "union_tag_invalid":
        message = f"unknown {ctx.get('discriminator', 'kind')} {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        message = f"missing {ctx.get('discriminator', 'kind')}; expected one of its values"
    elif kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        message = (
            "expected a name of 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit "
            f"(it becomes a Triton model name); got {err.get('input')!r}"
        )
    else:
        message = _expectation(err)
        if (
            loc
            and loc[-1] not in _SECRET_KEYS
            and "input" in err
            and not isinstance(err["input"], (Mapping, list))
        ):
            message += f"; got {_short(err['input'])}"
    return ConfigIssue(_format_loc(loc), message, _line_of(node, loc))


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_TYPES = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "dict_type": "a mapping",
}


def _expectation(err: Mapping[str, Any]) -> str:
    """Pydantic's message, phrased as what is expected."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"expected a number {_BOUNDS[kind]} {bound}"
    if kind in _TYPES:
        return f"expected {_TYPES[kind]}"
    if kind == "too_short" and ctx.get("min_length") is not None:
        return f"expected at least {ctx['min_length']} item(s)"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    for prefix in ("Input should be ", "input should be "):
        if msg.startswith(prefix):
            return "expected " + msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_kind(value: Any) -> str:
    """What a value is ('a list', 'a string', 'a dict'), for messages about the wrong kind of value."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


_SYNONYMS = {
    "learning_rate": "lr",
    "batch": "batch_size",
    "layers_trained": "layers",
    "password": "admin_key_file",
}


def _unknown_key_message(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return "unknown key"
    allowed = [name for name, field in model.model_fields.items() if not field.exclude]
    close = (
        [_SYNONYMS[key]] if _SYNONYMS.get(key) in allowed else difflib.get_close_matches(key, allowed, n=1)
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; expected one of: {', '.join(allowed)}"


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            out.append(issue)
    return out


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(
    loc: tuple[str | int, ...], root: type[BaseModel]
) -> tuple[tuple[str | int, ...], type[BaseModel] | None]:
    """Drop pydantic's union-tag / validator entries from an error location, following the model tree.

    Returns the user-facing key path and the model class that owns the last key (for unknown-key hints).
    """
    out: list[str | int] = []
    current: Any = root
    owner: type[BaseModel] | None = root
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        i += 1
        if isinstance(part, int):
            out.append(part)
            current = _list_item(current)
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            field = current.model_fields.get(part)
            out.append(part)
            if field is None:
                current = None
                continue
            current = field.annotation
            variants = _union_models(current)
            if variants and i < len(parts) and isinstance(parts[i], str):
                tagged = _pick_variant(variants, str(parts[i]))
                if tagged is not None:
                    i += 1
                    current = tagged
            elif len(variants) == 1:
                current = variants[0]
            continue
        # a type label pydantic inserted (e.g. 'function-after[...]'): skip it; keep real keys
        if "[" in part or "(" in part:
            continue
        out.append(part)
        current = None
    return tuple(out), owner


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_models(tp: Any) -> list[type[BaseModel]]:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp) if origin in (Union, types.UnionType) else (tp,)
    out = []
    for arg in args:
        arg = _strip_annotated(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            out.append(arg)
    return out


def _list_item(tp: Any) -> Any:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if typing.get_origin(_strip_annotated(arg)) is list:
                tp = _strip_annotated(arg)
                break
    if typing.get_origin(tp) is list:
        item = _strip_annotated(typing.get_args(tp)[0])
        models = _union_models(item)
        return models[0] if len(models) == 1 else item
    return None


def _pick_variant(variants: list[type[BaseModel]], tag: str) -> type[BaseModel] | None:
    for variant in variants:
        for field_name in ("kind", "mode"):
            field = variant.model_fields.get(field_name)
            if field is not None and tag in typing.get_args(field.annotation):
                return variant
    return None


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """1-based line of the deepest existing node on `loc` in the composed YAML tree."""
    if node is None:
        return None
    line = None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) == part:
                    line = key_node.start_mark.line + 1
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line

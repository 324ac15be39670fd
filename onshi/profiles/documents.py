"""From a profile file to one merged mapping: find it, read strict YAML, check it against the
JSON Schema (translating the first relevant error into a :class:`ProfileError`), follow
``extends`` and lay the schema's defaults underneath.

Merge rule: mappings merge key by key (recursively); scalars, lists and null replace the
inherited value; a parent's ``description`` and ``seed`` are never inherited.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

from onshi.profiles.errors import ProfileError

__all__ = ["locate", "merged_document", "profiles_dir", "read_yaml", "schema_path"]


def _shipped_profiles() -> Path:
    """The repository's ``card_profiles/`` (a checkout or an editable install), else the copy a
    wheel installs as the data package ``onshi/card_profiles``."""
    here = Path(__file__).resolve()
    repo = here.parents[2] / "card_profiles"
    return repo if repo.is_dir() else here.parents[1] / "card_profiles"


_REPO_PROFILES = _shipped_profiles()


# --- locations ------------------------------------------------------------------------------


def profiles_dir() -> Path:
    """``$ONSHI_PROFILES_DIR``, else the repository's ``card_profiles/``."""
    env = os.environ.get("ONSHI_PROFILES_DIR")
    return Path(env) if env else _REPO_PROFILES


def _search_dirs() -> tuple[Path, ...]:
    """Where ``extends`` looks after the file's own directory: the profiles directory, then the
    shipped profiles (so a custom directory can still say ``extends: valid``)."""
    return tuple(dict.fromkeys((profiles_dir(), _REPO_PROFILES)))


def schema_path() -> Path:
    """The JSON Schema every profile is checked against (always the repository's copy)."""
    return _REPO_PROFILES / "schema.json"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _known_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def locate(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path)
        or "/" in text
        or os.sep in text
        or text.endswith((".yaml", ".yml"))
    )
    if looks_like_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(
                path, "", "no such profile file", fix="check the path, or pass a profile name"
            )
        return path
    directory = profiles_dir()
    path = directory / f"{text}.yaml"
    if not path.is_file():
        known = _known_names(directory)
        raise ProfileError(
            directory,
            "",
            f"unknown profile {text!r}",
            fix=f"use one of: {', '.join(known)}" if known else "set ONSHI_PROFILES_DIR",
        )
    return path


# --- YAML -----------------------------------------------------------------------------------


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser is ~10x faster


class _StrictLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that keeps dates as text (we resolve them) and rejects duplicate keys."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        self.key = key
        self.line = line


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            continue  # construct_mapping reports the unhashable key with its line
        if key in seen:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProfileError(
            path, "", f"cannot read ({exc.strerror})", fix="check the path"
        ) from None


def read_yaml(path: Path, raw: bytes | None = None) -> dict[str, Any]:
    """The profile file as a mapping (dates kept as text); ProfileError if it is not one."""
    raw = _read_bytes(path) if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            path, "", f"not UTF-8 text ({exc.reason})", fix="save it as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as exc:
        raise ProfileError(
            path, f"line {exc.line}", f"duplicate key {exc.key!r}", fix="keep one of them"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise ProfileError(
            path,
            where,
            f"YAML syntax error: {exc.problem or exc.context}",
            fix="check indentation, quoting and the ':' after each key on that line",
        ) from None
    except yaml.YAMLError as exc:
        raise ProfileError(path, "", f"YAML error: {exc}", fix="fix the YAML syntax") from None
    if data is None:
        raise ProfileError(
            path, "", "the file is empty", fix="write at least 'description:' and 'extends: valid'"
        )
    if not isinstance(data, dict):
        raise ProfileError(
            path,
            "",
            f"the top level must be a mapping of fields, got {type(data).__name__}",
            fix="write 'field: value' lines, e.g. 'description: ...'",
        )
    return data


# --- schema errors --------------------------------------------------------------------------


def _field_path(error: ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _example(schema: Mapping[str, Any]) -> str | None:
    resolved = _resolve(schema)
    examples = resolved.get("examples") or schema.get("examples")
    return json.dumps(examples[0], ensure_ascii=False) if examples else None


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**_validator().schema["$defs"][ref.removeprefix("#/$defs/")], **schema}
    return schema


_KIND_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "object": "a mapping of fields",
    "array": "a list",
    "null": "null",
}


def _translate(path: Path, error: ValidationError) -> ProfileError:
    """One jsonschema error -> one ProfileError whose fix says what to write instead."""
    field = _field_path(error)
    schema = _resolve(error.schema) if isinstance(error.schema, Mapping) else {}
    got = json.dumps(error.instance, ensure_ascii=False, default=str)
    if len(got) > 60:
        got = got[:57] + "..."
    example = _example(schema)
    description = str(schema.get("description", "")).rstrip(".")
    kind = error.validator
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = sorted(error.schema.get("properties", {}))
        name = extra[0] if extra else "?"
        close = difflib.get_close_matches(str(name), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        where = f"{field}.{name}" if field != "(top level)" else str(name)
        return ProfileError(
            path,
            where,
            "unknown field",
            fix=f"{hint}remove it or use one of: {', '.join(allowed)}",
        )
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        where = f"{field}.{missing}" if field != "(top level)" else missing
        return ProfileError(path, where, "missing", fix=f"add '{missing}:'")
    if kind == "enum":
        options = ", ".join(str(o) for o in error.validator_value if o is not None)
        return ProfileError(
            path, field, f"must be one of {options}, got {got}", fix=f"write one of: {options}"
        )
    rule = schema.get("x-rule")
    custom_fix = schema.get("x-fix")
    if kind == "type":
        wanted = error.validator_value
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        unquoted = "string" in str(wanted) and isinstance(error.instance, int | float)
        problem = f"must be {rule or wanted_text}, got {got}"
        if unquoted:
            problem += " (YAML read an unquoted number)"
        fix = custom_fix or "write " + " or ".join(
            _KIND_WORDS.get(w, w) for w in (wanted if isinstance(wanted, list) else [wanted])
        )
        if example:
            fix += f", e.g. {example}"
        return ProfileError(path, field, problem, fix=fix)
    if kind == "pattern":
        problem = f"must be {rule}, got {got}" if rule else f"has the wrong form, got {got}"
        fix = custom_fix or (f"write {description}" if description else "see the schema")
        if example:
            fix += f", e.g. {example}"
        return ProfileError(path, field, problem, fix=fix)
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = "at least" if "inimum" in kind else "at most"
        return ProfileError(
            path,
            field,
            f"must be {bound} {error.validator_value}, got {got}",
            fix=f"write a number {bound} {error.validator_value}",
        )
    if kind == "minLength":
        return ProfileError(path, field, "must not be empty", fix="write some text")
    if kind == "uniqueItems":
        return ProfileError(path, field, f"has duplicates: {got}", fix="list each item once")
    return ProfileError(
        path, field, error.message, fix=description or "see card_profiles/schema.json"
    )


def _non_finite(node: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinity (JSON Schema's bounds never reject NaN)."""
    if isinstance(node, float) and not math.isfinite(node):
        return where or "(top level)"
    if isinstance(node, Mapping):
        children = [(f"{where}.{k}" if where else str(k), v) for k, v in node.items()]
    elif isinstance(node, list):
        children = [(f"{where}[{i}]", v) for i, v in enumerate(node)]
    else:
        children = []
    for step, value in children:
        found = _non_finite(value, step)
        if found:
            return found
    return None


def _schema_check(path: Path, data: Mapping[str, Any]) -> None:
    where = _non_finite(data)
    if where is not None:
        raise ProfileError(path, where, "must be a finite number", fix="write a plain number")
    error = best_match(_validator().iter_errors(data))
    if error is not None:
        raise _translate(path, error)


# --- extends and defaults -------------------------------------------------------------------


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


_DOCUMENTS: dict[tuple[Path, bytes], dict[str, Any]] = {}
_DOCUMENTS_MAX = 512


def _checked_document(path: Path) -> dict[str, Any]:
    """``read_yaml`` + schema check, cached by content: a shared parent parses once."""
    raw = _read_bytes(path)
    key = (path.resolve(), hashlib.blake2b(raw, digest_size=16).digest())
    cached = _DOCUMENTS.get(key)
    if cached is None:
        cached = read_yaml(path, raw)
        _schema_check(path, cached)
        if len(_DOCUMENTS) >= _DOCUMENTS_MAX:
            _DOCUMENTS.clear()
        _DOCUMENTS[key] = cached
    return copy.deepcopy(cached)


def _raw_with_parents(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's fields with its ``extends`` chain merged underneath."""
    resolved = path.resolve()
    if resolved in chain:
        names = " -> ".join(p.stem for p in (*chain, resolved))
        raise ProfileError(path, "extends", f"cycle: {names}", fix="remove one of the 'extends'")
    data = _checked_document(path)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data
    candidates = [directory / f"{parent_name}.yaml" for directory in (path.parent, *_search_dirs())]
    parent_path = next((c for c in candidates if c.is_file()), None)
    if parent_path is None:
        known = sorted({n for d in (path.parent, *_search_dirs()) for n in _known_names(d)})
        known = [n for n in known if n != path.stem]
        raise ProfileError(
            path,
            "extends",
            f"unknown profile {parent_name!r}",
            fix=f"use one of: {', '.join(known)}" if known else "name an existing profile",
        )
    parent = _raw_with_parents(parent_path, (*chain, resolved))
    parent.pop("description", None)
    parent.pop("seed", None)
    return _merge(parent, data)


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``default`` in the schema, nested as the profile is (one source of truth)."""
    out: dict[str, Any] = {}
    for name, sub in schema.get("properties", {}).items():
        sub = _resolve(sub)
        if "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        elif sub.get("type") == "object":
            out[name] = _defaults(sub)
    return out


def merged_document(path: Path) -> dict[str, Any]:
    """The profile at ``path`` with its ``extends`` chain and the schema defaults underneath."""
    return _merge(_defaults(_validator().schema), _raw_with_parents(path))

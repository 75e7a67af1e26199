"""One config style for every job: a dataclass, a YAML file, flags that override it.

Each job (ingest, tokenize, train) describes its knobs as a dataclass. A run file holds its
values, either flat or under the job's section (``ingest:``, ``tokenize:``, ``train:``), so one
file can configure a chained run. ``--set key.path=value`` and the command's named flags
override the file; precedence is ``defaults < file < named flags < --set``.

Loading is strict: an unknown key fails with its dotted path and the keys that exist there, so
a typo never silently trains with the default. Values are coerced to the field types that the
YAML cannot spell (tuples from lists or comma strings, floats from ``5e-3``).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar, Union

import yaml

from accord.core.errors import ConfigError, InputNotFound
from accord.core.storage import read_bytes

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a mistyped ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# The sections a run file may hold, one per job. A file with none of them is one job's config.
SECTIONS: tuple[str, ...] = ("ingest", "tokenize", "train")

# Field metadata key: a dict field whose configured value is merged over its default (e.g. ASR
# model refs: naming one system's model keeps the others' defaults).
MERGE_OVER_DEFAULT = "merge_over_default"


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key!r}: {p!r} is set to a value and used as a section")
            node = child
        node[parts[-1]] = value
    return out


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x,y"]`` -> ``{"a": {"b": 1}, "c": "x,y"}``; values are YAML scalars
    (``--set key=value``)."""
    dotted: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set batch_size=16")
        try:
            dotted[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not YAML ({_first_line(e)})") from None
    return nest(dotted)


def deep_merge(
    base: Mapping[str, Any], over: Mapping[str, Any], replace: Collection[str] = ()
) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: nested dicts merge key by key, anything else
    (and a dict under a key named in ``replace``) replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in replace:
            out[k] = deep_merge(out[k], v, replace)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(uri: str, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping from any URI :mod:`accord.core.storage` opens (an empty file is ``{}``); a
    missing file is :class:`InputNotFound`, one that is not a YAML mapping :class:`ConfigError`,
    both naming it as ``what``."""
    try:
        raw = read_bytes(uri)
    except FileNotFoundError:
        raise InputNotFound(f"{what} {uri}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {uri}: is a directory, not a YAML file") from None
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {uri}: not valid YAML ({_first_line(e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {uri}: holds a {type(data).__name__}, expected a mapping")
    return data


def _first_line(e: Exception) -> str:
    """The first line of a (multi-line) parser error, for a one-line message."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


def select_section(data: Mapping[str, Any], section: str | None, owner: str | None = None) -> dict[str, Any]:
    """The part of a run file (or of ``--set`` values) that configures ``section``.

    Keys under a :data:`SECTIONS` name belong to that job; the other (un-sectioned) keys belong
    to ``owner``, the job of the command that reads them (default: ``section`` itself). So a
    flat file configures one job, and ``accord ingest --set tokenize.min_stage=anneal1`` reaches
    the chained tokenize while ``--set asr=moonshine`` stays with the ingest.
    """
    if section is None:
        return dict(data)
    own = {k: v for k, v in data.items() if k not in SECTIONS} if (owner or section) == section else {}
    return deep_merge(own, data.get(section) or {})


def load_overrides(
    path: str | None = None,
    sets: Iterable[str] = (),
    section: str | None = None,
    flags: Mapping[str, Any] | None = None,
    owner: str | None = None,
    replace: Collection[str] = (),
) -> dict[str, Any]:
    """The nested values a command gives ``section``: ``file < flags < --set`` (``owner``: see
    :func:`select_section`; ``replace``: see :func:`deep_merge`)."""
    data = select_section(read_yaml(path), section, owner) if path else {}
    if flags:
        data = deep_merge(data, flags, replace)
    return deep_merge(data, select_section(parse_sets(sets), section, owner), replace)


def load_config(
    cls: type[T],
    path: str | None = None,
    sets: Iterable[str] = (),
    section: str | None = None,
    flags: Mapping[str, Any] | None = None,
    owner: str | None = None,
) -> T:
    """``cls`` from its defaults, the YAML at ``path`` (its ``section``), ``flags`` and ``sets``."""
    return from_dict(cls, load_overrides(path, sets, section, flags, owner), path=section or "")


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "", name: str | None = None) -> T:
    """A ``cls`` dataclass from a nested mapping; missing keys keep their defaults.

    ``path`` is the dotted location of ``data`` (for messages); ``name`` names the top level
    in messages when ``path`` is empty (default: the class name).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or name or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = path or name or cls.__name__
        dotted = ", ".join(_join(path, k) for k in unknown)
        hints = "".join(did_you_mean(k, fields) for k in unknown)
        raise ConfigError(f"unknown {where} keys: {dotted}; known: {', '.join(sorted(fields))}{hints}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = fields[key]
        if f.metadata.get(MERGE_OVER_DEFAULT) and isinstance(value, Mapping):
            value = {**_default(f), **value}
        kwargs[key] = _coerce(value, hints[key], _join(path, key))
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A dataclass (or container of them) as plain YAML/JSON data: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return copy.deepcopy(obj)


def field_default(cls: type, dotted: str) -> Any:
    """The default of a (nested) dataclass field, e.g. ``field_default(TokenizeConfig,
    "codec.ref")``: for help texts that show the owner's default instead of restating it."""
    head, _, rest = dotted.partition(".")
    f = {f.name: f for f in dataclasses.fields(cls)}[head]
    value = _default(f)
    return field_default(type(value), rest) if rest else value


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` as ``hint`` where the YAML cannot spell it; a clear error where it is wrong."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(value, options[0], path) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, path)
    if origin is tuple or origin is list:
        if isinstance(value, str):
            value = [x.strip() for x in value.split(",") if x.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} values, got {list(value)!r}")
            items = [_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            items = [_coerce(v, args[0] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, _join(path, str(k))) for k, v in value.items()}
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value

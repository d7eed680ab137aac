"""Type-preserving encoding of values into the journal.

A value is turned into a JSON tree in which every type JSON cannot carry is a one-key object
tagged with a `$` name (`{"$dt": [...]}`, `{"$model": [...]}`), so decoding restores a value that
is equal to the original and of the same type: pydantic models, dataclasses, enums, named tuples,
datetimes, bytes, tuples, sets, decimals, UUIDs. A user dict with a key starting with `$` is
escaped as `$map`, so tags never collide with data.

Two byte forms come from one tree:
- `dumps` keeps dict order (what replay must reproduce: code may iterate the dict);
- `canonical` sorts keys and is what fingerprints hash (the same meaning gives the same bytes).

`CODEC_VERSION` names this encoding; fingerprints carry it so a future encoding can tell them apart.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import pathlib
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pydantic

from ..errors import SerializationError

CODEC_VERSION = 1

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_SCALARS: frozenset[type] = frozenset({str, bool, type(None)})


def dumps(value: Any) -> bytes:
    """Encode a value to JSON bytes that decode back to an equal value of the same type."""
    return orjson.dumps(encode(value))


def loads(data: bytes) -> Any:
    """Decode bytes made by `dumps`."""
    return decode(orjson.loads(data))


def canonical(tree: Any) -> bytes:
    """Canonical bytes of an encoded tree (sorted keys), for fingerprints."""
    return orjson.dumps(tree, option=orjson.OPT_SORT_KEYS)


def encode(value: Any, path: str = "value") -> Any:
    """Encode a value into a JSON tree; raise `SerializationError` naming the path on failure."""
    cls = type(value)
    if cls is str:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return {"$s": _b64(value.encode("utf-8", "surrogatepass"))}
        return value
    if cls is int:
        return value if _INT_MIN <= value <= _INT_MAX else {"$i": str(value)}
    if cls in _SCALARS:
        return value
    if cls is float:
        if value != value or value in (float("inf"), float("-inf")):
            return {"$f": repr(value)}
        return value
    if cls is list:
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if cls is dict:
        return _encode_dict(value, path)
    encoder = _ENCODERS.get(cls)
    if encoder is not None:
        return encoder(value, path)
    return _encode_other(value, path)


def _encode_dict(value: dict[Any, Any], path: str) -> Any:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if type(k) is not str or k.startswith("$"):
            return {
                "$map": [[encode(k, path), encode(v, f"{path}[{k!r}]")] for k, v in value.items()]
            }
        out[k] = encode(v, f"{path}[{k!r}]")
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode_set(tag: str) -> Any:
    def enc(value: Any, path: str) -> Any:
        items = [encode(v, f"{path}{{}}") for v in value]
        # Sets have no order; sort by canonical bytes so equal sets encode identically.
        items.sort(key=canonical)
        return {tag: items}

    return enc


def _encode_datetime(value: dt.datetime, path: str) -> Any:
    tz = value.tzinfo
    zone = tz.key if isinstance(tz, ZoneInfo) else None
    return {"$dt": [value.isoformat(), zone, value.fold]}


_ENCODERS: dict[type, Any] = {
    tuple: lambda v, p: {"$t": [encode(x, f"{p}[{i}]") for i, x in enumerate(v)]},
    bytes: lambda v, p: {"$b": _b64(v)},
    bytearray: lambda v, p: {"$ba": _b64(bytes(v))},
    set: _encode_set("$set"),
    frozenset: _encode_set("$fs"),
    dt.datetime: _encode_datetime,
    dt.date: lambda v, p: {"$d": v.isoformat()},
    dt.time: lambda v, p: {"$tm": [v.isoformat(), v.fold]},
    dt.timedelta: lambda v, p: {"$td": [v.days, v.seconds, v.microseconds]},
    decimal.Decimal: lambda v, p: {"$dec": str(v)},
    uuid.UUID: lambda v, p: {"$uuid": str(v)},
    pathlib.PurePosixPath: lambda v, p: {"$pp": str(v)},
    pathlib.PosixPath: lambda v, p: {"$path": str(v)},
}


def _encode_other(value: Any, path: str) -> Any:
    cls = type(value)
    if isinstance(value, enum.Enum):
        return {"$enum": [class_ref(cls, path), value.name]}
    if isinstance(value, pydantic.BaseModel):
        return _encode_model(value, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        state = (
            value.__dict__
            if hasattr(value, "__dict__")
            else {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        )
        fields = {k: encode(v, f"{path}.{k}") for k, v in state.items()}
        return {"$dc": [class_ref(cls, path), fields]}
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return {
            "$nt": [
                class_ref(cls, path),
                [encode(v, f"{path}.{f}") for f, v in zip(cls._fields, value, strict=True)],
            ]
        }
    raise SerializationError(
        f"{path}: cannot journal a value of type {cls.__module__}.{cls.__qualname__}; "
        "use plain data (str, int, float, bool, None, list, dict, tuple, set, bytes, datetime, "
        "Decimal, UUID, Path), an Enum, a dataclass or a pydantic model defined at module level"
    )


def _encode_model(value: pydantic.BaseModel, path: str) -> Any:
    cls = type(value)
    fields = {k: encode(v, f"{path}.{k}") for k, v in value.__dict__.items()}
    extra = value.__pydantic_extra__
    private = value.__pydantic_private__
    return {
        "$model": [
            class_ref(cls, path),
            fields,
            sorted(value.__pydantic_fields_set__),
            encode(extra, f"{path}.<extra>") if extra else None,
            encode(private, f"{path}.<private>") if private else None,
        ]
    }


_REFS: dict[type, str] = {}
_CLASSES: dict[str, type] = {}


def class_ref(cls: type, path: str = "value") -> str:
    """`module:qualname` of a class, checked once to import back to the same class."""
    ref = _REFS.get(cls)
    if ref is not None:
        return ref
    ref = f"{cls.__module__}:{cls.__qualname__}"
    if "<locals>" in cls.__qualname__ or "[" in cls.__qualname__:
        raise SerializationError(
            f"{path}: class {cls.__qualname__!r} is defined inside a function (or is a "
            "parametrised generic), so a resumed run could not import it back; define it at "
            "module level"
        )
    try:
        found = resolve_class(ref)
    except SerializationError:
        found = None
    if found is not cls:
        raise SerializationError(
            f"{path}: class {ref!r} does not import back to the same class; define it at "
            "module level under its own name"
        )
    _REFS[cls] = ref
    return ref


def resolve_class(ref: str) -> Any:
    """Import the class named by a `module:qualname` reference."""
    cls = _CLASSES.get(ref)
    if cls is not None:
        return cls
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SerializationError(
            f"the journal refers to class {ref!r}, which does not import here ({exc}); "
            "install or restore the code that defines it"
        ) from exc
    if not isinstance(obj, type):
        raise SerializationError(f"the journal refers to {ref!r}, which is not a class")
    _CLASSES[ref] = obj
    return obj


def decode(tree: Any) -> Any:
    """Decode a tree made by `encode`."""
    cls = type(tree)
    if cls is list:
        return [decode(v) for v in tree]
    if cls is dict:
        if len(tree) == 1:
            ((tag, arg),) = tree.items()
            if tag[:1] == "$":
                return _DECODERS[tag](arg)
        return {k: decode(v) for k, v in tree.items()}
    return tree


def _decode_datetime(arg: list[Any]) -> dt.datetime:
    iso, zone, fold = arg
    value = dt.datetime.fromisoformat(iso)
    if zone is not None:
        value = value.astimezone(ZoneInfo(zone))
    return value.replace(fold=fold)


def _decode_time(arg: list[Any]) -> dt.time:
    return dt.time.fromisoformat(arg[0]).replace(fold=arg[1])


def _decode_dataclass(arg: list[Any]) -> Any:
    cls = resolve_class(arg[0])
    obj = cls.__new__(cls)
    for k, v in arg[1].items():
        # object.__setattr__ also restores frozen dataclasses, without re-running __init__.
        object.__setattr__(obj, k, decode(v))
    return obj


def _decode_model(arg: list[Any]) -> Any:
    ref, fields, fields_set, extra, private = arg
    cls = resolve_class(ref)
    values = {k: decode(v) for k, v in fields.items()}
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(fields_set))
    object.__setattr__(
        obj,
        "__pydantic_extra__",
        decode(extra)
        if extra is not None
        else (None if cls.model_config.get("extra") != "allow" else {}),
    )
    object.__setattr__(
        obj,
        "__pydantic_private__",
        decode(private)
        if private is not None
        else (None if not cls.__private_attributes__ else {}),
    )
    return obj


def _decode_named_tuple(arg: list[Any]) -> Any:
    return resolve_class(arg[0])(*[decode(v) for v in arg[1]])


_DECODERS: dict[str, Any] = {
    "$s": lambda a: base64.b64decode(a).decode("utf-8", "surrogatepass"),
    "$i": int,
    "$f": float,
    "$t": lambda a: tuple(decode(v) for v in a),
    "$b": base64.b64decode,
    "$ba": lambda a: bytearray(base64.b64decode(a)),
    "$set": lambda a: {decode(v) for v in a},
    "$fs": lambda a: frozenset(decode(v) for v in a),
    "$map": lambda a: {decode(k): decode(v) for k, v in a},
    "$dt": _decode_datetime,
    "$d": dt.date.fromisoformat,
    "$tm": _decode_time,
    "$td": lambda a: dt.timedelta(days=a[0], seconds=a[1], microseconds=a[2]),
    "$dec": decimal.Decimal,
    "$uuid": uuid.UUID,
    "$pp": pathlib.PurePosixPath,
    "$path": pathlib.Path,
    "$enum": lambda a: resolve_class(a[0])[a[1]],
    "$model": _decode_model,
    "$dc": _decode_dataclass,
    "$nt": _decode_named_tuple,
}

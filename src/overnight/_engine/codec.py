"""Type-preserving encoding of values into the journal.

A value is turned into a JSON tree in which every type JSON cannot carry is a one-key object
tagged with a `$` name (`{"$dt": [...]}`, `{"$model": [...]}`), so decoding restores a value that
is equal to the original and of the same type: pydantic models, dataclasses, enums, named tuples,
datetimes, bytes, tuples, sets, decimals, UUIDs. A user dict with a key starting with `$` is
escaped as `$map`, so tags never collide with data.

Two byte forms come from one tree:
- `dumps` keeps dict order (what replay must reproduce: code may iterate the dict);
- `canonical` sorts keys and is what fingerprints hash (the same meaning gives the same bytes).
  It tells apart values Python calls equal but replay restores differently: 1, 1.0 and True;
  0.0 and -0.0; a list and a tuple.

`CODEC_VERSION` names this encoding; fingerprints carry it so a future encoding can tell them apart.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pydantic
from pydantic_core import TzInfo

from ..errors import SerializationError
from .refs import import_ref

CODEC_VERSION = 1

# The integer range orjson writes as a JSON number; others go through `$i`.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_SCALARS: frozenset[type] = frozenset({str, bool, type(None)})
_INFINITIES = (float("inf"), float("-inf"))


def dumps(value: Any) -> bytes:
    """Encode a value to JSON bytes that decode back to an equal value of the same type."""
    return _json(encode(value))


def loads(data: bytes) -> Any:
    """Decode bytes made by `dumps`."""
    return decode(orjson.loads(data))


def canonical(tree: Any) -> bytes:
    """Canonical bytes of an encoded tree (sorted keys, sorted `$map` pairs), for fingerprints."""
    data = _json(tree, orjson.OPT_SORT_KEYS)
    # Dicts with non-str keys are lists of pairs in insertion order; only they need a walk.
    if b'"$map"' not in data:
        return data
    return orjson.dumps(_sort_maps(tree), option=orjson.OPT_SORT_KEYS)


def _json(tree: Any, option: int = 0) -> bytes:
    try:
        return orjson.dumps(tree, option=option)
    except orjson.JSONEncodeError as exc:
        # The encoder hands orjson only what it can write, except trees over its depth limit.
        raise SerializationError(
            f"value: cannot be written as JSON ({exc}): it is nested more than about 250 "
            "levels deep (a tuple, set or object counts two); journal a flatter value"
        ) from None


def _sort_maps(tree: Any) -> Any:
    cls = type(tree)
    if cls is list:
        return [_sort_maps(v) for v in tree]
    if cls is not dict:
        return tree
    if len(tree) == 1 and "$map" in tree:
        pairs = [[_sort_maps(k), _sort_maps(v)] for k, v in tree["$map"]]
        pairs.sort(key=lambda pair: orjson.dumps(pair, option=orjson.OPT_SORT_KEYS))
        return {"$map": pairs}
    return {k: _sort_maps(v) for k, v in tree.items()}


# -- encoding -------------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised inside the encoder; each container on the way out adds its step to the path.

    Building the path only on failure keeps string formatting off the hot path.
    """

    def __init__(self, child: Any, reason: str) -> None:
        self.child = child  # the value that failed, at the level the exception has reached
        self.reason = reason
        self.steps: list[str] = []

    def at(self, step: str, container: Any) -> _Unsupported:
        self.steps.append(step)
        self.child = container
        return self


def encode(value: Any, path: str = "value") -> Any:
    """Encode a value into a JSON tree; raise `SerializationError` naming the path on failure."""
    try:
        return _encode(value)
    except _Unsupported as exc:
        raise SerializationError(f"{path}{''.join(reversed(exc.steps))}: {exc.reason}") from None
    except RecursionError:
        raise SerializationError(
            f"{path}: nested too deeply, or contains itself; journal a flatter value"
        ) from None


def _encode(value: Any) -> Any:
    cls = type(value)
    if cls is str:
        if value.isascii() or not _has_surrogates(value):
            return value
        return {"$s": _b64(value.encode("utf-8", "surrogatepass"))}
    if cls is int:
        # Hex, not decimal: Python refuses decimal conversion of ints over 4300 digits.
        return value if _INT_MIN <= value <= _INT_MAX else {"$i": hex(value)}
    if cls in _SCALARS:
        return value
    if cls is float:
        # JSON has no nan or infinities; -0.0 it keeps (orjson writes "-0.0").
        return {"$f": repr(value)} if value != value or value in _INFINITIES else value
    if cls is list:
        return _encode_items(value)
    if cls is dict:
        return _encode_dict(value)
    encoder = _ENCODERS.get(cls)
    if encoder is not None:
        return encoder(value)
    return _encode_other(value)


def _has_surrogates(text: str) -> bool:
    """Lone surrogates are valid in a str but not in UTF-8, so not in JSON."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _encode_items(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    try:
        return [_encode(v) for v in value]
    except _Unsupported as exc:
        index = next((i for i, v in enumerate(value) if v is exc.child), "?")
        raise exc.at(f"[{index}]", value) from None


def _encode_dict(value: dict[Any, Any]) -> Any:
    out: dict[str, Any] = {}
    k: Any = None
    try:
        for k, v in value.items():
            if type(k) is not str or k[:1] == "$" or (not k.isascii() and _has_surrogates(k)):
                break
            out[k] = _encode(v)
        else:
            return out
    except _Unsupported as exc:
        raise exc.at(f"[{_repr(k)}]", value) from None
    return _encode_map(value)


def _encode_map(value: dict[Any, Any]) -> Any:
    """A dict whose keys a JSON object cannot hold (non-str, `$`-prefixed, lone surrogates)."""
    pairs = []
    k: Any = None
    try:
        for k in value:
            pairs.append([_encode(k), None])
    except _Unsupported as exc:
        raise exc.at(f" (the key {_repr(k)})", value) from None
    try:
        for pair, k in zip(pairs, value, strict=True):
            pair[1] = _encode(value[k])
    except _Unsupported as exc:
        raise exc.at(f"[{_repr(k)}]", value) from None
    return {"$map": pairs}


def _repr(key: Any) -> str:
    try:
        text = repr(key)
    except ValueError:  # an int too long for a decimal string
        text = f"<{type(key).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode_set(tag: str) -> Any:
    def enc(value: Any) -> Any:
        try:
            items = [_encode(v) for v in value]
        except _Unsupported as exc:
            raise exc.at("{...}", value) from None
        # Sets have no order; sort by canonical bytes so equal sets encode identically.
        items.sort(key=canonical)
        return {tag: items}

    return enc


def _tz_spec(value: dt.datetime | dt.time) -> Any:
    """What `isoformat` (which writes only the offset) loses about the value's tzinfo.

    None: naive, or an unnamed `datetime.timezone` (the offset says it all); a str: a ZoneInfo
    key; `["tz", microseconds, name]`: another `datetime.timezone`; `["pydantic"]`: pydantic's
    `TzInfo`.
    """
    tz = value.tzinfo
    if tz is None or tz is dt.UTC:
        return None
    if type(tz) is dt.timezone:
        return _timezone_spec(tz)
    if type(tz) is ZoneInfo and tz.key is not None:
        return tz.key
    if type(tz) is TzInfo:
        return ["pydantic"]
    cls = type(tz)
    raise _Unsupported(
        value,
        f"cannot journal a {type(value).__name__} whose tzinfo is {tz!r} "
        f"({cls.__module__}.{cls.__qualname__}): it could not be rebuilt; use "
        "zoneinfo.ZoneInfo('Area/City') or a datetime.timezone (for example convert with "
        "value.astimezone(datetime.timezone.utc))",
    )


def _timezone_spec(tz: dt.timezone) -> Any:
    offset = tz.utcoffset(None)
    name = tz.tzname(None)
    named = name != dt.timezone(offset).tzname(None)
    # Python 3.11 reads an offset like +00:00:00.000001 as UTC, so sub-second offsets (like
    # explicit names, which isoformat drops) are written out.
    if not named and not offset.microseconds:
        return None
    return ["tz", offset // dt.timedelta(microseconds=1), name if named else None]


def _encode_datetime(value: dt.datetime) -> Any:
    return {"$dt": [value.isoformat(), _tz_spec(value), value.fold]}


def _encode_time(value: dt.time) -> Any:
    spec = _tz_spec(value)
    if spec is None:
        return {"$tm": [value.isoformat(), value.fold]}
    return {"$tm": [value.isoformat(), value.fold, spec]}


_ENCODERS: dict[type, Any] = {
    tuple: lambda v: {"$t": _encode_items(v)},
    bytes: lambda v: {"$b": _b64(v)},
    bytearray: lambda v: {"$ba": _b64(bytes(v))},
    set: _encode_set("$set"),
    frozenset: _encode_set("$fs"),
    dt.datetime: _encode_datetime,
    dt.date: lambda v: {"$d": v.isoformat()},
    dt.time: _encode_time,
    dt.timedelta: lambda v: {"$td": [v.days, v.seconds, v.microseconds]},
    decimal.Decimal: lambda v: {"$dec": str(v)},
    uuid.UUID: lambda v: {"$uuid": str(v)},
    pathlib.PurePosixPath: lambda v: {"$pp": str(v)},
    pathlib.PureWindowsPath: lambda v: {"$pwp": str(v)},
    # The concrete path of this OS (PosixPath or WindowsPath); decodes to `pathlib.Path`.
    type(pathlib.Path()): lambda v: {"$path": str(v)},
}

# Subclasses of these are refused (decoding could not rebuild them); the message suggests
# converting to the base type.
_CONVERTIBLE: tuple[type, ...] = (
    dict,
    list,
    tuple,
    set,
    frozenset,
    str,
    bytes,
    bytearray,
    int,
    float,
    decimal.Decimal,
)


def _encode_other(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _encode_enum(value)
    if isinstance(value, pydantic.BaseModel):
        return _encode_model(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value)
    cls = type(value)
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return _encode_named_tuple(value)
    raise _Unsupported(value, _unsupported_reason(value))


def _unsupported_reason(value: Any) -> str:
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    for base in _CONVERTIBLE:
        if isinstance(value, base):
            return (
                f"cannot journal a {name}, a subclass of {base.__name__}: decoding could not "
                f"rebuild it; convert it first, e.g. {base.__name__}(value)"
            )
    return (
        f"cannot journal a value of type {name}; use plain data (str, int, float, bool, None, "
        "list, dict, tuple, set, bytes, datetime, Decimal, UUID, Path), an Enum, a dataclass, "
        "a NamedTuple or a pydantic model defined at module level"
    )


def _encode_enum(value: enum.Enum) -> Any:
    cls = type(value)
    ref = _class_ref(value, cls)
    if cls.__members__.get(value.name) is value:
        return {"$enum": [ref, value.name]}
    if isinstance(value, enum.Flag):
        # A combination of flags (or none) has no member name of its own: journal its value.
        return {"$flag": [ref, _encode(value.value)]}
    raise _Unsupported(value, f"cannot journal {value!r}: it is not a named member of {ref}")


def _encode_fields(value: Any, fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    k = ""
    try:
        for k, v in fields.items():
            out[k] = _encode(v)
    except _Unsupported as exc:
        raise exc.at(f".{k}", value) from None
    return out


def _encode_dataclass(value: Any) -> Any:
    state = (
        value.__dict__
        if hasattr(value, "__dict__")
        else {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    )
    return {"$dc": [_class_ref(value, type(value)), _encode_fields(value, state)]}


def _encode_named_tuple(value: Any) -> Any:
    fields = dict(zip(type(value)._fields, value, strict=True))
    return {"$nt": [_class_ref(value, type(value)), list(_encode_fields(value, fields).values())]}


def _encode_model(value: pydantic.BaseModel) -> Any:
    extra = value.__pydantic_extra__
    private = value.__pydantic_private__
    return {
        "$model": [
            _class_ref(value, type(value)),
            _encode_fields(value, value.__dict__),
            sorted(value.__pydantic_fields_set__),
            _encode_extra(value, extra) if extra else None,
            _encode_fields(value, private) if private else None,
        ]
    }


def _encode_extra(value: pydantic.BaseModel, extra: dict[str, Any]) -> Any:
    # Extra keys are any str (even `$...`), so they take the dict path, escaping included.
    try:
        return _encode_dict(extra)
    except _Unsupported as exc:
        raise exc.at(".model_extra", value) from None


# -- classes by reference --------------------------------------------------------------------

_REFS: dict[type, str] = {}
_CLASSES: dict[str, type] = {}


def class_ref(cls: type, path: str = "value") -> str:
    """`module:qualname` of a class, checked once to import back to the same class."""
    try:
        return _class_ref(None, cls)
    except _Unsupported as exc:
        raise SerializationError(f"{path}: {exc.reason}") from None


def _class_ref(value: Any, cls: type) -> str:
    ref = _REFS.get(cls)
    if ref is not None:
        return ref
    ref = f"{cls.__module__}:{cls.__qualname__}"
    if "<locals>" in cls.__qualname__:
        raise _Unsupported(
            value,
            f"class {cls.__qualname__!r} is defined inside a function, so a resumed run could "
            "not import it back; define it at module level",
        )
    if "[" in cls.__qualname__:
        origin = cls.__qualname__.partition("[")[0]
        raise _Unsupported(
            value,
            f"class {cls.__qualname__!r} is a parametrised generic, which a resumed run could "
            f"not import back by name; subclass it at module level "
            f"(class My{origin}({cls.__qualname__}): ...) and use that",
        )
    try:
        found = resolve_class(ref)
    except SerializationError:
        found = None
    if found is not cls:
        raise _Unsupported(
            value,
            f"class {ref!r} does not import back to the same class; define it at module level "
            "under its own name",
        )
    _REFS[cls] = ref
    return ref


def resolve_class(ref: str) -> Any:
    """Import the class named by a `module:qualname` reference."""
    cls = _CLASSES.get(ref)
    if cls is not None:
        return cls
    try:
        obj = import_ref(ref)
    except (ImportError, AttributeError) as exc:
        raise SerializationError(
            f"the journal refers to class {ref!r}, which does not import here ({exc}); "
            "install or restore the code that defines it"
        ) from exc
    if not isinstance(obj, type):
        raise SerializationError(f"the journal refers to {ref!r}, which is not a class")
    _CLASSES[ref] = obj
    return obj


# -- decoding -------------------------------------------------------------------------------


def decode(tree: Any) -> Any:
    """Decode a tree made by `encode`."""
    cls = type(tree)
    if cls is list:
        return [decode(v) for v in tree]
    if cls is dict:
        if len(tree) == 1:
            ((tag, arg),) = tree.items()
            if tag[:1] == "$":
                decoder = _DECODERS.get(tag)
                if decoder is None:
                    raise _unknown_tag(tag)
                return decoder(arg)
        return {k: decode(v) for k, v in tree.items()}
    return tree


def _unknown_tag(tag: str) -> SerializationError:
    return SerializationError(
        f"the journal holds a value tagged {tag!r}, which this version of overnight does not "
        "know; it was written by a newer version: run it with that version"
    )


def _with_tz(value: Any, spec: Any) -> Any:
    """Put back the tzinfo `_tz_spec` described; `value` carries the offset from its iso text.

    Replacing the tzinfo (never converting) keeps the wall time, so times in a DST gap and
    times near the ends of the datetime range come back as they were.
    """
    if spec is None:
        return value
    if type(spec) is str:
        return value.replace(tzinfo=ZoneInfo(spec))
    if spec[0] == "tz":
        offset = dt.timedelta(microseconds=spec[1])
        tz = dt.timezone(offset) if spec[2] is None else dt.timezone(offset, spec[2])
        return value.replace(tzinfo=tz)
    return value.replace(tzinfo=TzInfo(value.utcoffset() // dt.timedelta(seconds=1)))


def _decode_datetime(arg: list[Any]) -> dt.datetime:
    iso, spec, fold = arg
    value: dt.datetime = _with_tz(dt.datetime.fromisoformat(iso), spec)
    return value.replace(fold=fold)


def _decode_time(arg: list[Any]) -> dt.time:
    value: dt.time = _with_tz(dt.time.fromisoformat(arg[0]), arg[2] if len(arg) > 2 else None)
    return value.replace(fold=arg[1])


def _decode_enum(arg: list[Any]) -> Any:
    ref, name = arg
    try:
        return resolve_class(ref)[name]
    except KeyError:
        raise SerializationError(
            f"the journal refers to member {name!r} of {ref!r}, which no longer exists; "
            "restore it (an alias will do)"
        ) from None


def _decode_flag(arg: list[Any]) -> Any:
    ref, value = arg
    try:
        return resolve_class(ref)(decode(value))
    except ValueError:
        raise SerializationError(
            f"the journal holds {value!r} of {ref!r}, which is no longer a valid combination"
        ) from None


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
    obj = cls.__new__(cls)
    # pydantic's own pickle protocol: right for every model kind, RootModel included.
    obj.__setstate__(
        {
            "__dict__": {k: decode(v) for k, v in fields.items()},
            "__pydantic_fields_set__": set(fields_set),
            "__pydantic_extra__": decode(extra)
            if extra is not None
            else ({} if cls.model_config.get("extra") == "allow" else None),
            "__pydantic_private__": decode(private)
            if private is not None
            else ({} if cls.__private_attributes__ else None),
        }
    )
    return obj


def _decode_named_tuple(arg: list[Any]) -> Any:
    return resolve_class(arg[0])(*[decode(v) for v in arg[1]])


_DECODERS: dict[str, Any] = {
    "$s": lambda a: base64.b64decode(a).decode("utf-8", "surrogatepass"),
    # Base 0 reads the hex written now and the decimal written by earlier versions.
    "$i": lambda a: int(a, 0),
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
    "$pwp": pathlib.PureWindowsPath,
    "$path": pathlib.Path,
    "$enum": _decode_enum,
    "$flag": _decode_flag,
    "$model": _decode_model,
    "$dc": _decode_dataclass,
    "$nt": _decode_named_tuple,
}

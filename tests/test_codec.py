"""The codec restores every supported value exactly: equal, and of the same type at every level.

`assert_same` is the yardstick used here and in `test_replay_types.py`. Besides `==` it checks
`type(x) is type(y)` recursively and the things `==` ignores: float sign (-0.0), NaN (equal to
NaN here), Decimal exponent, datetime `fold` and tzinfo, model `fields_set`, extras and private
attributes, and dict order.

What we guarantee about -0.0: `loads(dumps(-0.0))` is -0.0, and `canonical` tells -0.0 from 0.0
(as it tells 1 from 1.0 and True): a fingerprint reflects the exact value that replay restores.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import math
import pathlib
import random
import string
import uuid
from typing import Any, Generic, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import pydantic
import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overnight._engine import codec
from overnight.errors import SerializationError

# -- module-level types the codec must restore -----------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = (1, 2)
    CRIMSON = "red"  # noqa: PIE796 (an alias, on purpose: it decodes to the canonical member)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Bits(enum.IntFlag):
    A = 1
    B = 2


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = 0.0


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: Any
    y: Any = 0


@dataclasses.dataclass(slots=True)
class Slotted:
    a: Any
    b: list[Any] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlotted:
    a: Any
    b: Any = "default"


@dataclasses.dataclass
class WithDefaults:
    points: list[Point]
    label: str = "n"
    tags: tuple[Any, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    computed: int = dataclasses.field(init=False, default=0)


@dataclasses.dataclass
class Bag:
    items: list[Any]


class Pair(NamedTuple):
    a: Any
    b: Any = None


class Inner(pydantic.BaseModel):
    when: dt.datetime
    colour: Colour
    level: Level = Level.LOW
    blob: bytes = b""


class Outer(pydantic.BaseModel):
    inner: Inner
    items: list[Inner] = []
    anything: Any = None
    note: str | None = None


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    name: str


class WithPrivate(pydantic.BaseModel):
    name: str
    _secret: Any = pydantic.PrivateAttr(default="hidden")
    _cache: dict[str, Any] = pydantic.PrivateAttr(default_factory=dict)


class Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    a: int
    b: tuple[int, ...] = ()


class Ints(pydantic.RootModel[list[int]]):
    pass


class Holder(pydantic.RootModel[Any]):
    pass


T = TypeVar("T")


class Box(pydantic.BaseModel, Generic[T]):
    item: T


# -- the yardstick ---------------------------------------------------------------------------


def assert_same(a: Any, b: Any, path: str = "value") -> None:
    """`a == b` and the same type at every level (NaN counts as equal to NaN)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} became {type(b).__name__}"
    check = _CHECKS.get(type(a))
    if check is not None:
        check(a, b, path)
    elif isinstance(a, enum.Enum):
        assert a is b, path
    elif isinstance(a, pydantic.BaseModel):
        _same_model(a, b, path)
    elif dataclasses.is_dataclass(a):
        _same_attrs(a, b, [f.name for f in dataclasses.fields(a)], path)
        if hasattr(a, "__dict__"):
            assert_same(a.__dict__, b.__dict__, f"{path}.__dict__")
    elif isinstance(a, tuple):  # named tuples
        _same_sequence(a, b, path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _same_float(a: float, b: float, path: str) -> None:
    if math.isnan(a):
        assert math.isnan(b), f"{path}: nan became {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
        assert math.copysign(1, a) == math.copysign(1, b), f"{path}: {a!r} != {b!r}"


def _same_sequence(a: Any, b: Any, path: str) -> None:
    assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_same(x, y, f"{path}[{i}]")


def _same_dict(a: dict[Any, Any], b: dict[Any, Any], path: str) -> None:
    _same_sequence(list(a), list(b), f"{path}.keys()")  # same keys, same order
    for k in a:
        assert_same(a[k], b[k], f"{path}[{k!r}]")


def _same_set(a: Any, b: Any, path: str) -> None:
    assert a == b, f"{path}: {a!r} != {b!r}"
    partner = {y: y for y in b}  # finds b's element equal to x, to compare their types
    for x in a:
        assert_same(x, partner[x], f"{path}{{{x!r}}}")


def _same_decimal(a: decimal.Decimal, b: decimal.Decimal, path: str) -> None:
    assert a.as_tuple() == b.as_tuple(), f"{path}: {a!r} != {b!r}"  # sign, digits, exponent


def _same_tz(a: dt.tzinfo | None, b: dt.tzinfo | None, path: str) -> None:
    assert type(a) is type(b), f"{path}: tzinfo {a!r} became {b!r}"
    if isinstance(a, ZoneInfo):
        assert a is b, f"{path}: zone {a!r} became {b!r}"
    elif a is not None:
        assert a.utcoffset(None) == b.utcoffset(None), path  # type: ignore[union-attr]
        assert a.tzname(None) == b.tzname(None), path  # type: ignore[union-attr]


def _same_datetime(a: dt.datetime, b: dt.datetime, path: str) -> None:
    # Same wall time, zone and fold; `==` alone ignores fold and compares across zones.
    assert a.replace(tzinfo=None) == b.replace(tzinfo=None), f"{path}: {a!r} != {b!r}"
    assert a.fold == b.fold, f"{path}: fold {a.fold} became {b.fold}"
    _same_tz(a.tzinfo, b.tzinfo, path)


def _same_time(a: dt.time, b: dt.time, path: str) -> None:
    assert a.replace(tzinfo=None) == b.replace(tzinfo=None), f"{path}: {a!r} != {b!r}"
    assert a.fold == b.fold, f"{path}: fold {a.fold} became {b.fold}"
    _same_tz(a.tzinfo, b.tzinfo, path)


def _same_attrs(a: Any, b: Any, names: list[str], path: str) -> None:
    for name in names:
        assert_same(getattr(a, name), getattr(b, name), f"{path}.{name}")


def _same_model(a: pydantic.BaseModel, b: pydantic.BaseModel, path: str) -> None:
    assert_same(a.__dict__, b.__dict__, path)
    assert a.model_fields_set == b.model_fields_set, f"{path}: fields_set differs"
    assert_same(a.__pydantic_extra__, b.__pydantic_extra__, f"{path}.<extra>")
    assert_same(a.__pydantic_private__, b.__pydantic_private__, f"{path}.<private>")


_CHECKS: dict[type, Any] = {
    float: _same_float,
    list: _same_sequence,
    tuple: _same_sequence,
    dict: _same_dict,
    set: _same_set,
    frozenset: _same_set,
    decimal.Decimal: _same_decimal,
    dt.datetime: _same_datetime,
    dt.time: _same_time,
}


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for a decimal string
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def roundtrip(value: Any) -> Any:
    return codec.loads(codec.dumps(value))


def assert_roundtrips(value: Any) -> None:
    assert_same(value, roundtrip(value))
    # The journal also stores trees inline inside entries; decoding a tree must agree.
    assert_same(value, codec.decode(codec.encode(value)))


def test_assert_same_is_strict() -> None:
    for a, b in [
        (1, True),
        (1, 1.0),
        (0.0, -0.0),
        ([1], (1,)),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({1}, {True}),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (dt.datetime(2020, 1, 1, fold=0), dt.datetime(2020, 1, 1, fold=1)),
        (
            dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2020, 1, 1, tzinfo=ZoneInfo("UTC")),
        ),
        (Loose(name="a"), Loose(name="a", x=1)),
        (Outer(inner=Inner(when=dt.datetime(2020, 1, 1), colour=Colour.RED)), None),
    ]:
        with pytest.raises(AssertionError):
            assert_same(a, b)
    assert_same(math.nan, -math.nan)
    assert_same([math.nan], [math.nan])


# -- strategies ------------------------------------------------------------------------------

# Lone surrogates included: they are valid in a Python str though not in UTF-8.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
model_text = st.text(max_size=12)  # pydantic refuses lone surrogates in str fields and keys
model_keys = st.one_of(model_text, model_text.map(lambda s: "$" + s))
dollar_text = any_text.map(lambda s: "$" + s)
dict_keys_text = st.one_of(any_text, dollar_text, st.sampled_from(["$t", "$map", "$blob", "$"]))

big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
    st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3),
    st.integers(min_value=-(2**300), max_value=2**300),
)

fixed_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
)
named_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
    st.text(string.ascii_letters, min_size=1, max_size=5),
)
pydantic_offsets = st.integers(-86399, 86399).map(pydantic_core.TzInfo)
zones = st.timezones()  # ZoneInfo; gaps and folds included (allow_imaginary defaults to True)
tzinfos = st.one_of(
    st.none(), st.just(dt.UTC), fixed_offsets, named_offsets, pydantic_offsets, zones
)

datetimes = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=tzinfos),
    # Around DST transitions, where wall times repeat (fold) or do not exist (gap).
    st.datetimes(
        min_value=dt.datetime(2021, 3, 28),
        max_value=dt.datetime(2021, 3, 29),
        timezones=st.sampled_from([ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")]),
    ),
    st.datetimes(
        min_value=dt.datetime(2021, 10, 31),
        max_value=dt.datetime(2021, 11, 8),
        timezones=st.sampled_from([ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")]),
    ),
)
times = st.one_of(st.times(), st.times(timezones=tzinfos))

paths = st.builds(
    lambda cls, parts: cls(*parts),
    st.sampled_from([pathlib.Path, pathlib.PurePath, pathlib.PurePosixPath]),
    st.lists(st.text(string.ascii_letters + "._- ", min_size=1, max_size=6), max_size=4),
) | st.builds(pathlib.PureWindowsPath, st.sampled_from(["C:\\x\\y", "a/b", "\\\\srv\\share\\f"]))

enum_members = st.sampled_from(
    [
        *Colour,
        *Level,
        *Mode,
        *Perm,
        Perm.R | Perm.W,
        Perm(0),
        *Bits,
        Bits.A | Bits.B,
        Bits(0),
    ]
)

# Hashable scalars: set elements and dict keys. NaN is left out: a set holding NaN is not
# equal to any other set (NaN != NaN), so "equal after a round trip" cannot be asked of it.
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=False),
    any_text,
    dict_keys_text,
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    paths,
    enum_members,
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(FrozenPoint, inner, inner),
        st.builds(FrozenSlotted, inner),
        st.builds(Pair, inner, inner),
        st.builds(Frozen, a=st.integers(), b=st.lists(st.integers(), max_size=3).map(tuple)),
    ),
    max_leaves=6,
)

scalars = st.one_of(
    hashable_scalars,
    st.floats(),  # nan, inf, -inf, -0.0, subnormals
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308]),
    st.binary(max_size=8).map(bytearray),
    datetimes,
    st.dates(),
    times,
    st.decimals(),  # NaN, sNaN, infinities, exponents
    st.decimals(places=3),
)

inner_models = st.builds(
    Inner,
    when=datetimes,
    colour=st.sampled_from(Colour),
    level=st.sampled_from(Level),
    blob=st.binary(max_size=6),
)
models = st.one_of(
    inner_models,
    st.builds(Frozen, a=st.integers(), b=st.lists(st.integers(), max_size=3).map(tuple)),
    st.builds(Ints, st.lists(big_ints, max_size=4)),
)


def _loose(name: str, extra: dict[str, Any]) -> Loose:
    return Loose.model_validate({**extra, "name": name})


def _with_private(name: str, secret: Any, cache: dict[str, Any] | None) -> WithPrivate:
    model = WithPrivate(name=name)
    model._secret = secret
    if cache is not None:
        model._cache = cache
    return model


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    small = {"max_size": 3}
    return st.one_of(
        st.lists(inner, **small),
        st.lists(inner, **small).map(tuple),
        st.dictionaries(any_text, inner, **small),
        st.dictionaries(dict_keys_text, inner, **small),
        st.dictionaries(hashables, inner, **small),
        st.sets(hashables, **small),
        st.frozensets(hashables, **small),
        st.builds(Point, inner, inner),
        st.builds(Point, inner),
        st.builds(FrozenPoint, inner),
        st.builds(Slotted, inner, st.lists(inner, **small)),
        st.builds(FrozenSlotted, inner, inner),
        st.builds(
            WithDefaults,
            st.lists(st.builds(Point, inner), **small),
            tags=st.lists(inner, **small).map(tuple),
        ),
        st.builds(WithDefaults, st.just([])),
        st.builds(Pair, inner, inner),
        inner.map(Pair),
        st.builds(Bag, st.lists(inner, **small)),
        st.builds(
            Outer, inner=inner_models, items=st.lists(inner_models, max_size=2), anything=inner
        ),
        st.builds(Outer, inner=inner_models, note=model_text),
        st.builds(_loose, model_text, st.dictionaries(model_keys.filter(_not_field), inner)),
        st.builds(_with_private, model_text, inner, st.none() | st.dictionaries(any_text, inner)),
        st.builds(Holder, inner),
    )


def _not_field(key: str) -> bool:
    return key != "name" and not key.startswith("_")


values = st.recursive(st.one_of(scalars, models), containers, max_leaves=12)


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_value_round_trips_exactly(value: Any) -> None:
    assert_roundtrips(value)


@settings(max_examples=100, deadline=None)
@given(st.one_of(big_ints, st.floats(), any_text, datetimes, times, st.decimals(), paths))
def test_scalars_round_trip_exactly(value: Any) -> None:
    assert_roundtrips(value)


@pytest.mark.parametrize(
    "value",
    [
        10**5000,  # past Python's int <-> decimal string limit
        -(10**5000),
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        "\ud800",
        "é\udcff😀",
        "$map",
        {"$map": [[1, 2]]},
        {"$t": [1]},
        {1: "a", "1": "b", 1.5: "c", None: "d", (1, 2): "e", frozenset({1}): "f"},
        [True, 1, 1.0, "1", b"1", bytearray(b"1")],
        {True, 2, 3.5, "x", b"y"},
        frozenset(),
        set(),
        (),
        {},
        -0.0,
        [math.nan, math.inf, -math.inf],
        decimal.Decimal("-0"),
        decimal.Decimal("1E+2"),
        decimal.Decimal("1.000"),
        decimal.Decimal("sNaN"),
        decimal.Decimal("-NaN123"),
        decimal.Decimal("-Infinity"),
        dt.timedelta(days=-1, microseconds=1),
        dt.timedelta.max,
        dt.date.min,
        dt.datetime.max,
        # Ambiguous wall time, second occurrence (fold=1) and first.
        dt.datetime(2021, 10, 31, 2, 30, tzinfo=ZoneInfo("Europe/Paris"), fold=1),
        dt.datetime(2021, 10, 31, 2, 30, tzinfo=ZoneInfo("Europe/Paris"), fold=0),
        # A wall time that does not exist (spring-forward gap), with either fold.
        dt.datetime(2021, 3, 28, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),
        dt.datetime(2021, 3, 28, 2, 30, tzinfo=ZoneInfo("Europe/Paris"), fold=1),
        # Near the ends of the range, where converting through UTC would overflow.
        dt.datetime(1, 1, 1, tzinfo=ZoneInfo("Asia/Tokyo")),
        dt.datetime.max.replace(tzinfo=ZoneInfo("America/Los_Angeles")),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=1, microseconds=5))),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(-dt.timedelta(microseconds=1))),
        dt.time(tzinfo=dt.timezone(dt.timedelta(microseconds=1), "tiny")),
        dt.datetime(2020, 1, 1, tzinfo=pydantic_core.TzInfo(3600)),
        dt.datetime(2020, 1, 1, fold=1),
        dt.time(1, 2, 3, 4, fold=1),
        dt.time(1, 2, tzinfo=ZoneInfo("Europe/Paris")),
        dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-5), "EST")),
        dt.time(1, 2, tzinfo=dt.UTC),
        uuid.UUID(int=0),
        pathlib.Path("/a/b"),
        pathlib.PurePath("rel/x"),
        pathlib.PureWindowsPath("C:\\Users\\x"),
        Colour.CRIMSON,
        Colour.BLUE,
        Perm.R | Perm.X,
        Perm(0),
        Bits.A | Bits.B,
        Mode.READ,
        Level.HIGH,
        Point(Point(1, (2, 3)), {"$k": {4}}),
        WithDefaults([Point(1)], extra={"a": [Pair(1, 2)]}),
        Ints([1, 2, 3]),
        Holder({"a": (1,)}),
        Box(item=[1, "x"]),
        Loose.model_validate({"name": "x", "$odd": {1, 2}, "n": decimal.Decimal("2.50")}),
        _with_private("p", dt.date(2020, 1, 1), {"k": [b"v"]}),
        Outer(inner=Inner(when=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), colour=Colour.BLUE)),
        Outer.model_validate(
            {"inner": {"when": "2020-01-01T00:00:00+02:00", "colour": "red", "blob": b"x"}}
        ),
    ],
    ids=lambda v: _short_repr(v),
)
def test_tricky_values_round_trip(value: Any) -> None:
    assert_roundtrips(value)


def test_model_fields_set_is_kept() -> None:
    explicit = Outer(inner=Inner(when=dt.datetime(2020, 1, 1), colour=Colour.RED), note=None)
    implicit = Outer(inner=Inner(when=dt.datetime(2020, 1, 1), colour=Colour.RED))
    assert roundtrip(explicit).model_fields_set == {"inner", "note"}
    assert roundtrip(implicit).model_fields_set == {"inner"}


def test_frozen_values_stay_frozen_and_hashable() -> None:
    frozen = roundtrip(Frozen(a=1, b=(2,)))
    with pytest.raises(pydantic.ValidationError):
        frozen.a = 2
    assert hash(frozen) == hash(Frozen(a=1, b=(2,)))
    point = roundtrip(FrozenSlotted(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.a = 2  # type: ignore[misc]
    assert hash(point) == hash(FrozenSlotted(1))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(hashables, hashable_scalars, max_size=6))
def test_dict_order_is_preserved(value: dict[Any, Any]) -> None:
    assert list(roundtrip(value)) == list(value)
    assert list(roundtrip(dict(reversed(value.items())))) == list(reversed(value))


def _reorder(value: Any) -> Any:
    """An equal value whose dicts and sets were built in the opposite order."""
    cls = type(value)
    if cls is dict:
        return {k: _reorder(v) for k, v in reversed(value.items())}
    if cls in (set, frozenset):
        return cls(reversed(list(value)))
    if cls in (list, tuple):
        return cls(_reorder(v) for v in value)
    return value


def _canonical(value: Any) -> bytes:
    return codec.canonical(codec.encode(value))


@settings(max_examples=200, deadline=None)
@given(values)
def test_canonical_bytes_ignore_insertion_order(value: Any) -> None:
    assert _canonical(_reorder(value)) == _canonical(value)


def test_canonical_bytes_ignore_insertion_order_of_non_str_keys() -> None:
    a = {1: "a", (2, 3): {"$x": 1, "y": 2}, "z": {4: 5, 6: 7}}
    b = {"z": {6: 7, 4: 5}, (2, 3): {"y": 2, "$x": 1}, 1: "a"}
    assert codec.dumps(a) != codec.dumps(b)  # dumps keeps each order ...
    assert _canonical(a) == _canonical(b)  # ... canonical does not depend on it


def test_canonical_bytes_of_equal_sets_built_in_different_orders() -> None:
    items = [f"item-{i}" for i in range(50)] + [(i, str(i)) for i in range(50)]
    shuffled = random.Random(0).sample(items, len(items))
    assert _canonical(set(items)) == _canonical(set(shuffled))
    assert _canonical(frozenset(items)) == _canonical(frozenset(shuffled))


def test_canonical_tells_values_apart_that_replay_tells_apart() -> None:
    # -0.0 == 0.0 and 1 == 1.0 == True in Python, but replay restores each exactly,
    # so a fingerprint must not confuse them either.
    assert _canonical(-0.0) != _canonical(0.0)
    assert len({_canonical(1), _canonical(1.0), _canonical(True)}) == 3
    assert math.copysign(1, roundtrip(-0.0)) == -1
    assert math.copysign(1, roundtrip(0.0)) == 1
    assert _canonical([1, 2]) != _canonical((1, 2))


# -- values the journal cannot hold ----------------------------------------------------------


class Decimal1(decimal.Decimal):
    """A subclass of a supported type: not supported itself."""


def _local_class() -> Any:
    @dataclasses.dataclass
    class Local:
        x: int

    return Local(1)


class OrderedBag(dict[str, Any]):
    pass


@pytest.mark.parametrize(
    ("value", "path", "hint"),
    [
        (Bag([1, 2, 3, _local_class()]), "value.items[3]", "module level"),
        (Bag([object()]), "value.items[0]", "plain data"),
        ({"a": [collections.OrderedDict(a=1)]}, "value['a'][0]", "dict(value)"),
        ([collections.defaultdict(list)], "value[0]", "dict(value)"),
        (Bag([OrderedBag()]), "value.items[0]", "dict(value)"),
        (
            Outer(
                inner=Inner(when=dt.datetime(2020, 1, 1), colour=Colour.RED),
                anything=Box[int](item=1),
            ),
            "value.anything",
            "Box[int]",
        ),
        ((1, {2: [lambda: 0]}), "value[1][2][0]", "plain data"),
        ({"k": {Decimal1(1)}}, "value['k']", "Decimal(value)"),
    ],
    ids=[
        "local-class",
        "object",
        "ordered-dict",
        "defaultdict",
        "dict-subclass",
        "generic",
        "lambda",
        "subclass",
    ],
)
def test_unsupported_values_raise_naming_the_path_and_the_fix(
    value: Any, path: str, hint: str
) -> None:
    with pytest.raises(SerializationError) as info:
        codec.dumps(value)
    message = str(info.value)
    assert path in message, message
    assert hint in message, message


class HomemadeZone(dt.tzinfo):
    """A tzinfo the codec cannot rebuild (think pytz or dateutil zones)."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)


def test_foreign_tzinfo_raises_rather_than_changing_the_zone() -> None:
    value = {"at": [dt.datetime(2020, 1, 1, tzinfo=HomemadeZone())]}
    with pytest.raises(SerializationError, match=r"^value\['at'\]\[0\]: .*zoneinfo\.ZoneInfo"):
        codec.dumps(value)
    with pytest.raises(SerializationError, match=r"^value: .*HomemadeZone"):
        codec.dumps(dt.time(tzinfo=HomemadeZone()))


def test_trees_written_by_the_previous_encoding_still_decode() -> None:
    # Big ints were decimal strings; datetimes in a zone carried the offset of their wall time.
    assert codec.loads(b'{"$i":"-18446744073709551617"}') == -(2**64) - 1
    old = b'{"$dt":["2021-03-28T02:30:00+01:00","Europe/Paris",0]}'
    assert_same(codec.loads(old), dt.datetime(2021, 3, 28, 2, 30, tzinfo=ZoneInfo("Europe/Paris")))


def test_missing_class_in_journal_raises_naming_the_class() -> None:
    data = codec.dumps(Point(1, 2)).replace(b"test_codec:Point", b"test_codec:Gone")
    with pytest.raises(SerializationError, match=r"test_codec:Gone'.*does not import"):
        codec.loads(data)
    data = codec.dumps([Colour.RED]).replace(b"test_codec:", b"no_such_module_xyz:")
    with pytest.raises(SerializationError, match=r"no_such_module_xyz:Colour'"):
        codec.loads(data)


def test_missing_enum_member_in_journal_raises_naming_the_class() -> None:
    data = codec.dumps(Colour.RED).replace(b'"RED"', b'"GREEN"')
    with pytest.raises(SerializationError, match=r"'GREEN' of '(tests\.)?test_codec:Colour'"):
        codec.loads(data)


def test_unknown_tag_in_journal_raises() -> None:
    with pytest.raises(SerializationError, match=r"\$nope"):
        codec.loads(b'{"$nope": 1}')


def test_values_too_deep_or_containing_themselves_raise() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(SerializationError, match="contains itself"):
        codec.dumps(loop)
    deep: Any = "leaf"
    for _ in range(130):  # 260 levels of tree: {"$t": [...]} per tuple
        deep = (deep,)
    with pytest.raises(SerializationError, match="nested more than"):
        codec.dumps(deep)
    fine: Any = "leaf"
    for _ in range(100):
        fine = [fine]
    assert_roundtrips(fine)

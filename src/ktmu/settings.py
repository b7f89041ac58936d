"""Typed settings: ``--set KEY=VALUE`` strings and config values checked against a dataclass's fields.

Every field of a settings dataclass (``TrainConfig``, each unlearning method) has a declared type
(``float``, ``int``, ``bool``, ``str`` or ``X | None``) and may declare, in its metadata, a range
(numbers) or a fixed set of values (text)::

    kl_weight: float = field(default=20.0, metadata=in_range(ge=0))
    schedule: str = field(default="warmup-cosine", metadata=one_of("warmup-cosine", "cosine-epoch"))

Values are cast to the declared type and checked against the range or the choices here, before
anything is loaded or trained, so that a typo fails in a second with a message saying what to
write instead, not after minutes inside a loss. The same check serves ``--set`` strings
(:func:`parse_value`), config values (:func:`cast_value`) and construction (:func:`validate`).
Every problem is a :class:`SettingsError`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ktmu.registry import suggest
from ktmu.errors import KtmuError

RANGE_KEY = "ktmu_range"  # the field-metadata key holding a field's :class:`Range`
CHOICES_KEY = "ktmu_choices"  # the field-metadata key holding a text field's allowed values
NONE_WORDS = ("none", "null")  # what --set accepts for "no value" on an optional field
TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")


class SettingsError(KtmuError, ValueError):
    """A setting with an unknown name, a value of the wrong type or out of range; the message says what to write."""


@dataclass(frozen=True)
class Range:
    """Bounds on a numeric setting: ``gt``/``ge`` below, ``lt``/``le`` above (None = unbounded).

    Example: ``Range(ge=0, lt=1)`` accepts 0 and 0.5, refuses 1 and -0.1; it describes itself as
    "in [0, 1)".
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    hint: str = ""  # what to do instead, appended to the error

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds."""
        return not (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )

    def describe(self) -> str:
        """The bounds in words, e.g. "> 0", ">= 1", "in (0, 1]"."""
        low = (f"({_num(self.gt)}" if self.gt is not None else f"[{_num(self.ge)}" if self.ge is not None else None)
        high = (f"{_num(self.lt)})" if self.lt is not None else f"{_num(self.le)}]" if self.le is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"> {low[1:]}" if low[0] == "(" else f">= {low[1:]}"
        if high:
            return f"< {high[:-1]}" if high[-1] == ")" else f"<= {high[:-1]}"
        return "any finite number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def in_range(*, gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
             hint: str = "") -> dict[str, Range]:
    """Field metadata declaring a range: ``field(default=..., metadata=in_range(gt=0))``."""
    return {RANGE_KEY: Range(gt=gt, ge=ge, lt=lt, le=le, hint=hint)}


def one_of(*choices: str) -> dict[str, tuple[str, ...]]:
    """Field metadata declaring the only values a text field takes: ``field(default="ours", metadata=one_of("ours", "study"))``.

    Example: with ``one_of("ours", "study")``, "study" is accepted and "studdy" is refused with
    "selection must be one of ours, study, got 'studdy'. Did you mean 'study'?".
    """
    if not choices or not all(isinstance(c, str) for c in choices):
        raise TypeError(f"one_of takes one or more strings, got {choices!r}")  # a programming error, not a user's
    return {CHOICES_KEY: tuple(choices)}


# ---- field introspection ---------------------------------------------------------------------
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")  # a programming error, not a user's
    return {f.name: f for f in dataclasses.fields(cls)}


def _declared(cls: type, name: str, key: str) -> Any:
    # Looked up through base classes: a subclass that re-declares a field only to change its
    # default (``lr: float = 3e-5``) keeps what its base class declared.
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and key in f.metadata:
            return f.metadata[key]
    return None


def field_range(cls: type, name: str) -> Range | None:
    """The declared range of field ``name``, looked up through base classes (a re-declared default keeps it)."""
    return _declared(cls, name, RANGE_KEY)


def field_choices(cls: type, name: str) -> tuple[str, ...] | None:
    """The declared values of text field ``name`` (:func:`one_of`), looked up through base classes; None if any text goes."""
    return _declared(cls, name, CHOICES_KEY)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    # ``from __future__ import annotations`` leaves annotations as strings; resolve them once per class.
    return typing.get_type_hints(cls)


def _field_type(cls: type, name: str) -> Any:
    return _hints(cls)[name]


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None`` / ``Optional[X]``; (tp, False) otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_name(tp: Any, optional: bool) -> str:
    word = {float: "a number", int: "a whole number", bool: "true or false", str: "text"}.get(tp, str(tp))
    return f"{word} or none" if optional else word


def _owner(cls: type) -> str:
    """How errors name the settings' owner: ``settings_label`` if the class has one, else "method 'x'"."""
    label = getattr(cls, "settings_label", "")
    if isinstance(label, str) and label:
        return label
    name = getattr(cls, "name", "")
    return f"method {name!r}" if isinstance(name, str) and name else cls.__name__


def resolve_key(cls: type, key: str) -> str:
    """The field name for ``key`` ('-' or '_', any case); unknown keys are a :class:`SettingsError`."""
    known = list(_fields(cls))
    name = key.strip().replace("-", "_").lower()
    if name not in known:
        raise SettingsError(
            f"{_owner(cls)} has no setting {key.strip()!r}.{suggest(name, known)} Known settings: {', '.join(known)}."
        )
    return name


# ---- casting ---------------------------------------------------------------------------------
def _check_range(cls: type, name: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{_owner(cls)}: {name} must be a finite number, got {value!r}.")
    rng = field_range(cls, name)
    if rng is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and not rng.contains(value):
        hint = f" {rng.hint}" if rng.hint else ""
        raise SettingsError(f"{_owner(cls)}: {name} must be {rng.describe()}, got {value!r}.{hint}")
    return value


def _check_choice(cls: type, name: str, value: str) -> str:
    choices = field_choices(cls, name)
    if choices is not None and value not in choices:
        raise SettingsError(
            f"{_owner(cls)}: {name} must be one of {', '.join(choices)}, got {value!r}.{suggest(value, list(choices))}")
    return value


def _bad(cls: type, name: str, value: Any, tp: Any, optional: bool, extra: str = "") -> SettingsError:
    return SettingsError(f"{_owner(cls)}: {name} expects {_type_name(tp, optional)}, got {value!r}.{extra}")


def parse_value(cls: type, key: str, text: str) -> Any:
    """Cast the string ``text`` (from ``--set KEY=VALUE``) to field ``key``'s type and check its range or choices.

    Floats accept "1e-4" and "20" but not "abc", "nan" or "inf"; ints accept "10" but not "1.5";
    bools accept true/false/1/0; optional fields accept "none"/"null" (any case) for None; a text
    field with choices accepts one of them exactly (surrounding spaces dropped): for
    ``TrainConfig``, ``schedule=cosine-epoch`` but not ``schedule=0``.
    """
    name = resolve_key(cls, key)
    tp, optional = _split_optional(_field_type(cls, name))
    word = text.strip().lower()
    if optional and word in NONE_WORDS:
        return None
    if tp is bool:
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise _bad(cls, name, text, tp, optional)
    if tp is int:
        try:
            value: Any = int(text.strip(), 10)
        except ValueError:
            raise _bad(cls, name, text, tp, optional) from None
    elif tp is float:
        try:
            value = float(text)
        except ValueError:
            raise _bad(cls, name, text, tp, optional) from None
    elif tp is str:
        return _check_choice(cls, name, text.strip() if field_choices(cls, name) else text)
    else:
        raise SettingsError(f"{_owner(cls)}: setting {name} has type {tp}, which cannot be set from text.")
    return _check_range(cls, name, value)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def cast_value(cls: type, key: str, value: Any) -> Any:
    """Check a value already parsed (from YAML/JSON or a keyword argument) against field ``key``; return it cast.

    An int for a float field becomes a float; a bool is not a number; a string is never converted
    (a config's ``lr: "1e-4"`` is a mistake to report, not to guess at). Example:
    ``cast_value(TrainConfig, "lr", 1)`` -> 1.0; ``cast_value(TrainConfig, "lr", "abc")`` raises.
    """
    name = resolve_key(cls, key)
    tp, optional = _split_optional(_field_type(cls, name))
    if value is None:
        if optional:
            return None
        raise SettingsError(f"{_owner(cls)}: {name} needs a value ({_type_name(tp, False)}), got none.")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _check_range(cls, name, float(value))
        except OverflowError:  # an int too large for a float
            raise _bad(cls, name, value, tp, optional, " It is too large.") from None
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return _check_range(cls, name, value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return _check_choice(cls, name, value)
    extra = ""
    if isinstance(value, str) and tp in (int, float) and _looks_numeric(value):
        # YAML 1.1 reads 1e-4 (no dot) as text; say how to write it as a number.
        extra = " Write it as a number without quotes (in YAML, 1e-4 is text: write 1.0e-4)."
    raise _bad(cls, name, value, tp, optional, extra)


def cast_mapping(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`cast_value` for every item of a config mapping; keys come back as field names."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise SettingsError(f"{_owner(cls)}: setting names must be text, got {key!r}.")
        name = resolve_key(cls, key)
        if name in out:
            raise SettingsError(f"{_owner(cls)}: {name} is given twice; keep one.")
        out[name] = cast_value(cls, name, value)
    return out


def parse_set(pairs: Sequence[str], cls: type) -> dict[str, Any]:
    """``{field: value}`` from ``--set KEY=VALUE`` strings, each cast to its field's type and range-checked.

    Example: ``parse_set(["kl-weight=10", "margin=3"], NHLKL)`` -> ``{"kl_weight": 10.0, "margin": 3.0}``.
    """
    out: dict[str, Any] = {}
    for item in pairs or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set expects KEY=VALUE (e.g. --set kl_weight=10), got {item!r}.")
        name = resolve_key(cls, key)
        if name in out:
            raise SettingsError(f"--set {name} is given twice; keep one.")
        out[name] = parse_value(cls, name, text)
    return out


def validate(obj: Any) -> None:
    """Check every field of a settings dataclass instance against its type and range or choices, in place.

    Ints in float fields become floats; anything else wrong is a :class:`SettingsError`.
    """
    cls = type(obj)
    for name in _fields(cls):
        value = getattr(obj, name)
        cast = cast_value(cls, name, value)
        if cast is not value:
            object.__setattr__(obj, name, cast)  # works for frozen dataclasses too

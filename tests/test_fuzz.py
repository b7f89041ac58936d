"""Property tests: every world file, request and --set string either parses or fails with ktmu's own error.

A user's input must never surface as a TypeError, AttributeError, KeyError or IndexError from deep
inside the library: it is either accepted or refused with HierarchyError, RequestError or
SettingsError (all ValueError subclasses, each with a message that says what to do).
"""
from __future__ import annotations

import json
import math
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktmu.concepts import Hierarchy, HierarchyError
from ktmu.methods import METHODS, build_method
from ktmu.engine.request import RequestError, UnlearningRequest
from ktmu.settings import SettingsError, cast_value, parse_set
from ktmu.engine.config import TrainConfig

# KTMU_FUZZ_EXAMPLES=5000 for a longer hunt; 200 keeps the whole file near 10 s.
FUZZ = settings(max_examples=int(os.environ.get("KTMU_FUZZ_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SETTINGS_CLASSES = [TrainConfig] + [METHODS.get(n) for n in METHODS.names()]

# ---- world files ----------------------------------------------------------------------------------
# Words close to the real schema, so that the fuzzer reaches deep into validation instead of
# failing at the first key.
WORDS = ["name", "coarse", "fine", "parent", "aliases", "audit_names", "levels", "domain", "top", "shirt", "coat", "Top", " top ", "", "a"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.sampled_from(WORDS), st.text(max_size=6))
nested = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.one_of(st.sampled_from(WORDS), scalars), kids, max_size=4)),
    max_leaves=25,
)
concept = st.one_of(
    nested,
    st.fixed_dictionaries({"name": nested}, optional={"parent": nested, "aliases": nested, "audit_names": nested}),
)
world_dicts = st.one_of(
    nested,
    st.fixed_dictionaries(
        {"fine": st.one_of(nested, st.lists(concept, max_size=4))},
        optional={"name": nested, "domain": nested, "coarse": st.one_of(nested, st.lists(concept, max_size=3)), "levels": nested},
    ),
)


@FUZZ
@given(world_dicts)
def test_from_dict_parses_or_raises_hierarchy_error(data):
    try:
        h = Hierarchy.from_dict(data)
    except HierarchyError:
        return
    assert h.fine and h.coarse
    for c in h.fine:  # what was accepted answers queries
        assert h.find(c.name) is c and h.index(c) == h.fine_names.index(c.name)
    assert len(h.fine_to_coarse()) == len(h.fine)


def _yaml_text(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


@FUZZ
@given(st.one_of(world_dicts.map(_yaml_text), st.text(max_size=80)), st.sampled_from([".yaml", ".yml", ".json"]))
def test_load_parses_or_raises_hierarchy_error(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("w") / f"world{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        Hierarchy.load(path)
    except HierarchyError:
        pass


@FUZZ
@given(st.binary(max_size=60), st.sampled_from([".yaml", ".json"]))
def test_load_of_bytes_parses_or_raises_hierarchy_error(tmp_path_factory, blob, suffix):
    path = tmp_path_factory.mktemp("b") / f"world{suffix}"
    path.write_bytes(blob)
    try:
        Hierarchy.load(path)
    except HierarchyError:
        pass


@FUZZ
@given(world_dicts)
def test_json_world_files_load_like_dicts(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("j") / "world.json"
    try:
        text = json.dumps(data, allow_nan=True)
    except (TypeError, ValueError):  # keys json cannot write (None and float keys are fine; tuples are not)
        return
    path.write_text(text)
    try:
        Hierarchy.load(path)
    except HierarchyError:
        pass


# ---- requests -------------------------------------------------------------------------------------
NAMES = ["shirt", "coat", "sneaker", "sandal", "top", "footwear", "blouse", "trainer", "shoe", "Shirt ", "", "sneakr"]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), max_size=5),
       st.one_of(st.sampled_from(["fine", "coarse", "hybrid"]), st.text(max_size=6)))
def test_request_parses_or_raises_request_error(toy_world, names, goal):
    try:
        req = UnlearningRequest.parse(toy_world, names, goal)
    except RequestError:
        return
    assert req.goal in ("fine", "coarse", "hybrid")
    assert 0 < len(req.forget_fine) < len(toy_world.fine)


# ---- --set strings ----------------------------------------------------------------------------------
KEYS = sorted({f for cls in SETTINGS_CLASSES for f in cls.__dataclass_fields__} | {"kl-weight", "LR", "lrr", "", " seed "})
VALUES = ["0", "1", "-1", "1e-4", "1.5", "abc", "nan", "inf", "-inf", "none", "Null", "true", "", " 3 ", "1e400", "10" * 30, "0x10", "1_000"]
pairs = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                  st.one_of(st.sampled_from(VALUES), st.text(max_size=8))),
        st.text(max_size=12),
    ),
    max_size=4,
)


@FUZZ
@given(st.sampled_from(SETTINGS_CLASSES), pairs)
def test_parse_set_parses_or_raises_settings_error(cls, items):
    try:
        values = parse_set(items, cls)
    except SettingsError:
        return
    for v in values.values():
        assert not (isinstance(v, float) and not math.isfinite(v))
    cls(**values)  # whatever parses also constructs


yaml_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@FUZZ
@given(st.sampled_from(SETTINGS_CLASSES), st.sampled_from(KEYS), yaml_values)
def test_cast_value_casts_or_raises_settings_error(cls, key, value):
    try:
        cast = cast_value(cls, key, value)
    except SettingsError:
        return
    cls(**{key.strip().replace("-", "_").lower(): cast})


@FUZZ
@given(st.sampled_from(METHODS.names()), st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=3))
def test_build_method_builds_or_raises_settings_error(name, overrides):
    try:
        method = build_method(name, **overrides)
    except SettingsError:
        return
    assert method.lr > 0 and method.epochs >= 1


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda c: getattr(c, "name", "") or c.__name__)
def test_defaults_pass_their_own_checks(cls):
    cls()

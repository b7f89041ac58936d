"""Property tests: every world file, request and --set string either parses or fails with ktmu's own error.

A user's input must never surface as a TypeError, AttributeError, KeyError or IndexError from deep
inside the library: it is either accepted or refused with HierarchyError, RequestError or
SettingsError (all ValueError subclasses, each with a message that says what to do).

The examples are drawn by the Hypothesis profile of tests/conftest.py: the same ones every run in
``make test`` (profile ``ci``), fresh ones in ``make fuzz`` (profile ``explore``).
"""
from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktmu.concepts import Hierarchy, HierarchyError
from ktmu.data import load_dataset
from ktmu.errors import KtmuError
from ktmu.methods import METHODS, build_method
from ktmu.engine.request import RequestError, UnlearningRequest
from ktmu.settings import SettingsError, cast_value, parse_set
from ktmu.engine.config import TrainConfig
from ktmu.study.recipes import RecipeError, load_recipe

# How many examples, and whether they are new each run, is the profile's (tests/conftest.py).
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
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


# ---- jsonl image lists (the study's format) ------------------------------------------------------------
LABELS = ["top", "footwear", "shirt", "coat", "sneaker", "Shirt", "blouse", "sandal", 0, 1, 3, -1, 7, True, 1.5, None, "", "nope"]
record = st.fixed_dictionaries({}, optional={"img_path": st.one_of(st.sampled_from(["a.png", "/abs/b.png", "", "img/c.jpg"]), scalars),
                                             "coarse_label": st.one_of(st.sampled_from(LABELS), nested),
                                             "fine_label": st.one_of(st.sampled_from(LABELS), nested)})
jsonl_line = st.one_of(record.map(lambda r: json.dumps(r, allow_nan=True)), nested.map(lambda v: json.dumps(v, allow_nan=True, default=str)),
                       st.text(max_size=20))


@FUZZ
@given(st.lists(jsonl_line, max_size=5), st.booleans(), st.binary(max_size=4))
def test_jsonl_lists_load_or_raise_a_ktmu_error(tmp_path_factory, toy_world, lines, with_hierarchy, junk):
    root = tmp_path_factory.mktemp("jsonl")
    (root / "train.jsonl").write_bytes("\n".join(lines).encode("utf-8") + junk)
    try:
        data = load_dataset("jsonl", "train", root=root, hierarchy=toy_world if with_hierarchy else None)
    except KtmuError:
        return
    assert len(data) == len(data.fine_labels) > 0  # what was accepted answers queries
    assert all(0 <= f < len(data.hierarchy.fine) for f in data.fine_labels) and len(data.coarse_labels) == len(data)


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
    for key, value in overrides.items():  # every accepted override is the value the method holds
        assert getattr(method, key.replace("-", "_").lower()) == value
    assert type(method)(**method.hyperparameters()) == method  # what was built rebuilds from its own record


# ---- recipes -----------------------------------------------------------------------------------------
RECIPE_KEYS = ["model", "world", "level", "goal", "zero_shot", "seed", "train", "max_per_concept", "precision", "device", "workers",
               "grad_checkpointing", "eval_batch_size", "max-per-concept", "Model", "zero-shot", "zeroshot"]
RECIPE_WORDS = ["tiny-clip", "fashion", "jsonl", "difficult", "fine", "hybrid", "digits", "none", "food101=/x", "fp32", "cpu", "both",
                "study", "cosine-epoch"]
recipe_scalars = st.one_of(scalars, st.sampled_from(RECIPE_WORDS), st.integers(-3, 300), st.floats(-1, 1e9))
trainer_sections = st.dictionaries(st.sampled_from(KEYS), recipe_scalars, max_size=4)
method_sections = st.dictionaries(st.sampled_from(METHODS.names() + ["nhl", "GA", "Nhl-Kl"]),
                                  st.one_of(st.none(), trainer_sections, recipe_scalars), max_size=3)
recipes = st.one_of(
    nested,
    st.dictionaries(st.sampled_from(RECIPE_KEYS), st.one_of(recipe_scalars, st.lists(recipe_scalars, max_size=3)), max_size=2).flatmap(
        lambda top: st.fixed_dictionaries({}, optional={"trainer": st.one_of(trainer_sections, recipe_scalars),
                                                        "methods": st.one_of(method_sections, recipe_scalars)}).map(lambda sec: {**top, **sec})),
)


@FUZZ
@given(st.one_of(recipes.map(_yaml_text), st.text(max_size=60)))
def test_load_recipe_parses_or_raises_recipe_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        recipe = load_recipe(path)
    except RecipeError:
        return
    TrainConfig(**recipe.trainer)  # what was accepted is usable as it stands
    for name in recipe.methods:
        build_method(name, **recipe.method(name))


@pytest.mark.xfail(strict=True, raises=RecursionError,
                   reason="known bug, reported to the lead: load_recipe (study/recipes.py) lets yaml's RecursionError escape")
def test_a_recipe_nested_a_thousand_deep_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("methods: " + "[" * 1000 + "]" * 1000)
    with pytest.raises(RecipeError):
        load_recipe(path)


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda c: getattr(c, "name", "") or c.__name__)
def test_defaults_pass_their_own_checks(cls):
    cls()

"""Validation, loading and queries of ``ktmu.concepts.Hierarchy``."""
from __future__ import annotations

import json

import pytest
import yaml

from ktmu.concepts import Hierarchy, HierarchyError, builtin_world


def _world(**overrides):
    """A small valid hierarchy as a dict; ``overrides`` replace top-level keys."""
    data = {
        "name": "zoo",
        "coarse": [
            {"name": "mammal", "aliases": ["mammals"]},
            {"name": "bird", "aliases": ["birds"]},
        ],
        "fine": [
            {"name": "cat", "parent": "mammal", "aliases": ["kitty", "house cat"]},
            {"name": "dog", "parent": "mammal", "aliases": ["puppy"]},
            {"name": "robin", "parent": "bird", "aliases": ["redbreast"]},
        ],
    }
    data.update(overrides)
    return data


# ---- validation ---------------------------------------------------------------------------------


def test_valid_world_builds():
    h = Hierarchy.from_dict(_world())
    assert h.name == "zoo"
    assert h.coarse_names == ["mammal", "bird"]
    assert h.fine_names == ["cat", "dog", "robin"]
    assert h.fine_to_coarse() == [0, 0, 1]


def test_unknown_parent_is_named_with_did_you_mean():
    data = _world()
    data["fine"][2]["parent"] = "brid"  # near-miss of "bird"
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "'robin'" in msg
    assert "unknown parent 'brid'" in msg
    assert "Did you mean 'bird'" in msg


def test_unknown_parent_far_from_any_name_has_no_suggestion():
    data = _world()
    data["fine"][2]["parent"] = "xyzzy"
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    assert "unknown parent 'xyzzy'" in str(ei.value)
    assert "Did you mean" not in str(ei.value)


def test_duplicate_fine_name():
    data = _world()
    data["fine"].append({"name": "cat", "parent": "mammal"})
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    assert "duplicate concept name 'cat'" in str(ei.value)


def test_duplicate_name_across_levels_case_insensitive():
    data = _world()
    data["fine"].append({"name": "Bird", "parent": "bird"})
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    assert "duplicate concept name 'Bird'" in str(ei.value)


def test_fine_concept_without_parent():
    data = _world()
    data["fine"].append({"name": "hamster"})
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "'hamster'" in msg
    assert "no coarse parent" in msg


def test_fine_concept_given_as_bare_string_has_no_parent():
    data = _world()
    data["fine"].append("hamster")
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    assert "'hamster'" in str(ei.value)
    assert "no coarse parent" in str(ei.value)


def test_alias_equal_to_another_concept_name():
    data = _world()
    data["fine"][1]["aliases"] = ["puppy", "cat"]  # dog's alias is the concept "cat"
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "alias 'cat'" in msg
    assert "'dog'" in msg
    assert "clashes" in msg


def test_alias_equal_to_coarse_concept_name():
    data = _world()
    data["fine"][2]["aliases"] = ["Bird"]  # robin's alias is the coarse concept "bird"
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "alias 'Bird'" in msg
    assert "'robin'" in msg and "'bird'" in msg


def test_alias_shared_by_two_concepts():
    data = _world()
    data["fine"][0]["aliases"] = ["pet"]
    data["fine"][1]["aliases"] = ["Pet"]
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "alias 'Pet'" in msg
    assert "'dog'" in msg and "'cat'" in msg


def test_alias_equal_to_own_name_is_allowed():
    data = _world()
    data["fine"][0]["aliases"] = ["Cat", "kitty"]
    h = Hierarchy.from_dict(data)
    assert h.find("CAT").name == "cat"


def test_coarse_concept_without_children():
    data = _world()
    data["coarse"].append({"name": "fish"})
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "'fish'" in msg
    assert "no fine concept under it" in msg


def test_coarse_concept_given_a_parent():
    data = _world()
    data["coarse"][1]["parent"] = "mammal"
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    msg = str(ei.value)
    assert "coarse concept 'bird' has a parent" in msg


def test_no_fine_concepts():
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(_world(fine=[]))
    assert "no fine concepts" in str(ei.value)


def test_not_a_mapping():
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(["cat", "dog"], source="bad.yaml")
    assert "bad.yaml" in str(ei.value)


def test_concept_without_name():
    data = _world()
    data["fine"].append({"parent": "mammal"})
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(data)
    assert "fine concept #3 has no name" in str(ei.value)


# ---- loading ------------------------------------------------------------------------------------


def test_load_yaml(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(_world()))
    h = Hierarchy.load(path)
    assert h.coarse_names == ["mammal", "bird"]
    assert h.fine_names == ["cat", "dog", "robin"]
    assert h.find("kitty").name == "cat"


def test_load_json(tmp_path):
    path = tmp_path / "zoo.json"
    path.write_text(json.dumps(_world()))
    h = Hierarchy.load(path)
    assert h == Hierarchy.from_dict(_world())
    assert h.find("redbreast").parent == "bird"


def test_load_name_defaults_to_file_stem(tmp_path):
    data = _world()
    del data["name"]
    path = tmp_path / "aviary.json"
    path.write_text(json.dumps(data))
    assert Hierarchy.load(path).name == "aviary"


def test_load_invalid_file_names_the_file(tmp_path):
    data = _world()
    data["coarse"][1]["parent"] = "mammal"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.load(path)
    assert str(path) in str(ei.value)


@pytest.mark.parametrize("suffix, text", [(".yaml", "[" * 3000 + "]" * 3000), (".json", "[" * 100_000 + "]" * 100_000),
                                          (".yaml", "fine: " + "{a: " * 3000 + "1" + "}" * 3000)])
def test_a_file_nested_thousands_deep_is_refused(tmp_path, suffix, text):
    """Both parsers recurse per nesting level; the RecursionError used to escape as a traceback."""
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(HierarchyError, match="nests lists or mappings too deeply"):
        Hierarchy.load(path)


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.load(path)
    assert str(path) in str(ei.value)
    assert "does not exist" in str(ei.value)


# ---- queries ------------------------------------------------------------------------------------


def test_find_by_alias_case_insensitive():
    h = Hierarchy.from_dict(_world())
    assert h.find("KITTY").name == "cat"
    assert h.find("  House Cat ").name == "cat"
    assert h.find("Birds").name == "bird"
    assert h.find("Birds").level == "coarse"
    assert h.index("Puppy") == 1
    assert h.index("birds") == 1


def test_find_unknown_name_did_you_mean():
    h = Hierarchy.from_dict(_world())
    with pytest.raises(HierarchyError) as ei:
        h.find("robbin")
    msg = str(ei.value)
    assert "no concept 'robbin'" in msg
    assert "Did you mean 'robin'" in msg


def test_fashion_fine_to_coarse():
    h = builtin_world("fashion")
    assert h.fine_names == [
        "t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    ]
    assert h.coarse_names == ["top", "bottom", "one-piece garment", "footwear", "accessory"]
    assert h.fine_to_coarse() == [0, 1, 0, 2, 0, 3, 0, 3, 4, 3]
    assert h.find("ankle boot").parent == "footwear"


def test_fashion_siblings():
    h = builtin_world("fashion")
    assert [c.name for c in h.siblings("shirt")] == ["t-shirt", "pullover", "coat"]
    assert [c.name for c in h.siblings("jeans")] == []  # trouser is alone under bottom
    assert [c.name for c in h.siblings("boot")] == ["sandal", "sneaker"]
    assert h.siblings("top") == []  # coarse concepts have no siblings


def test_fashion_children():
    h = builtin_world("fashion")
    assert [c.name for c in h.children("footwear")] == ["sandal", "sneaker", "ankle boot"]
    assert [c.name for c in h.children("shoes")] == ["sandal", "sneaker", "ankle boot"]  # by alias
    assert {c.name for c in h.children("top")} == {"t-shirt", "pullover", "shirt", "coat"}
    assert [c.name for c in h.children("top")] == ["t-shirt", "pullover", "coat", "shirt"]  # file order
    assert [c.name for c in h.children("accessory")] == ["bag"]


def test_digits_world():
    h = builtin_world("digits")
    assert h.coarse_names == ["handwritten digit"]
    assert len(h.fine_names) == 10
    assert h.fine_to_coarse() == [0] * 10
    assert h.index("7") == 7


@pytest.mark.parametrize("world", ["fashion", "digits"])
def test_every_fine_concept_has_an_alias(world):
    h = builtin_world(world)
    assert h.fine
    for c in h.fine:
        assert c.aliases, f"{world}: fine concept {c.name!r} has no alias"


def test_unknown_builtin_world():
    with pytest.raises(HierarchyError) as ei:
        builtin_world("fashoin")
    assert "Did you mean 'fashion'" in str(ei.value)


# ---- held-out audit names -----------------------------------------------------------------------


def _audited(**audit):
    """The small world with ``audit_names`` set per fine concept name."""
    data = _world()
    for item in data["fine"]:
        if item["name"] in audit:
            item["audit_names"] = audit[item["name"]]
    return data


def test_audit_names_are_parsed_but_not_method_visible():
    h = Hierarchy.from_dict(_audited(cat=["tabby"]))
    cat = h.fine[0]
    assert cat.audit_names == ("tabby",)
    assert cat.names == ("cat", "kitty", "house cat")  # what methods may use: no audit name
    assert cat.all_names == ("cat", "kitty", "house cat", "tabby")
    assert h.fine[1].audit_names == ()


def test_find_does_not_resolve_audit_names_by_default():
    h = Hierarchy.from_dict(_audited(cat=["Tabby"]))
    with pytest.raises(HierarchyError) as ei:
        h.find("tabby")
    msg = str(ei.value)
    assert "held-out audit name of 'cat'" in msg and "'kitty'" in msg
    assert h.find(" TABBY ", include_audit=True).name == "cat"
    assert h.find("kitty", include_audit=True).name == "cat"  # ordinary names still resolve
    with pytest.raises(HierarchyError, match="no concept 'tabbby'"):
        h.find("tabbby")


def test_did_you_mean_never_suggests_an_audit_name_to_requests():
    h = Hierarchy.from_dict(_audited(robin=["songthrush"]))
    with pytest.raises(HierarchyError) as ei:
        h.find("songthrus")
    assert "songthrush" not in str(ei.value)
    with pytest.raises(HierarchyError) as ei:
        h.find("songthrus", include_audit=True)
    assert "Did you mean 'songthrush'" in str(ei.value)


def test_request_by_audit_name_is_refused():
    from ktmu.engine.request import RequestError, UnlearningRequest

    h = Hierarchy.from_dict(_audited(cat=["tabby"]))
    with pytest.raises(RequestError, match="held-out audit name"):
        UnlearningRequest.parse(h, ["tabby"], "fine")


@pytest.mark.parametrize(
    "audit, clash",
    [
        ({"cat": ["dog"]}, "clashes with a concept or alias of 'dog'"),  # another concept's name
        ({"cat": ["puppy"]}, "clashes with a concept or alias of 'dog'"),  # another concept's alias
        ({"cat": ["Birds"]}, "clashes with a concept or alias of 'bird'"),  # a coarse alias
        ({"cat": ["kitty"]}, "clashes with one of its own method-visible names"),  # not held out
        ({"cat": ["CAT"]}, "clashes with one of its own method-visible names"),
        ({"cat": ["pet"], "dog": ["Pet"]}, "clashes with an audit name of 'cat'"),
    ],
)
def test_audit_name_clashes(audit, clash):
    with pytest.raises(HierarchyError) as ei:
        Hierarchy.from_dict(_audited(**audit))
    assert clash in str(ei.value)


def test_audit_names_round_trip_through_yaml(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(_audited(dog=["hound", "pooch"])))
    h = Hierarchy.load(path)
    assert h.fine[1].audit_names == ("hound", "pooch")
    assert h == Hierarchy.from_dict(_audited(dog=["hound", "pooch"]))


def test_fashion_audit_names_follow_the_last_alias_rule():
    """Every fashion fine concept held out its last listed alias; two method-visible aliases remain."""
    h = builtin_world("fashion")
    held = {c.name: c.audit_names for c in h.fine}
    assert held == {
        "t-shirt": ("short-sleeved top",), "trouser": ("slacks",), "pullover": ("knit sweater",),
        "dress": ("sundress",), "coat": ("parka",), "sandal": ("open-toe shoe",), "shirt": ("blouse",),
        "sneaker": ("sports shoe",), "bag": ("tote bag",), "ankle boot": ("chelsea boot",),
    }
    assert all(len(c.aliases) >= 2 for c in h.fine)
    assert h.find("blouse", include_audit=True).name == "shirt"
    with pytest.raises(HierarchyError, match="held-out audit name of 'shirt'"):
        h.find("blouse")
    # all_names keeps the pre-split alias order, so pretraining captions are unchanged
    assert h.find("shirt").all_names == ("shirt", "button-up shirt", "dress shirt", "blouse")
    assert all(c.audit_names == () for c in h.coarse)

"""The study's own worlds (imgnetdogs, compcars-s): world files, their records, shipped image lists, datasets."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ktmu.concepts import HierarchyError, builtin_world
from ktmu.data import DATASETS, DatasetError, load_dataset
from ktmu.study.prepare import study_list
from ktmu.report.world import format_world, world_record

WORLDS = Path(__file__).parents[1] / "src" / "ktmu" / "worlds"

# The study's forget targets, copied from its code (shared/reference/*/world.yaml): must stay identical.
LEVELS = {
    "imgnetdogs": {
        "easy": ["English setter", "beagle", "whippet", "Ibizan hound", "Dandie Dinmont terrier", "standard poodle",
                 "Border collie", "Blenheim spaniel", "cairn terrier", "Doberman", "groenendael"],
        "medium": ["Irish setter", "Gordon setter", "basset hound", "Airedale terrier", "Shih-Tzu", "miniature pinscher",
                   "Alaskan malamute", "flat-coated retriever", "Chesapeake Bay retriever", "Sealyham terrier"],
        "difficult": ["German short-haired pointer", "Boston terrier", "West Highland white terrier", "Labrador retriever",
                      "golden retriever", "German shepherd dog", "keeshond", "Samoyed", "Pomeranian", "Border terrier"],
    },
    "compcars-s": {
        "study": ["Acura MDX", "Lexus RX", "Jaguar XK", "MINI CABRIO", "Audi A7", "Audi A5 coupe", "Cadillac SRX",
                  "Corvette", "Mustang"],
    },
}


@pytest.mark.parametrize(("name", "n_fine", "n_coarse"), [("imgnetdogs", 99, 14), ("compcars-s", 292, 48)])
def test_world_loads_with_the_study_counts_and_levels(name, n_fine, n_coarse):
    h = builtin_world(name)
    assert (h.name, len(h.fine), len(h.coarse)) == (name, n_fine, n_coarse)
    assert {k: list(v) for k, v in h.levels.items()} == LEVELS[name]


@pytest.mark.parametrize("name", ["imgnetdogs", "compcars-s"])
def test_every_forget_target_has_another_name_and_held_out_names_stay_hidden(name):
    h = builtin_world(name)
    targets = {n for names in h.levels.values() for n in names}
    for target in targets:
        c = h.find(target)
        assert c.aliases, f"{target} needs an alias for the knowledge probes"
        for held in c.audit_names:
            with pytest.raises(HierarchyError, match="held-out"):
                h.find(held)
    # Where a target has two or more other names, one of them is held out for the audit.
    raw = yaml.safe_load((WORLDS / f"{name}.yaml").read_text())
    for item in raw["fine"]:
        if item["name"] in targets and len(item.get("aliases", [])) + len(item.get("audit_names", [])) >= 2:
            assert item.get("audit_names"), item["name"]


@pytest.mark.parametrize(("world", "alias", "canonical"), [
    ("imgnetdogs", "Alsatian", "German shepherd dog"),
    ("imgnetdogs", "westie", "West Highland white terrier"),
    ("imgnetdogs", "Labrador", "Labrador retriever"),
    ("compcars-s", "Ford Mustang", "Mustang"),
    ("compcars-s", "Toyota Camry", "Camry"),
    ("compcars-s", "Mercedes-Benz", "Benz"),
])
def test_aliases_resolve(world, alias, canonical):
    assert builtin_world(world).find(alias).name == canonical


def test_world_record_is_plain_json_in_label_order():
    h = builtin_world("imgnetdogs")
    record = json.loads(json.dumps(world_record(h)))
    assert set(record) == {"name", "coarse", "fine", "levels"}
    assert record["coarse"] == h.coarse_names and [f["name"] for f in record["fine"]] == h.fine_names
    shepherd = record["fine"][h.index("German shepherd dog")]
    assert shepherd == {"name": "German shepherd dog", "parent": "shepherd dog", "aliases": ["German shepherd", "Alsatian"],
                        "audit_names": ["German police dog"]}
    assert "audit_names" not in record["fine"][h.index("Welsh springer spaniel")]  # no held-out name, no key
    assert record["levels"] == LEVELS["imgnetdogs"]


def test_format_world_lists_groups_names_and_levels():
    text = format_world(builtin_world("imgnetdogs"))
    assert text.startswith("world imgnetdogs: 14 coarse, 99 fine concepts")
    assert "shepherd dog (12)" in text
    assert "  German shepherd dog (also: German shepherd, Alsatian) [held out for the audit: German police dog]" in text
    assert "  difficult (10): German short-haired pointer, Boston terrier" in text


def test_shipped_lists_agree_with_the_worlds():
    dogs = builtin_world("imgnetdogs")
    raw = yaml.safe_load((WORLDS / "imgnetdogs.yaml").read_text())
    wnid = {f["name"]: f["imagenet_wnid"] for f in raw["fine"]}
    parents = {c.name: c.parent for c in dogs.fine}
    for split, per_breed, folder in (("train", 200, "train"), ("test", 50, "val")):
        records = study_list("imgnetdogs", split)
        assert Counter(r["fine_label"] for r in records) == {n: per_breed for n in dogs.fine_names}
        for r in records:
            top, w, _ = Path(r["img_path"]).parts
            assert (top, w, r["coarse_label"]) == (folder, wnid[r["fine_label"]], parents[r["fine_label"]])
    cars = builtin_world("compcars-s")
    records = study_list("compcars-s", "test")
    assert len(records) == 8943 and {r["fine_label"] for r in records} == set(cars.fine_names)
    assert all(Path(r["img_path"]).parts[:2] == (r["coarse_label"], r["fine_label"]) for r in records)


@pytest.mark.parametrize("name", ["imgnetdogs", "compcars-s"])
def test_dataset_is_registered_and_says_how_to_prepare(name, tmp_path):
    assert name in DATASETS
    with pytest.raises(DatasetError, match=f"ktmu prepare {name}"):
        load_dataset(name, "train")
    with pytest.raises(DatasetError, match=f"ktmu prepare {name}"):
        load_dataset(name, "test", root=tmp_path)

"""Recipes (configs/*.yaml): the shipped files, their validation, and how ``--config`` meets the command line."""
import hashlib
import json
import re
from pathlib import Path

import pytest

from ktmu.cli import main, parse_args
from ktmu.concepts import builtin_world
from ktmu.methods import METHODS, build_method
from ktmu.study.recipes import RecipeError, load_recipe
from ktmu.engine.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(CONFIGS.rglob("*.yaml"))
EMBEDDED = CONFIGS / "embedded" / "fashion-difficult.yaml"
STUDY = {name: CONFIGS / "study" / f"{name}.yaml" for name in ("imgnetdogs-easy", "imgnetdogs-medium", "imgnetdogs-difficult", "compcars-s")}


def _write(tmp_path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _parse(argv):
    return parse_args(argv)


# ---- the shipped recipes ---------------------------------------------------------------------------------------
def test_the_shipped_recipes_are_the_ones_the_readme_names():
    assert {p.relative_to(CONFIGS).as_posix() for p in SHIPPED} == {
        "embedded/fashion-difficult.yaml", "embedded/fashion-difficult-neighbours.yaml", "embedded/fashion-sequence.yaml",
        "study/imgnetdogs-easy.yaml", "study/imgnetdogs-medium.yaml",
        "study/imgnetdogs-difficult.yaml", "study/compcars-s.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_recipe_loads_and_begins_with_the_command_that_runs_it(path):
    recipe = load_recipe(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ktmu ") and f"--config configs/{path.relative_to(CONFIGS).as_posix()}" in first
    assert recipe.methods and recipe.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for line in path.read_text().splitlines():  # every session and trainer value says why (methods: a comment block)
        if re.match(r"^ {0,2}[a-z_]+: +[^{ ]", line):
            assert "#" in line, f"{path.name}: say why: {line}"


def test_the_embedded_recipe_is_exactly_what_the_commands_do_without_flags():
    """Every number of the embedded default has this file behind it: it must equal the code's defaults."""
    from ktmu.workflows.bench import bench_methods

    recipe = load_recipe(EMBEDDED)
    without_neighbours, _ = bench_methods(None, 0)
    assert set(recipe.methods) == set(without_neighbours), "add the new method's defaults to configs/embedded/fashion-difficult.yaml"
    near = load_recipe(EMBEDDED.with_name("fashion-difficult-neighbours.yaml"))
    assert set(near.methods) == set(METHODS.names()), "add the new method's defaults to configs/embedded/fashion-difficult-neighbours.yaml"
    assert near.session["neighbours"] == 16 and {k: v for k, v in near.methods.items() if k in recipe.methods} == recipe.methods
    for name, values in near.methods.items():
        defaults = build_method(name).hyperparameters()
        assert values == defaults, f"configs/embedded/: {name} differs from the method's defaults {defaults}"
    plain, with_recipe = _parse(["bench", "--out", "x"]), _parse(["bench", "--config", str(EMBEDDED), "--out", "x"])
    for key in ("model", "world", "level", "goal", "max_per_concept", "seed", "precision", "train", "batch_size", "lr", "epochs",
                "selection", "schedule"):
        assert getattr(with_recipe, key) == getattr(plain, key), key
    assert with_recipe.zero_shot == ["digits"] and plain.zero_shot is None  # None = the other built-in world: digits
    assert TrainConfig(**recipe.trainer) == TrainConfig()


# The study's values (reference study.yaml): (lr, method values with KL_f / KL_c) per dataset.
STUDY_VALUES = {
    "imgnetdogs": {"ga": (8e-8, {}), "gdiff": (8e-8, {}), "ga-kl": (8e-8, {"kl_f": 20, "kl_c": 20}), "relabel": (1e-7, {}),
                   "salun": (2e-7, {"saliency_fraction": 0.1}), "me-gd": (1e-7, {}), "task-vector": (1e-7, {"scale": 1.5}),
                   "npo-kl": (1e-7, {"beta": 0.5, "kl_f": 20, "kl_c": 5}), "nhl-kl": (1e-7, {"margin": 2, "kl_f": 20, "kl_c": 10})},
    "compcars-s": {"ga": (8e-8, {}), "gdiff": (8e-8, {}), "ga-kl": (8e-8, {"kl_f": 20, "kl_c": 40}), "relabel": (2e-7, {}),
                   "salun": (2e-7, {"saliency_fraction": 0.1}), "me-gd": (2e-7, {}), "task-vector": (1e-7, {"scale": 1.5}),
                   "npo-kl": (1e-7, {"beta": 0.4, "kl_f": 5, "kl_c": 20}), "nhl-kl": (1e-7, {"margin": 2, "kl_f": 20, "kl_c": 20})},
}


@pytest.mark.parametrize("name", list(STUDY))
def test_the_study_recipes_hold_the_studys_values(name):
    recipe = load_recipe(STUDY[name])
    world = recipe.session["world"]
    dogs = world == "imgnetdogs"
    h = builtin_world(world)
    assert recipe.session["model"] == "open_clip:ViT-L-14:openai" and recipe.session["seed"] == 1
    assert recipe.session["train"] == "both" and recipe.session["precision"] == "fp32"
    assert recipe.session["level"] in h.levels
    assert recipe.session["zero_shot"] == (["stanford_cars", "food101", "flowers102", "caltech101", "cifar100"] if dogs
                                          else ["food101", "flowers102", "caltech101", "oxford_pet", "cifar100"])
    assert recipe.session["max_per_concept"] == (150 if dogs else 100000)  # cars: every train image of the forgotten models
    assert recipe.trainer == {"epochs": 8 if dogs else 6, "batch_size": 32 if dogs else 16, "weight_decay": 1e-5, "adam_eps": 1e-6,
                              "schedule": "cosine-epoch", "selection": "study"}
    assert list(recipe.methods) == list(STUDY_VALUES[world])
    for method, (lr, values) in STUDY_VALUES[world].items():
        got = recipe.methods[method]
        assert got["lr"] == lr, method
        for key, value in values.items():
            if key == "kl_f":  # the study averages its KL over classes; ktmu sums: weight / class count
                assert got["kl_weight"] * len(h.fine) == pytest.approx(value, rel=1e-6), method
            elif key == "kl_c":
                assert got["kl_coarse_weight"] * len(h.coarse) == pytest.approx(value, rel=1e-6), method
            else:
                assert got[key] == value, (method, key)
    assert recipe.methods["task-vector"]["coarse_weight"] == -0.05  # learns on CE_f - 0.05 CE_c


# ---- validation ------------------------------------------------------------------------------------------------
BASE = "model: tiny-clip\nworld: fashion\n"


@pytest.mark.parametrize("text, message", [
    ("modle: tiny-clip\n", r"r\.yaml: unknown top-level key 'modle'\. Did you mean 'model'"),
    ("trainr: {epochs: 1}\n", r"unknown top-level key 'trainr'\. Did you mean 'trainer'"),
    ("seed: -1\n", r"r\.yaml: the recipe's top level: seed must be >= 0"),
    ("max_per_concept: 1.5\n", r"max_per_concept expects a whole number or none, got 1\.5"),
    ("trainer: {epohcs: 2}\n", r"r\.yaml: trainer: the trainer has no setting 'epohcs'\. Did you mean 'epochs'\?"),
    ("trainer: {lr: 1e-4}\n", r"trainer: the trainer: lr expects a number or none, got '1e-4'\. Write it as a number without quotes \(in YAML, 1e-4 is text: write 1\.0e-4\)"),
    ("trainer: {selection: studdy}\n", r"trainer: the trainer: selection must be one of ours, study, last, got 'studdy'\. Did you mean 'study'\?"),
    ("trainer: {schedule: cosine}\n", r"schedule must be one of warmup-cosine, cosine-epoch"),
    ("trainer: {seed: 3}\n", r"trainer: seed is a top-level key .*move it out of trainer:"),
    ("methods: {nhl_kl: {margin: 2}}\n", r"r\.yaml: methods: unknown method 'nhl_kl'\. Did you mean 'nhl-kl'"),
    ("methods: {nhl-kl: {margn: 2}}\n", r"r\.yaml: methods: nhl-kl: method 'nhl-kl' has no setting 'margn'\. Did you mean 'margin'\?"),
    ("methods: {nhl-kl: {kl_weight: -1}}\n", r"methods: nhl-kl: method 'nhl-kl': kl_weight must be >= 0"),
    ("methods: {nhl-kl: [1, 2]}\n", r"methods: nhl-kl must be a mapping"),
    ("zero_shot: [food101=/data/food]\n", r"zero_shot lists names only, got 'food101=/data/food'"),
    ("zero_shot: [food-101]\n", r"zero_shot: unknown zero-shot domain 'food-101'\. Did you mean 'food101'\?"),
    ("world: fashon\n", r"world: unknown dataset 'fashon'\. Did you mean 'fashion'"),
    ("model: [tiny-clip\n", r"r\.yaml is not valid YAML"),
    ("- a\n- b\n", r"r\.yaml: the file must be a mapping"),
])
def test_a_bad_recipe_names_the_file_the_key_and_what_to_write(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, text))


def test_a_missing_recipe_says_where_recipes_live(tmp_path):
    with pytest.raises(RecipeError, match="does not exist. Recipes ship in configs/"):
        load_recipe(tmp_path / "nope.yaml")


def test_a_bad_recipe_ends_the_command_with_one_error_line(tmp_path, capsys):
    path = _write(tmp_path, "trainer: {epohcs: 2}\n")
    assert main(["bench", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ktmu: error: ") and str(path) in err and "epochs" in err
    assert not (tmp_path / "out").exists()


# ---- the recipe meets the command line --------------------------------------------------------------------------
def test_a_flag_given_on_the_command_line_wins_and_the_rest_comes_from_the_recipe():
    dogs = str(STUDY["imgnetdogs-difficult"])
    args = _parse(["bench", "--config", dogs, "--out", "x", "--model", "tiny-clip", "--epochs", "1", "--selection", "ours",
                   "--seed", "3", "--zero-shot", "none"])
    assert (args.model, args.epochs, args.selection, args.seed, args.zero_shot) == ("tiny-clip", 1, "ours", 3, ["none"])
    assert (args.world, args.level, args.batch_size, args.schedule, args.train) == ("imgnetdogs", "difficult", 32, "cosine-epoch", "both")
    assert args.trainer_settings == {"weight_decay": 1e-5, "adam_eps": 1e-6}
    assert args.methods == list(STUDY_VALUES["imgnetdogs"])  # bench runs the recipe's methods
    assert _parse(["bench", "--config", dogs, "--out", "x", "--methods", "ga", "--zero-shot", "none"]).methods == ["ga"]


def test_flags_without_a_recipe_keep_todays_defaults():
    args = _parse(["bench", "--out", "x"])
    assert (args.selection, args.schedule, args.config) == ("ours", "warmup-cosine", None)


def test_the_recipes_zero_shot_suite_needs_its_folders_on_the_command_line(capsys):
    with pytest.raises(RecipeError, match=r"measures zero-shot on stanford_cars, .*--zero-shot stanford_cars=DIR food101=DIR .*--zero-shot none"):
        _parse(["bench", "--config", str(STUDY["imgnetdogs-difficult"]), "--out", "x"])


def test_unlearn_takes_the_methods_values_from_the_recipe_and_set_wins(tmp_path, capsys):
    recipe = _write(tmp_path, "# ktmu unlearn --config r.yaml --method nhl-kl --out run\n" + BASE +
                    "level: difficult\nzero_shot: [digits]\nmax_per_concept: 8\nseed: 2\n"
                    "trainer: {epochs: 1, batch_size: 4, weight_decay: 1.0e-5, adam_eps: 1.0e-6, schedule: cosine-epoch, selection: study}\n"
                    "methods: {nhl-kl: {lr: 1.0e-3, margin: 3.0, kl_weight: 2.0, kl_coarse_weight: 0.5}}\n")
    out = tmp_path / "run"
    assert main(["unlearn", "--config", str(recipe), "--method", "nhl-kl", "--force", "--set", "margin=1", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["method"] == {"lr": 1e-3, "epochs": 10, "margin": 1.0, "kl_weight": 2.0, "kl_coarse_weight": 0.5}
    train = res["config"]["train"]
    assert (train["epochs"], train["batch_size"], train["seed"], train["adam_eps"], train["weight_decay"]) == (1, 4, 2, 1e-6, 1e-5)
    assert (train["schedule"], train["selection"]) == ("cosine-epoch", "study")
    assert res["request"]["forget_set_size"] == 8 and res["seed"] == 2
    rec = res["recipe"]
    assert rec["path"] == str(recipe) and rec["sha256"] == hashlib.sha256(recipe.read_bytes()).hexdigest()
    assert rec["file"]["methods"]["nhl-kl"]["margin"] == 3.0 and rec["resolved"]["methods"]["nhl-kl"]["margin"] == 1.0
    assert rec["overridden_on_command_line"] == ["methods.nhl-kl.margin"]
    assert rec["resolved"]["model"] == "tiny-clip" and rec["resolved"]["trainer"]["selection"] == "study"


def test_unlearn_with_a_method_the_recipe_does_not_list_says_how_to_add_it(tmp_path, capsys):
    recipe = _write(tmp_path, BASE + "methods: {nhl-kl: {lr: 1.0e-3}}\n")
    assert main(["unlearn", "--config", str(recipe), "--method", "ga", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "has no settings for method 'ga'" in err and "add `ga: {}` under methods:" in err


def test_results_without_a_recipe_record_none(tmp_path):
    out = tmp_path / "run"
    assert main(["unlearn", "--model", "tiny-clip", "--force", "--method", "ga", "--epochs", "1", "--max-per-concept", "4",
                 "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["recipe"] is None and res["config"]["train"]["selection"] == "ours"

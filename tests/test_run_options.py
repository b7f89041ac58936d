"""The library functions behind the command line's options: what a notebook calls to get the CLI's checks and decisions."""
from __future__ import annotations

import sys
import textwrap

import pytest

from ktmu.audit.options import audit_config
from ktmu.engine.config import TrainConfig
from ktmu.errors import KtmuError, UsageError
from ktmu.methods.overrides import bench_settings, method_settings
from ktmu.registry import Registry, RegistryError
from ktmu.report.catalog import catalog
from ktmu.workflows.bench import bench_run_key
from ktmu.workflows.options import check_perf_options, data_options, resolve_runtime, train_config
from ktmu.workflows.perf import PerfOptions
from ktmu.workflows.session import RuntimeOptions
from ktmu.settings import SettingsError
from ktmu.study.recipes import load_recipe, recipe_defaults


def test_method_settings_take_the_recipes_values_then_set():
    assert method_settings("nhl-kl", ["margin=3", "kl-weight=7"], base={"lr": 1e-3, "margin": 2.0}) == \
        {"lr": 1e-3, "margin": 3.0, "kl_weight": 7.0}
    with pytest.raises(SettingsError, match="has no setting 'margn'. Did you mean 'margin'"):
        method_settings("nhl-kl", ["margn=3"])
    with pytest.raises(SettingsError, match="kl_weight must be >= 0"):  # checked by building the method
        method_settings("nhl-kl", base={"kl_weight": -1.0})


def test_a_bench_set_goes_to_the_methods_that_have_the_key_and_a_key_none_has_is_an_error():
    assert bench_settings(["ga", "nhl-kl"], ["kl_weight=7"]) == {"ga": {}, "nhl-kl": {"kl_weight": 7.0}}
    assert bench_settings(["ga"], [], base=lambda name: {"lr": 2e-4}) == {"ga": {"lr": 2e-4}}
    with pytest.raises(SettingsError, match=r"none of the benched methods \(ga, nhl-kl\) has this setting. Did you mean 'kl_weight'"):
        bench_settings(["ga", "nhl-kl"], ["kl_wieght=1"])


def _key(**changes):
    base = dict(request={"concepts": ["shirt"], "goal": "fine"}, model="mini-clip", world="fashion", data={}, zero_shot=None,
                max_per_concept=150, seed=0, runtime=RuntimeOptions(), set_items=[], cfg=TrainConfig())
    return bench_run_key(**{**base, **changes})


def test_the_bench_run_key_tells_a_resume_from_another_bench():
    assert _key() == _key(runtime=RuntimeOptions(workers=4, eval_batch_size=64))  # workers and batch size change no result
    differs = lambda a, b: sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))  # noqa: E731
    assert differs(_key(), _key(cfg=TrainConfig(lr=1e-4, epochs=3))) == ["epochs", "lr"]
    assert differs(_key(), _key(runtime=RuntimeOptions(precision="bf16"))) == ["precision"]
    assert differs(_key(), _key(set_items=["margin=3"])) == ["set"]
    # keys that only exist when they matter, so that benches written before them still resume
    assert not {"audit", "seeds", "recipe_methods"} & set(_key(audit=False, seeds=1))
    assert _key(audit=True, seeds=3, recipe_methods={"ga": {"lr": 1e-4}})["audit"] is True
    assert _key(seeds=3)["seeds"] == 3 and _key(recipe_methods={"ga": {}})["recipe_methods"] == {"ga": {}}


def test_runtime_and_data_options_are_checked_with_the_options_name():
    rt = resolve_runtime("cpu", "fp32", workers=2, eval_batch_size=64, train="both", force=True)
    assert (rt.device, rt.workers, rt.eval_batch_size, rt.train, rt.force) == ("cpu", 2, 64, "both", True)
    with pytest.raises(UsageError, match="--workers must be 0 or more"):
        resolve_runtime("cpu", workers=-1)
    assert data_options("jsonl", "/data/dogs", "dogs.yaml") == {"root": "/data/dogs", "hierarchy": "dogs.yaml"}
    assert data_options("fashion") == {}
    with pytest.raises(UsageError, match="--world imagefolder reads your own images: add --data-root DIR"):
        data_options("imagefolder", hierarchy="h.yaml")
    with pytest.raises(RegistryError, match="Did you mean 'digits'"):
        data_options("digts")


def test_train_config_takes_a_recipes_other_trainer_fields_and_the_flags():
    cfg = train_config(lr=1e-4, epochs=2, seed=3, batch_size=8, workers=1, selection="study", schedule=None,
                       recipe_trainer={"weight_decay": 1e-5, "adam_eps": 1e-6})
    assert (cfg.lr, cfg.epochs, cfg.seed, cfg.batch_size, cfg.selection, cfg.schedule, cfg.weight_decay, cfg.adam_eps) == \
        (1e-4, 2, 3, 8, "study", "warmup-cosine", 1e-5, 1e-6)
    with pytest.raises(SettingsError, match="lr must be > 0"):
        train_config(lr=0.0)


def test_recipe_defaults_split_flagged_trainer_fields_from_the_rest(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: tiny-clip\nseed: 2\ntrainer: {epochs: 3, weight_decay: 1.0e-5, selection: study}\nmethods: {ga: {}, nhl-kl: {}}\n")
    recipe = load_recipe(path)
    bench = recipe_defaults(recipe, "bench")
    assert {k: v for k, v in bench.items() if k != "recipe"} == {
        "model": "tiny-clip", "seed": 2, "epochs": 3, "selection": "study", "trainer_settings": {"weight_decay": 1e-5},
        "methods": ["ga", "nhl-kl"]}
    assert bench["recipe"] is recipe and "methods" not in recipe_defaults(recipe, "unlearn")


def test_audit_config_from_budgets():
    cfg = audit_config(max_per_concept=20, seed=3, probe_per_class=10, relearn_steps=50, relearn_images=4)
    assert (cfg.max_per_concept, cfg.seed, cfg.probe_per_class) == (20, 3, 10)
    assert (cfg.relearn.steps, cfg.relearn.images_per_concept, cfg.relearn.seed) == ((0, 10, 25, 50), 4, 3)
    with pytest.raises(UsageError, match="--relearn-steps must be at least 1, got 0"):
        audit_config(relearn_steps=0)
    assert cfg.relearn.lr == 1e-4 and audit_config(relearn_lr=3e-4).relearn.lr == 3e-4  # the attack's rate: 1e-4 unless given


def test_perf_options_that_would_measure_nothing_are_refused():
    check_perf_options(PerfOptions(image_size=0, classes=1))  # 0 = the model's own size; one class still times a step
    for field, flag in (("batch_size", "--batch-size"), ("repeats", "--repeats"), ("steps", "--steps")):
        with pytest.raises(UsageError, match=f"{flag} must be at least 1, got 0"):
            check_perf_options(PerfOptions(**{field: 0}))


def test_catalog_lists_every_registered_name_with_a_description():
    from ktmu.backbones import BACKBONES
    from ktmu.data import DATASETS
    from ktmu.data.domains import DOMAINS
    from ktmu.methods import METHODS

    entries = catalog()
    for kind, registry in (("methods", METHODS), ("backbones", BACKBONES), ("worlds", DATASETS), ("domains", DOMAINS)):
        assert [name for name, _ in entries[kind]] == registry.names(), kind
        assert all(desc for _, desc in entries[kind]), kind
    assert dict(entries["methods"])["ga"].startswith("Gradient ascent (GA)")
    with pytest.raises(KtmuError, match="unknown kind 'method'. Did you mean 'methods'"):
        catalog("method")


def test_registry_describe_reads_a_lazy_target_without_importing_it(tmp_path, monkeypatch):
    (tmp_path / "ktmu_fake_backend.py").write_text(textwrap.dedent('''\
        """A heavy backend, imported only when chosen."""
        raise ImportError("describe() must not import me")


        class Heavy:
            """The heavy model: what it is.

            More about it.
            """
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[type] = Registry("backend")
    reg.register("heavy", "ktmu_fake_backend:Heavy")
    assert reg.describe("heavy") == "The heavy model: what it is."
    assert reg.describe("HEAVY", module=True) == "A heavy backend, imported only when chosen."
    assert "ktmu_fake_backend" not in sys.modules
    with pytest.raises(RegistryError, match="unknown backend 'heavyy'. Did you mean 'heavy'"):
        reg.describe("heavyy")

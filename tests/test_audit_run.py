"""The knowledge audit's orchestration: every probe on real backbones, skipped entries, weight restoration, the CLI.

The pure probe functions are tested by hand in test_audit_probes.py; here a hand-built model whose
answers are known checks that the audit wires them to the right features, names and images.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms

from ktmu.audit.relearn import RelearnConfig, curve_points, relearn_indices, relearning_curve
from ktmu.audit.run import AuditConfig, Auditor, audit_models, measure_models
from ktmu.backbones.base import Backbone
from ktmu.cli import main
from ktmu.concepts import Hierarchy
from ktmu.data import ArrayDataset
from ktmu.prompts import AUDIT_TEMPLATES, TEMPLATES
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.engine.request import UnlearningRequest

# Four fine concepts; coat (index 1, after its sibling shirt) is forgotten and has a held-out name.
KNOWN_WORLD = {
    "name": "known",
    "coarse": [{"name": "top"}, {"name": "footwear"}],
    "fine": [
        {"name": "shirt", "parent": "top", "aliases": ["blouse"]},
        {"name": "coat", "parent": "top", "aliases": ["jacket"], "audit_names": ["parka"]},
        {"name": "sneaker", "parent": "footwear"},
        {"name": "sandal", "parent": "footwear"},
    ],
}
COAT = 1
PROBES = {"name", "aliases", "templates", "linear_probe", "mlp_probe", "knn_probe", "relearn", "soft_prompt", "weights", "mass",
          "sibling_damage", "worst_case", "erasure"}


class KnownClip(nn.Module):
    """A CLIP whose answers are known: an image's feature is its concept's unit vector (read off its brightness),
    a caption's feature is the unit vector of the concept it names (whatever the template)."""

    def __init__(self, name_rows: torch.Tensor) -> None:
        super().__init__()
        self.image_proj = nn.Parameter(torch.eye(4))  # column k: the feature of concept k's images
        self.name_embed = nn.Parameter(name_rows.clone())  # one row per name
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        level = ((images.float().mean(dim=(1, 2, 3)) * 255 - 30) / 50).round().clamp(0, 3).long()
        return F.one_hot(level, 4).float() @ self.image_proj.T

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.name_embed[tokens]


def known_backbone(world: Hierarchy) -> Backbone:
    vocab, rows = {}, []
    for k, c in enumerate(world.fine):
        for n in c.all_names:
            vocab[n] = len(rows)
            rows.append(F.one_hot(torch.tensor(k), 4).float())
    for c in world.coarse:
        vocab[c.name] = len(rows)
        rows.append(sum(F.one_hot(torch.tensor(world.index(f)), 4).float() for f in world.children(c.name)))
    frames = [t.split("{}") for t in (*TEMPLATES, *AUDIT_TEMPLATES)]

    def tokenize(texts):
        ids = []
        for text in texts:
            names = [text[len(a): len(text) - len(b)] for a, b in frames if text.startswith(a) and text.endswith(b)]
            ids.append(next(vocab[n] for n in names if n in vocab))
        return torch.tensor(ids)

    towers = {"image": ("image_proj",), "text": ("name_embed",), "temperature": ("logit_scale",)}
    backbone = Backbone("known-clip", KnownClip(torch.stack(rows)), tokenize, transforms.ToTensor(), towers=towers)
    backbone.vocab = vocab
    return backbone


def known_split(world: Hierarchy, split: str, per_class: int, seed: int) -> ArrayDataset:
    """Grey 28x28 images; concept k's pixels are uniform in [50k, 50k + 60]."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), per_class)
    images = (rng.random((len(labels), 28, 28)) * 60 + labels[:, None, None] * 50).astype(np.uint8)
    return ArrayDataset(world, split, images, labels)


def known_auditor(world_dict=KNOWN_WORLD, forget="coat", train_per_class=20, max_per_concept=5, force=False, steps=(0, 2, 4)) -> Auditor:
    world = Hierarchy.from_dict(world_dict)
    train, test = known_split(world, "train", train_per_class, 0), known_split(world, "test", 10, 1)
    request = UnlearningRequest.parse(world, [forget])
    preprocess = transforms.ToTensor()
    # probe budget 20: every shirt train image but only the 15 coats outside the forget set, so where coat and shirt
    # images share one feature the probe's best guess is shirt (a tie would otherwise be broken by rounding)
    cfg = AuditConfig(probe_per_class=20, relearn=RelearnConfig(steps=steps, batch_size=4, images_per_concept=4),
                      max_per_concept=max_per_concept)
    return Auditor(request, train, UnlearningEvaluator(request, test, [], preprocess), preprocess, cfg, force=force)


def test_hand_built_models_give_the_known_answers():
    """Name suppressed, features kept -> alias leak and probe recall stay high; features collapsed onto a sibling -> probe finds nothing."""
    auditor = known_auditor()
    world = auditor.world
    original = known_backbone(world)
    suppressed = known_backbone(world)  # the canonical name's caption points away from coat; held-out names and images untouched
    with torch.no_grad():
        suppressed.model.name_embed[suppressed.vocab["coat"]] = -F.one_hot(torch.tensor(COAT), 4).float()
    collapsed = known_backbone(world)  # coat images get exactly shirt's feature; every caption untouched
    with torch.no_grad():
        collapsed.model.image_proj[:, COAT] = collapsed.model.image_proj[:, 0]
    result = audit_models(auditor, {"original": ("known", original), "unlearned": ("suppressed", suppressed), "oracle": ("collapsed", collapsed)})
    o, s, c = (result["models"][r] for r in ("original", "unlearned", "oracle"))

    assert o["name"]["d_f_fine"] == 100 and o["aliases"]["held_out"]["worst"] == 100 and o["linear_probe"]["forgotten_recall"] == 100
    # suppressed: gone by its name (every template), found under the held-out name and in the features
    assert s["name"]["d_f_fine"] == 0 and s["templates"]["held_out"]["worst"] == 0 and s["templates"]["training"]["worst"] == 0
    assert s["aliases"]["held_out"]["concepts"]["coat"]["names"] == {"parka": {"d_f_fine": 100.0, "d_r_fine": 100.0}}
    assert s["aliases"]["method_visible"]["worst"] == 100
    assert s["aliases"]["method_visible"]["concepts"]["coat"]["worst_name"] == "jacket"
    assert s["linear_probe"]["forgotten_recall"] == 100
    assert s["worst_case"]["study_quality"] == 100 and s["worst_case"]["quality"] == 0
    assert s["worst_case"]["probe"] == "held_out_alias" and s["worst_case"]["per_probe"]["linear_probe"] == 0
    assert s["mass"] == {"forgotten": 0.0, "sibling": 1.0, "other": 0.0, "n": 10}
    # collapsed onto the sibling: no name and no probe finds coat
    assert c["name"]["d_f_fine"] == 0 and c["aliases"]["held_out"]["worst"] == 0
    assert c["linear_probe"]["forgotten_recall"] < 50 <= s["linear_probe"]["forgotten_recall"]
    assert c["worst_case"]["quality"] > 50
    # gaps to the oracle (the collapsed model): the suppressed model keeps what the oracle lacks
    gap = s["oracle_gap"]
    assert gap["held_out_alias"] == 100 and gap["linear_probe_recall"] > 50 and set(gap["relearn"]) == {"forget", "retain"}
    assert "oracle_gap" not in c and "oracle_gap" in o
    for rec in (o, s, c):
        assert PROBES <= set(rec) and "study" in rec
        assert rec["relearn"]["forget"]["steps"] == [0, 2, 4] and len(rec["relearn"]["forget"]["curve"]) == 3
        assert rec["relearn"]["forget"]["curve"][0] == rec["name"]["d_f_fine"]  # step 0 is the model itself
        assert rec["relearn"]["forget"]["images"] == 4 + 3 * 4 and rec["relearn"]["retain"]["images"] == 3 * 4
    assert o["relearn"]["forget"]["recovery"] is None and "nothing was removed" in o["relearn"]["forget"]["recovery_reason"]
    assert s["study"]["summary"]["quality"] == 100 and s["study"]["scores"]["forget_fine"] == s["name"]["d_f_fine"]
    # the other feature readers and the soft-prompt attack: intact features (head moved) -> all of coat; collapsed -> none of it
    for key in ("mlp_probe", "knn_probe"):
        assert o[key]["forgotten_recall"] == 100 and s[key]["forgotten_recall"] == 100 and c[key]["forgotten_recall"] < 50
    assert s["soft_prompt"]["d_f_fine"] == 100 and c["soft_prompt"]["d_f_fine"] == 0  # coat's learned text cannot beat shirt's
    assert s["soft_prompt"]["loss_end"] < s["soft_prompt"]["loss_start"] and s["soft_prompt"]["images"] == 16
    # erasure: the original and the suppressed model read like the original (0), the oracle like itself (1)
    assert o["erasure"]["linear_probe"] == 0 and s["erasure"]["linear_probe"] == 0 and c["erasure"]["linear_probe"] == 1
    assert s["erasure"]["soft_prompt"] == 0 and c["erasure"]["soft_prompt"] == 1
    # weights: the original is the line's start; the suppressed model moved one caption row by 2 e_coat (+e_coat -> -e_coat)
    assert o["weights"]["relative_distance"] == 0 and o["weights"]["barrier"] == 0
    norm = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in original.model.parameters()))
    assert s["weights"]["relative_distance"] == pytest.approx(2 / norm)
    assert s["weights"]["t"][5] == 0.5 and len(s["weights"]["d_f_loss"]) == 11
    # coat's caption row is (1 - 2t) e_coat: its unit text feature stays +e_coat up to t < 0.5 (loss ~0), is 0 at t = 0.5 (four
    # equal logits: loss log 4) and -e_coat after (loss 10 + log 3): a step, whose largest rise above the chord is at t = 0.6
    loss = s["weights"]["d_f_loss"]
    assert loss[4] < 0.01 and loss[5] == pytest.approx(math.log(4)) and loss[6] == pytest.approx(10 + math.log(3), abs=1e-3)
    assert s["weights"]["barrier_t"] == 0.6 and s["weights"]["barrier"] == pytest.approx(loss[6] - (0.4 * loss[0] + 0.6 * loss[10]))
    # indistinguishability from the oracle: every coat image's margin is +10 in the original (its caption's logit 10, the rest 0)
    # and -10 in both others (suppressed: coat's logit -10 against 0; collapsed: 0 against shirt's 10) -- the margins alone
    # cannot tell these two apart, which is why they are one probe among several
    ks, ko = s["indistinguishability"], o["indistinguishability"]
    assert ks["ks_statistic"] == 0 and ks["p_value"] == 1 and ks["margin_median"] == pytest.approx(-10) and ks["images"] == 10
    assert ko["ks_statistic"] == 1 and ko["margin_median"] == pytest.approx(10) and "indistinguishability" not in c
    json.dumps(result, allow_nan=False)  # NaN is written as null


def test_relearning_restores_the_audited_weights_and_trainable_choice():
    auditor = known_auditor()
    backbone = known_backbone(auditor.world)
    with torch.no_grad():
        backbone.model.image_proj.add_(0.1 * torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    backbone.set_trainable("image")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    m = auditor.measure(backbone, "original")
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert backbone.trainable_choice == "image" and not backbone.model.name_embed.requires_grad
    assert all(p.grad is None for p in backbone.model.parameters())
    assert len(m.relearn["forget"][0]) == 3
    # the fine-tuning itself does move the default weights (text and temperature too, not only the image tower chosen here)
    seen = []
    curve, final = relearning_curve(backbone, auditor.relearn_sources["forget"], auditor.world.fine_names,
                                    lambda: seen.append(backbone.model.state_dict()["name_embed"].clone()) or 0.0, auditor.cfg.relearn,
                                    final=lambda: {"moved": float((backbone.model.image_proj.detach() - before["image_proj"]).abs().sum())})
    assert curve == [0.0, 0.0, 0.0] and final["moved"] > 0 and not torch.equal(seen[0], seen[-1])
    assert torch.equal(backbone.model.image_proj, before["image_proj"]) and torch.equal(backbone.model.name_embed, before["name_embed"])


def test_relearning_data_excludes_the_proxy_forget_set():
    from ktmu.engine.request import forget_set_indices

    auditor = known_auditor()
    req, train = auditor.request, auditor.train
    idx, reason = relearn_indices(req, train, "forget", 4, 5, seed=0)
    assert reason == "" and len(idx) == 16
    coat = idx[train.fine_labels[idx] == COAT]
    assert len(coat) == 4 and not set(coat) & set(forget_set_indices(req, train, 5, 0))
    retain, _ = relearn_indices(req, train, "retain", 4, 5, seed=0)
    assert COAT not in set(train.fine_labels[retain]) and set(retain) <= set(idx)
    assert curve_points(50) == (0, 10, 25, 50) and curve_points(1) == (0, 1)


def test_missing_held_out_names_and_too_few_images_are_explicit_skips():
    no_held_out = {**KNOWN_WORLD, "fine": [{k: v for k, v in c.items() if k != "audit_names"} for c in KNOWN_WORLD["fine"]]}
    auditor = known_auditor(no_held_out, max_per_concept=18)  # 20 coat train images, 18 in the forget set: 2 left for an attack that needs 4
    backbone = known_backbone(auditor.world)
    result = audit_models(auditor, {"original": ("known", backbone), "unlearned": ("known", backbone)})
    rec = result["models"]["unlearned"]
    assert rec["aliases"]["held_out"] == {"skipped": "the world file gives no audit_names for 'coat'"}
    assert "jacket" in rec["aliases"]["method_visible"]["concepts"]["coat"]["names"]
    assert "only 2 train image(s) of 'coat' outside the proxy forget set" in rec["relearn"]["forget"]["skipped"]
    assert rec["relearn"]["retain"]["curve"]  # the retain attack needs no coat image
    assert rec["linear_probe"]["forgotten_recall"] == 100  # the probe still ran (on the 2 coats outside the forget set)
    assert "held_out_alias" not in rec["worst_case"]["per_probe"] and "linear_probe" in rec["worst_case"]["per_probe"]
    from ktmu.audit.report import audit_table

    table = audit_table(result)
    assert "skipped" in table and "audit_names" in table


def test_original_that_does_not_know_the_concept_is_refused_without_force():
    auditor = known_auditor()
    clueless = known_backbone(auditor.world)
    with torch.no_grad():
        clueless.model.image_proj.zero_()
        clueless.model.image_proj[0] = 1  # every image looks like a shirt
    with pytest.raises(ValueError, match="--force"):
        auditor.measure(clueless, "original")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from ktmu.backbones import load_backbone

    backbone = load_backbone("tiny-clip")
    with torch.no_grad():
        for _, p in backbone.named_trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    backbone.save_weights(path)
    return path


AUDIT_FAST = ["--force", "--zero-shot", "none", "--probe-per-class", "20", "--relearn-steps", "5", "--relearn-images", "4",
              "--max-per-concept", "20", "--quiet"]


def test_ktmu_audit_end_to_end_on_tiny_clip(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "audit"
    rc = main(["audit", "--model", f"tiny-clip:{tiny_checkpoint}", "--original", "tiny-clip", "--oracle", "tiny-clip",
               "--out", str(out), *AUDIT_FAST])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "audit.json").read_text())
    assert data["request"]["concepts"] == ["shirt"] and data["request"]["forget_set_size"] == 20
    assert list(data["models"]) == ["original", "unlearned", "oracle"]
    for rec in data["models"].values():
        assert PROBES <= set(rec)
        for part in ("held_out", "method_visible"):
            entry = rec["aliases"][part]
            assert "skipped" in entry or entry["concepts"]["shirt"]["names"]
        assert set(rec["templates"]["held_out"]["templates"]) == set(AUDIT_TEMPLATES)
        assert set(rec["templates"]["training"]["templates"]) == set(TEMPLATES)
        assert rec["relearn"]["forget"]["steps"] == [0, 1, 2, 5] and "d_r_fine_after" in rec["relearn"]["forget"]
    assert data["models"]["unlearned"]["aliases"]["held_out"]["concepts"]["shirt"]["worst_name"] == "blouse"
    assert data["models"]["unlearned"]["oracle_gap"]["d_f_fine"] is not None
    assert data["settings"]["probe_per_class"] == 20 and data["provenance"]["models"]["original"] == "tiny-clip"
    printed = capsys.readouterr().out
    assert "WC-Quality" in printed and "oracle" in printed
    # a second audit into the same folder needs --overwrite
    rc = main(["audit", "--model", f"tiny-clip:{tiny_checkpoint}", "--original", "tiny-clip", "--out", str(out), *AUDIT_FAST])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_ktmu_audit_refuses_an_original_of_another_architecture(tmp_path, tiny_checkpoint, capsys):
    rc = main(["audit", "--model", f"tiny-clip:{tiny_checkpoint}", "--original", "mini-clip", "--out", str(tmp_path / "a"), *AUDIT_FAST])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--original mini-clip is not the architecture of --model tiny-clip" in err and not (tmp_path / "a" / "audit.json").exists()


def test_unlearn_and_bench_audit_each_run_and_the_original_once(tmp_path, monkeypatch, capsys):
    roles = []
    measure = Auditor.measure

    def counting(self, backbone, role, *a, **kw):
        roles.append(role)
        return measure(self, backbone, role, *a, **kw)

    monkeypatch.setattr(Auditor, "measure", counting)
    common = ["--model", "tiny-clip", "--force", "--epochs", "1", "--max-per-concept", "10", "--zero-shot", "none", "--quiet", "--audit",
              "--probe-per-class", "20", "--relearn-steps", "50", "--relearn-images", "4"]  # the audit's budgets, smaller: a faster test
    assert main(["unlearn", "--method", "ga", "--out", str(tmp_path / "u"), *common]) == 0
    rec = json.loads((tmp_path / "u" / "results.json").read_text())
    assert set(rec["audit"]["models"]) == {"original", "unlearned"} and PROBES <= set(rec["audit"]["models"]["unlearned"])
    assert rec["audit"]["models"]["unlearned"]["name"]["d_f_fine"] == pytest.approx(rec["unlearned"]["forget_fine"])
    assert "WC-Quality" in capsys.readouterr().out

    roles.clear()
    assert main(["bench", "--methods", "ga", "nhl-kl", "--out", str(tmp_path / "b"), *common, "--oracle", "tiny-clip"]) == 0
    assert roles == ["original", "oracle", "unlearned", "unlearned"]  # the oracle once, like the original
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert all("audit" in r for r in res["rows"])
    for row in res["rows"]:  # every row against the oracle
        models = row["audit"]["models"]
        assert list(models) == ["original", "unlearned", "oracle"] and "linear_probe_recall" in models["unlearned"]["oracle_gap"]
        assert models["oracle"] == res["rows"][0]["audit"]["models"]["oracle"] and models["unlearned"]["erasure"]["reasons"]
    table = (tmp_path / "b" / "table.md").read_text()
    assert "alias leak" in table and "WC-Quality" in table and "| original |" in table and "| oracle | - |" in table
    assert "relearn@50" in table and "erasure probe" in table
    key = json.loads((tmp_path / "b" / "bench.json").read_text())["run_key"]["audit"]
    assert key == {"oracle": "tiny-clip", "probe_per_class": 20, "relearn_steps": 50, "relearn_images": 4}  # smaller budgets: another bench


def test_per_image_hits_reproduce_the_records_numbers_and_another_seed_reuses_the_seed_free_probes():
    from ktmu.audit.report import HEADLINE, get_path
    from ktmu.audit.seeds import audit_statistics

    auditor = known_auditor(steps=(0, 2, 50))  # 50: the headline point relearn@50 (and retain@50) is measured
    world = auditor.world
    original, suppressed = known_backbone(world), known_backbone(world)
    with torch.no_grad():
        suppressed.model.name_embed[suppressed.vocab["coat"]] = -F.one_hot(torch.tensor(COAT), 4).float()
    collapsed = known_backbone(world)
    with torch.no_grad():
        collapsed.model.image_proj[:, COAT] = collapsed.model.image_proj[:, 0]
    measured = measure_models(auditor, {"original": ("known", original), "unlearned": ("suppressed", suppressed),
                                        "oracle": ("collapsed", collapsed)})
    result = auditor.result(measured)
    n = len(auditor.d_f_positions)
    wc = {role: list(rec["worst_case"]["accuracies"]) for role, rec in result["models"].items()}
    stats = audit_statistics({r: m.hits for r, m in measured.items()}, np.ones((1, n)), wc)
    checked = 0
    for role, rec in result["models"].items():
        for key, path in HEADLINE.items():
            value = get_path(rec, *path)
            if value is None:
                assert key not in stats[role] or np.isnan(stats[role][key][0]), (role, key)
                continue
            assert stats[role][key][0] == pytest.approx(value, abs=1e-4), (role, key)
            checked += 1
    assert checked >= 40 and "gap_held_out_alias" in stats["unlearned"]
    assert {"erasure_probe", "erasure_relearn", "relearn_at_50", "retain_at_50", "mlp_recall", "knn_recall", "soft_prompt",
            "gap_soft_prompt", "gap_relearn_at_50"} <= set(stats["unlearned"]) and "erasure_probe" in stats["oracle"]
    reps = auditor.replicates(measured)
    assert reps["unlearned"]["held_out_alias"].shape == (1000,) and np.all(reps["unlearned"]["held_out_alias"] == 100)

    # another draw seed: same forget set avoided, other relearning images; names/aliases/templates reused, probe and relearning rerun
    other = auditor.reseeded(draw_seed=7)
    assert other.cfg.seed == auditor.cfg.seed and other.cfg.relearn.seed == 7 and other.forget_set_size == auditor.forget_set_size
    assert not np.array_equal(other.relearn_sources["forget"].indices, auditor.relearn_sources["forget"].indices)
    again = other.measure(suppressed, "unlearned", reuse=measured["unlearned"])
    assert again.aliases is measured["unlearned"].aliases and again.features is measured["unlearned"].features
    assert again.hits.name is measured["unlearned"].hits.name and again.hits.linear_probe is not measured["unlearned"].hits.linear_probe
    assert set(again.seconds) == {"linear_probe", "mlp_probe", "knn_probe", "relearn", "soft_prompt", "total"}
    assert other.request_record()["draw_seed"] == 7 and "draw_seed" not in auditor.request_record()


def test_ktmu_audit_over_two_seeds_end_to_end(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "audit"
    rc = main(["audit", "--model", f"tiny-clip:{tiny_checkpoint}", "--original", "tiny-clip", "--oracle", "tiny-clip",
               "--out", str(out), "--seeds", "2", "--seed", "3", *AUDIT_FAST])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "audit.json").read_text())
    seeds = data["seeds"]
    assert data["interval_seeds"] == 2 and len(seeds) == 2
    assert [s["request"]["seed"] for s in seeds] == [3, 3] and seeds[1]["request"]["draw_seed"] == 4  # the forget set stays --seed's
    assert seeds[0]["models"]["unlearned"]["name"] == seeds[1]["models"]["unlearned"]["name"]  # the model is fixed
    for role, rec in data["models"].items():
        assert {"d_f_fine", "held_out_template", "probe_recall", "relearn_after", "wc_quality", "mlp_recall", "knn_recall",
                "soft_prompt"} <= set(rec["mean"]), role
        assert rec["interval"]["soft_prompt"]["half_width"] is not None and rec["interval"]["knn_recall"]["half_width"] is not None
        per_seed = [s["models"][role]["linear_probe"]["forgotten_recall"] for s in seeds]
        assert rec["mean"]["probe_recall"] == pytest.approx(sum(per_seed) / 2)
        iv = rec["interval"]["probe_recall"]
        assert iv["half_width"] == pytest.approx((iv["high"] - iv["low"]) / 2)
    assert {"gap_d_f_fine", "gap_probe_recall", "gap_relearn_after"} <= set(data["models"]["unlearned"]["interval"])
    printed = capsys.readouterr().out
    assert "±" in printed and "over 2 seeds" in printed
    assert main(["audit", "--model", "tiny-clip", "--original", "tiny-clip", "--out", str(tmp_path / "b"), "--seeds", "0", *AUDIT_FAST]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_unlearn_and_bench_audit_every_seed(tmp_path, monkeypatch, capsys):
    import ktmu.audit.options

    small = ktmu.audit.options.audit_config
    monkeypatch.setattr(ktmu.audit.options, "audit_config", lambda max_per_concept, seed, **kw: replace(
        small(max_per_concept, seed, **kw), probe_per_class=20, relearn=RelearnConfig(steps=(0, 2), images_per_concept=4, seed=seed)))
    roles, seed_free = [], []
    measure, fixed = Auditor.measure, Auditor._seed_free
    monkeypatch.setattr(Auditor, "measure", lambda self, b, role, *a, **kw: roles.append((role, self.cfg.seed)) or measure(self, b, role, *a, **kw))
    monkeypatch.setattr(Auditor, "_seed_free", lambda self, b, role, *a: seed_free.append(role) or fixed(self, b, role, *a))
    common = ["--model", "tiny-clip", "--force", "--epochs", "1", "--max-per-concept", "10", "--zero-shot", "none", "--quiet", "--audit",
              "--seeds", "2"]
    assert main(["bench", "--methods", "ga", "nhl-kl", "--out", str(tmp_path / "b"), *common]) == 0
    # the original's probes once per seed, its seed-free ones once per session; every seed's run audited with its seed
    assert roles == [("original", 0), ("unlearned", 0), ("original", 1), ("unlearned", 1), ("unlearned", 0), ("unlearned", 1)]
    assert seed_free == ["original", "unlearned", "unlearned", "unlearned", "unlearned"]
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    for row in res["rows"]:
        audits = [s["audit"] for s in row["seeds"]]
        assert [a["request"]["seed"] for a in audits] == [0, 1] and all("interval" not in a["models"]["unlearned"] for a in audits)
        model = row["audit"]["models"]["unlearned"]
        assert row["audit"]["interval_seeds"] == 2 and "seeds" not in row["audit"]
        assert model["mean"]["probe_recall"] == pytest.approx(sum(a["models"]["unlearned"]["linear_probe"]["forgotten_recall"] for a in audits) / 2)
        assert {"held_out_alias", "held_out_template", "probe_recall", "relearn_after", "wc_quality"} <= set(model["interval"])
    table = (tmp_path / "b" / "table.md").read_text()
    assert table.count("±") >= 3 * 4  # Q-U plus the four audit columns on each method row, the audit columns on the original's
    capsys.readouterr()

    roles.clear()
    assert main(["unlearn", "--method", "ga", "--out", str(tmp_path / "u"), *common]) == 0
    assert [r for r, _ in roles] == ["original", "unlearned", "original", "unlearned"]
    rec = json.loads((tmp_path / "u" / "results.json").read_text())
    assert [s["audit"]["request"]["seed"] for s in rec["seeds"]] == [0, 1] and "probe_recall" in rec["audit"]["models"]["unlearned"]["interval"]
    assert "over 2 seeds" in capsys.readouterr().out

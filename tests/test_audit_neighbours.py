"""The audit's images stay disjoint from every image the method saw (forget set and neighbours); budgets that no longer fit are
said, never silently zero; the run's neighbour setting is read from its results.json; the oracle of unlearn/bench --audit."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_audit_run import AUDIT_FAST, COAT, KNOWN_WORLD, known_auditor, known_backbone, known_split
from torchvision import transforms

from ktmu.audit.config import AuditConfig, AuditError
from ktmu.audit.draws import SeenImages, check_recorded_neighbours
from ktmu.audit.models import audit_models
from ktmu.audit.oracle import default_oracle, resolve_oracle
from ktmu.audit.relearn import RelearnConfig, relearn_indices
from ktmu.audit.report import audit_table
from ktmu.audit.run import Auditor
from ktmu.cli import main
from ktmu.concepts import Hierarchy
from ktmu.data import load_dataset
from ktmu.engine.neighbours import indices_sha256, neighbour_indices, neighbour_record
from ktmu.engine.request import UnlearningRequest, forget_set_indices
from ktmu.errors import KtmuError
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.workflows.audits import neighbour_setting, recorded_neighbours, results_beside

SHIRT = 0  # coat's only sibling in KNOWN_WORLD


def neighbour_auditor(k: int, per_class: int = 20, probe: int = 20, relearn_images: int = 4, scope: str = "siblings") -> Auditor:
    world = Hierarchy.from_dict(KNOWN_WORLD)
    train, test = known_split(world, "train", per_class, 0), known_split(world, "test", 10, 1)
    request = UnlearningRequest.parse(world, ["coat"])
    cfg = AuditConfig(probe_per_class=probe, relearn=RelearnConfig(steps=(0, 2), batch_size=4, images_per_concept=relearn_images),
                      max_per_concept=5, neighbours=k, neighbours_scope=scope)
    pre = transforms.ToTensor()
    return Auditor(request, train, UnlearningEvaluator(request, test, [], pre), pre, cfg)


def test_the_audits_draws_are_disjoint_from_the_forget_set_and_the_neighbours():
    auditor = neighbour_auditor(k=3)
    req, train = auditor.request, auditor.train
    forget = forget_set_indices(req, train, 5, 0)
    near = neighbour_indices(req, train, 3, "siblings", 0, 5)
    assert np.array_equal(auditor.seen.forget_set, forget) and np.array_equal(auditor.seen.neighbours, near)
    assert len(near) == 3 and set(train.fine_labels[near]) == {SHIRT}  # siblings scope: shirt only
    drawn = {"probe": auditor.probe_source.indices, **{p: s.indices for p, s in auditor.relearn_sources.items()}}
    for name, idx in drawn.items():
        assert not set(idx) & set(forget) and not set(idx) & set(near), name
    # the probe takes every shirt left (17 of 20) and every coat left (15): a budget that shrank, said and recorded
    assert auditor.probe_shrunk == {"shirt": 17, "coat": 15}
    assert any("shrank for 'shirt' (17 left" in n and "'coat' (15 left" in n for n in auditor.notes)
    settings = auditor.settings_record()
    assert settings["excluded"] == {"forget_set_images": 5, "neighbours": neighbour_record(3, "siblings", 0, near), "images": 8}
    assert settings["excluded"]["neighbours"]["sha256"] == indices_sha256(near) and settings["probe_excludes_neighbours"]
    everyone = neighbour_auditor(k=2, scope="all")  # every kept concept gives 2
    assert sorted(set(everyone.train.fine_labels[everyone.seen.neighbours])) == [0, 2, 3]


def test_without_neighbours_the_draws_are_the_neighbour_free_audits():
    auditor = neighbour_auditor(k=0)
    assert len(auditor.seen.neighbours) == 0 and auditor.settings_record()["excluded"]["neighbours"]["k"] == 0
    for part in ("forget", "retain"):
        old, _ = relearn_indices(auditor.request, auditor.train, part, 4, 5, seed=0)  # the draw before neighbours existed
        assert np.array_equal(auditor.relearn_sources[part].indices, old), part


def test_budgets_that_no_longer_fit_beside_the_neighbours_are_skipped_with_the_numbers():
    auditor = neighbour_auditor(k=18)  # 20 shirts, 18 seen as neighbours: 2 left for attacks that need 4 of each kept concept
    for part in ("forget", "retain"):
        reason = auditor.relearn_sources[part]
        assert isinstance(reason, str) and "only 2 train image(s) of 'shirt' outside the 18 neighbour images the method saw" in reason
        assert "need 4 per concept (lower --relearn-images)" in reason
    backbone = known_backbone(auditor.world)
    result = audit_models(auditor, {"original": ("known", backbone), "unlearned": ("known", backbone)})
    rec = result["models"]["unlearned"]
    assert "skipped" in rec["relearn"]["forget"] and "skipped" in rec["soft_prompt"]
    assert rec["linear_probe"]["train_size"] == 2 + 15 + 20 + 20  # the probe still runs, on what is left
    table = audit_table(result)
    assert "note: the forget relearning attack is skipped: only 2 train image(s) of 'shirt'" in table
    assert result["settings"]["notes"] == auditor.notes and len(auditor.notes) == 3  # shrunk probe, two skipped attacks


def test_neighbour_settings_that_cannot_be_drawn_are_one_line_errors():
    with pytest.raises(KtmuError, match=r"--neighbours 25 asks for 25 train images of 'shirt', which has only 20"):
        neighbour_auditor(k=25)
    with pytest.raises(AuditError, match="--neighbours-scope 'near'"):
        AuditConfig(neighbours=1, neighbours_scope="near")
    with pytest.raises(AuditError, match="0 or more"):
        AuditConfig(neighbours=-1)
    lonely = {**KNOWN_WORLD, "fine": [{**c, "parent": "footwear"} if c["name"] == "shirt" else c for c in KNOWN_WORLD["fine"]]}
    world = Hierarchy.from_dict(lonely)
    train, test = known_split(world, "train", 20, 0), known_split(world, "test", 10, 1)
    request = UnlearningRequest.parse(world, ["coat"])
    with pytest.raises(KtmuError, match="'coat' has no kept sibling.*--neighbours-scope all"):
        Auditor(request, train, UnlearningEvaluator(request, test, [], transforms.ToTensor()), transforms.ToTensor(),
                AuditConfig(probe_per_class=5, neighbours=2))


def test_a_recorded_neighbour_draw_must_match_the_redrawn_one():
    near = np.array([3, 8, 11])
    seen = SeenImages(np.array([20, 21]), near, 3, "siblings", 0)
    check_recorded_neighbours(seen, neighbour_record(3, "siblings", 0, near), "results.json")  # the same images: fine
    check_recorded_neighbours(seen, {"k": 0}, "results.json")  # a run without neighbours records nothing to check
    with pytest.raises(AuditError, match=r"not those results.json records \(k 3, scope siblings, seed 1, 3 images") as e:
        check_recorded_neighbours(seen, neighbour_record(3, "siblings", 1, np.array([3, 8, 12])), "results.json")
    assert "pass the run's --seed, --max-per-concept, --neighbours and --neighbours-scope" in str(e.value)


def test_the_run_neighbour_setting_is_read_from_the_results_beside_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"")
    spec = f"mini-clip:{run / 'model.safetensors'}"
    assert results_beside(spec) is None and neighbour_setting(spec, None, None) == (0, "siblings", None, "")
    entry = {"k": 4, "scope": "all", "seed": 0, "images": 36, "sha256": "ab" * 32}
    (run / "results.json").write_text(json.dumps({"method": "x", "seeds": [{"neighbours": entry}]}))
    assert results_beside(spec) == run / "results.json" and recorded_neighbours({"neighbours": entry}) == entry
    k, scope, recorded, note = neighbour_setting(spec, None, None)
    assert (k, scope, recorded) == (4, "all", entry) and "records --neighbours 4 --neighbours-scope all" in note
    k, scope, recorded, note = neighbour_setting(spec, 0, None)  # given on the command line: it wins, and is said
    assert (k, scope, recorded) == (0, "all", None) and "auditing with --neighbours 0 --neighbours-scope all as given" in note
    assert neighbour_setting("mini-clip", None, None) == (0, "siblings", None, "")
    (run / "results.json").write_text("{not json")
    with pytest.raises(AuditError, match="not a readable results.json"):
        neighbour_setting(spec, None, None)


def test_the_shipped_oracle_is_the_default_only_for_its_request():
    world = load_dataset("fashion", "train").hierarchy
    shirt = UnlearningRequest.parse(world, ["shirt"])
    assert default_oracle("mini-clip", shirt) == "mini-clip:without-shirt"
    for model, request in (("tiny-clip", shirt), ("mini-clip:runs/x/model.safetensors", shirt),
                           ("mini-clip", UnlearningRequest.parse(world, ["coat"])), ("mini-clip", UnlearningRequest.parse(world, ["shirt", "coat"])),
                           ("mini-clip", UnlearningRequest.parse(world, ["top"], goal="coarse"))):
        assert default_oracle(model, request) is None, (model, request.concepts)
    spec, note = resolve_oracle(None, "mini-clip", shirt)
    assert spec == "mini-clip:without-shirt" and "--oracle none" in note
    assert resolve_oracle("none", "mini-clip", shirt) == (None, "") and resolve_oracle("tiny-clip", "tiny-clip", shirt) == ("tiny-clip", "")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A tiny-clip checkpoint with a results.json beside it recording --neighbours 2 (the draw of seed 0, 20 per concept: 2 of each of shirt's 3 siblings)."""
    from ktmu.backbones import load_backbone

    torch.manual_seed(0)
    backbone = load_backbone("tiny-clip")
    with torch.no_grad():
        for _, p in backbone.named_trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("run")
    backbone.save_weights(folder / "model.safetensors")
    train = load_dataset("fashion", "train")
    near = neighbour_indices(UnlearningRequest.parse(train.hierarchy, ["shirt"]), train, 2, "siblings", 0, 20)
    (folder / "results.json").write_text(json.dumps({"method": "ga", "neighbours": neighbour_record(2, "siblings", 0, near)}))
    return folder


def test_ktmu_audit_reads_the_runs_neighbours_and_refuses_a_draw_that_does_not_match(tmp_path, run_folder, capsys):
    out = tmp_path / "audit"
    model = f"tiny-clip:{run_folder / 'model.safetensors'}"
    assert main(["audit", "--model", model, "--original", "tiny-clip", "--out", str(out), *AUDIT_FAST]) == 0, capsys.readouterr().err
    data = json.loads((out / "audit.json").read_text())
    recorded = json.loads((run_folder / "results.json").read_text())["neighbours"]
    assert data["settings"]["excluded"]["neighbours"] == recorded and data["settings"]["excluded"]["images"] == 20 + 3 * 2
    printed = capsys.readouterr().out
    assert "records --neighbours 2 --neighbours-scope siblings" in printed and "and 6 neighbour images" in printed
    moved = tmp_path / "moved"
    shutil.copytree(run_folder, moved)
    rc = main(["audit", "--model", f"tiny-clip:{moved / 'model.safetensors'}", "--original", "tiny-clip", "--out", str(tmp_path / "b"),
               "--seed", "1", *AUDIT_FAST])  # another seed: another forget set and other neighbours than the run's
    err = capsys.readouterr().err
    assert rc == 2 and err.count("ktmu: error:") == 1 and "are not those the results.json beside --model records" in err


def test_oracle_without_audit_is_refused_before_anything_runs(tmp_path, capsys):
    rc = main(["unlearn", "--model", "tiny-clip", "--oracle", "tiny-clip", "--out", str(tmp_path / "u"), "--quiet"])
    assert rc == 2 and "--oracle is the audit's oracle: add --audit" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()

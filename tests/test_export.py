"""``ktmu export``: folders that transformers / open_clip load where ktmu is not installed, with a model card.

Each round trip loads the export in a fresh Python process in which ``import ktmu`` fails, and
compares its logits on the same images and texts with ktmu's own (at most 1e-5 apart).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from ktmu.backbones import load_backbone
from ktmu.backbones.export import ExportError, check_format
from ktmu.cli import main
from ktmu.workflows.export import ExportRunError, export_model, export_run
from ktmu.workflows.model_card import fmt

from test_hf_backbone import hf_dir  # noqa: F401  (the tiny random CLIPModel folder fixture)

TEXTS = ["a coat", "shirt", "a sneaker"]
# the subprocess's preamble: ktmu cannot be imported there, so the export must stand on its own
NO_KTMU = "import sys, json, torch\nsys.modules['ktmu'] = None\n"


def _ktmu_logits(spec: str, images: torch.Tensor) -> torch.Tensor:
    backbone = load_backbone(spec)
    with torch.no_grad():
        return backbone.logit_scale() * backbone.encode_image(images) @ backbone.encode_texts(TEXTS).T


def _moved_checkpoint(spec: str, path) -> str:
    """A checkpoint of ``spec`` with every trainable weight moved (seeded), so a loader that kept random weights would differ."""
    backbone = load_backbone(spec)
    torch.manual_seed(1)
    with torch.no_grad():
        for _, p in backbone.named_trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    backbone.save_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real unlearn run on tiny-clip: model.safetensors and results.json."""
    out = tmp_path_factory.mktemp("export-run") / "run"
    assert main(["unlearn", "--model", "tiny-clip", "--method", "ga", "--force", "--epochs", "1", "--max-per-concept", "10",
                 "--zero-shot", "none", "--out", str(out), "--export", str(out.parent / "exported"), "--quiet"]) == 0
    return out


def test_unlearn_export_flag_writes_the_runs_model_with_its_card(tiny_run):
    folder = tiny_run.parent / "exported"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "ktmu_export.json", "model.ledger.json", "model.safetensors"]
    record = json.loads((folder / "ktmu_export.json").read_text())
    assert record["format"] == "ktmu" and record["method"] == "ga" and record["spec"] == f"tiny-clip:{tiny_run / 'model.safetensors'}"
    assert "# tiny-clip with shirt unlearned (ga)" in (folder / "README.md").read_text()


# ---- round trips: one fresh interpreter loads all three exports -------------------------------------------
HF_LOAD = """
from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel
model = CLIPModel.from_pretrained(DIR).eval()
tokens = AutoTokenizer.from_pretrained(DIR)(TEXTS, padding=True, truncation=True, return_tensors="pt")
CLIPImageProcessor.from_pretrained(DIR)
with torch.no_grad():
    out["hf"] = model(pixel_values=torch.load(DIR + "/../images-32.pt", weights_only=True), **tokens).logits_per_image.tolist()
"""
OPEN_CLIP_LOAD = """
import open_clip
def logits(model, tokenizer, images):
    with torch.no_grad():
        img, txt = model.encode_image(images, normalize=True), model.encode_text(tokenizer(TEXTS), normalize=True)
        return (model.logit_scale.exp() * img @ txt.T).tolist()
model, _, _ = open_clip.create_model_and_transforms("local-dir:" + DIR)  # tiny-clip: the folder's own config
out["tiny"] = logits(model, open_clip.get_tokenizer("local-dir:" + DIR), torch.load(DIR + "/../images-28.pt", weights_only=True))
open_clip.add_model_config(CONFIG)  # a registered architecture, loaded as open_clip users do
model, _, _ = open_clip.create_model_and_transforms("ktmu-test-tiny", pretrained=ARCH_DIR + "/open_clip_model.safetensors")
out["arch"] = logits(model, open_clip.get_tokenizer("ktmu-test-tiny"), torch.load(DIR + "/../images-28.pt", weights_only=True))
"""


@pytest.fixture(scope="module")
def round_trip(hf_dir, tiny_run, tmp_path_factory):  # noqa: F811
    """Three exports (an hf: model, tiny-clip as open_clip, a registered open_clip architecture), their specs, and the
    logits a fresh interpreter without ktmu computes from them."""
    import open_clip

    from ktmu.backbones.open_clip_backbone import TINY_CLIP_CONFIG

    root = tmp_path_factory.mktemp("round-trip")
    torch.manual_seed(0)
    images = {32: torch.randn(4, 3, 32, 32), 28: torch.rand(4, 3, 28, 28)}
    for size, x in images.items():
        torch.save(x, root / f"images-{size}.pt")
    config = root / "ktmu-test-tiny.json"  # a registered architecture as small as tiny-clip
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    specs = {"hf": f"hf:{hf_dir}:{_moved_checkpoint(f'hf:{hf_dir}', root / 'hf-moved.safetensors')}",
             "tiny": f"tiny-clip:{tiny_run / 'model.safetensors'}",
             "arch": f"open_clip:ktmu-test-tiny:{_moved_checkpoint('open_clip:ktmu-test-tiny', root / 'arch-moved.safetensors')}"}
    done = {"hf": export_model(specs["hf"], root / "hf", command="ktmu export test"),
            "tiny": export_run(tiny_run, root / "tiny", fmt="open_clip", command="ktmu export test"),
            "arch": export_model(specs["arch"], root / "arch", command="ktmu export test")}
    script = (f"out = {{}}\nTEXTS = {TEXTS!r}\nCONFIG = {str(config)!r}\nARCH_DIR = {str(root / 'arch')!r}\n"
              f"DIR = {str(root / 'hf')!r}\n{HF_LOAD}\nDIR = {str(root / 'tiny')!r}\n{OPEN_CLIP_LOAD}\nprint(json.dumps(out))")
    theirs = _outside_ktmu(script)
    return specs, done, images, theirs


def _outside_ktmu(script: str) -> dict[str, torch.Tensor]:
    """Run ``script`` (which prints a JSON object of logits last) in a fresh interpreter that cannot import ktmu."""
    run = subprocess.run([sys.executable, "-c", NO_KTMU + script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return {k: torch.tensor(v) for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


def test_hf_export_loads_in_transformers_with_the_same_logits(round_trip, hf_dir, tmp_path):  # noqa: F811
    specs, done, images, theirs = round_trip
    assert done["hf"].format == "hf"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "tokenizer.json"} <= set(done["hf"].record["files"])
    ours = _ktmu_logits(specs["hf"], images[32])
    assert theirs["hf"].shape == (4, 3) and (theirs["hf"] - ours).abs().max() <= 1e-5
    assert (ours - _ktmu_logits(f"hf:{hf_dir}", images[32])).abs().max() > 1e-2  # the moved weights are what was exported
    assert (theirs["hf"] - _ktmu_logits(f"hf:{done['hf'].folder}", images[32])).abs().max() <= 1e-5  # ktmu loads the export too


def test_tiny_clip_open_clip_export_loads_in_open_clip_with_the_same_logits(round_trip):
    specs, done, images, theirs = round_trip
    assert done["tiny"].record["files"].keys() == {"README.md", "ktmu_ledger.json", "open_clip_config.json", "open_clip_model.safetensors"}
    assert (theirs["tiny"] - _ktmu_logits(specs["tiny"], images[28])).abs().max() <= 1e-5


def test_open_clip_architecture_export_loads_with_create_model_and_transforms(round_trip):
    specs, done, images, theirs = round_trip
    assert done["arch"].format == "open_clip"
    card = (done["arch"].folder / "README.md").read_text()
    assert "No ktmu results.json describes this model" in card and card.startswith("---\nbase_model: open_clip:ktmu-test-tiny\n")
    ours = _ktmu_logits(specs["arch"], images[28])
    assert (theirs["arch"] - ours).abs().max() <= 1e-5
    assert (theirs["arch"] - theirs["tiny"]).abs().max() > 1e-2  # two different models, each loaded with its own weights


def _card(folder) -> tuple[dict, dict[str, list[str]]]:
    """A model card's front matter and its table rows (first cell -> the other cells)."""
    text = (folder / "README.md").read_text()
    _, meta, body = text.split("---\n", 2)
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1 and not set(cells[1]) <= set("-:"):
            rows[cells[0]] = cells[1:]
    return yaml.safe_load(meta), rows


def test_model_card_numbers_are_the_results_records(tiny_run, tmp_path):
    done = export_run(tiny_run, tmp_path / "card", command="ktmu export --model X --out Y")
    record = json.loads((tiny_run / "results.json").read_text())
    meta, rows = _card(done.folder)
    assert meta["base_model"] == "tiny-clip" and meta["library_name"] == "ktmu" and "machine-unlearning" in meta["tags"]
    for key, label in (("forget_fine", "D_f fine"), ("retain_fine", "D_r fine"), ("forget_coarse", "D_f coarse")):
        assert rows[label] == [fmt(record["original"][key]), fmt(record["unlearned"][key])]
    for key, label in (("quality", "Quality"), ("utility", "Utility"), ("qu", "Q-U")):
        assert rows[label] == [fmt(record[key])]
    text = (done.folder / "README.md").read_text()
    assert record["provenance"]["command"] in text and "ktmu export --model X --out Y" in text
    assert "this is the world's `difficult` request" in text and "Flags: COLLAPSED, UNKNOWN-CONCEPT" in text
    assert "Not audited" in text
    # ktmu's own format loads back in ktmu with the run's weights
    spec = f"tiny-clip:{done.folder / 'model.safetensors'}"
    mine, theirs = load_backbone(spec).trainable_state_dict(), load_backbone(f"tiny-clip:{tiny_run / 'model.safetensors'}").trainable_state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize("spec, fmt_, says", [
    ("mini-clip", "open_clip", "does not apply to mini-clip: models: its image tower is ktmu's own CNN"),
    ("mini-clip", "hf", "does not apply to mini-clip: models"),
    ("tiny-clip", "hf", "Use --format ktmu or open_clip (or auto)"),
    ("open_clip:ViT-B-32", "hf", "does not apply to open_clip: models"),
    ("hf:some/dir", "open_clip", "does not apply to hf: models"),
    ("mini-clip", "onnx", "--format 'onnx' is not an export format"),
])
def test_formats_that_do_not_apply_are_refused_before_anything_loads(spec, fmt_, says, tmp_path, capsys):
    with pytest.raises(ExportError, match=says.replace("(", r"\(").replace(")", r"\)")):
        export_model(spec, tmp_path / "x", fmt_)
    if fmt_ != "onnx":  # (argparse refuses a format it does not list by itself)
        assert main(["export", "--model", spec, "--format", fmt_, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ktmu: error: --format") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert check_format("tiny-clip") == "ktmu" and check_format("hf:d") == "hf" and check_format("open_clip:ViT-B-32") == "open_clip"


def test_out_folders_and_results_that_cannot_be_used_are_refused_and_nothing_is_half_written(tiny_run, tmp_path, monkeypatch):
    spec = f"tiny-clip:{tiny_run / 'model.safetensors'}"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ExportRunError, match="exists and is not empty; pass --overwrite"):
        export_model(spec, mine)
    with pytest.raises(ExportRunError, match="holds no ktmu_export.json"):
        export_model(spec, mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": [], "original": {}}))
    with pytest.raises(ExportRunError, match="a bench keeps no weights"):
        export_model(spec, tmp_path / "b", results=bench)

    import ktmu.workflows.export as export

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(spec, tmp_path / "half")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "mine"]  # no export, no temporary folder
    monkeypatch.undo()
    first = export_model(spec, tmp_path / "again")
    assert first.record["card_from"] == str(tiny_run / "results.json")  # found beside the checkpoint
    (tmp_path / "again" / "README.md").write_text("edited")
    export_model(spec, tmp_path / "again", overwrite=True)  # an earlier ktmu export is replaced whole
    assert (tmp_path / "again" / "README.md").read_text().startswith("---\nbase_model: tiny-clip")

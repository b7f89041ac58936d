"""The README's commands end to end, in this process: ``ktmu demo`` (its headline number), ``ktmu levels`` and ``ktmu tune``."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fakes import DOGS, make_jsonl_world
from ktmu.backbones import load_backbone
from ktmu.cli import main
from ktmu.data import load_dataset
from ktmu.evaluation.zero_shot import ZeroShotEvaluator


def _rows(printed: str, header: str) -> list[str]:
    """The printed lines after the first one that starts with ``header`` (a table's header)."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 1
    return lines[start:]


@pytest.mark.slow
def test_demo_prints_the_readmes_nhl_kl_row(capsys):
    """The embedded default: forget shirt with nhl-kl; the README's table row, Q-U 97.84 (about 20 s)."""
    assert main(["demo", "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = _rows(printed, "method ")
    original = next(r for r in rows if r.startswith("original")).split()
    nhl = next(r for r in rows if r.startswith("nhl-kl")).split()
    # method, D_f coarse, D_f fine, D_r coarse, D_r fine, Quality, Utility, Q-U, Zero-shot, Q-U*, flags
    assert original[1:5] == ["97.70", "80.30", "98.40", "94.49"] and original[8] == "98.80"
    assert nhl[2] == "3.20" and nhl[7] == "97.84" and nhl[8] == "97.60" and nhl[9] == "99.83" and nhl[10] == "-"
    assert "forget shirt (fine) with nhl-kl, using 150 forget-set images" in printed


LEVEL_ROW = re.compile(r"(?P<concept>.+?)\s+(?P<confusion>\d+\.\d{3})\s+(?P<similarity>\d+\.\d{3})\s+(?P<acc>\d+\.\d)\s+(?P<siblings>.+)")


def test_levels_prints_every_concept_once_most_confused_first(tmp_path, capsys):
    """Each concept's sibling confusion (the probability its own images put on its siblings) is recomputed here
    from the public zero-shot evaluation; the rows must be those numbers, sorted from the highest."""
    root, hierarchy = make_jsonl_world(tmp_path / "dogs")
    assert main(["levels", "--model", "tiny-clip", "--world", "jsonl", "--data-root", str(root), "--hierarchy", str(hierarchy), "--quiet"]) == 0
    printed = capsys.readouterr().out
    lines = _rows(printed, "concept ")
    assert lines[-1] == "levels in the world file: difficult: golden retriever"
    rows = [LEVEL_ROW.fullmatch(line).groupdict() for line in lines[:-1]]

    train = load_dataset("jsonl", "train", root=root, hierarchy=hierarchy)
    backbone = load_backbone("tiny-clip")
    ev = ZeroShotEvaluator(train, backbone.preprocess).evaluate(backbone)  # every train image: 4 per concept, fewer than levels' sample
    world = train.hierarchy
    parents = world.fine_to_coarse()
    confusion, accuracy, siblings = {}, {}, {}
    for f, name in enumerate(world.fine_names):
        sibs = [s for s in range(len(world.fine)) if s != f and parents[s] == parents[f]]
        mine = ev.fine_labels == f
        confusion[name] = float(ev.fine_probs[mine][:, sibs].sum(1).mean())
        accuracy[name] = float((ev.fine_pred[mine] == f).float().mean() * 100)
        siblings[name] = ", ".join(world.fine_names[s] for s in sibs)

    assert sorted(r["concept"] for r in rows) == sorted(fine for _, fine in DOGS)  # every fine concept, once
    assert len(set(np.round(list(confusion.values()), 3))) == len(rows)  # no ties: the order is the confusion's alone
    assert [r["concept"] for r in rows] == sorted(confusion, key=confusion.get, reverse=True)
    for r in rows:
        assert float(r["confusion"]) == pytest.approx(confusion[r["concept"]], abs=5e-4)
        assert float(r["acc"]) == pytest.approx(accuracy[r["concept"]], abs=0.05)
        assert r["siblings"] == siblings[r["concept"]]


def test_tune_prints_a_row_per_rate_and_marks_the_chosen_one(capsys):
    """Threshold 100 %: every rate "forgets", so the documented rule picks the smallest, whatever the scores."""
    assert main(["tune", "--model", "tiny-clip", "--methods", "ga", "--lrs", "1e-1", "1e-3", "--epochs", "1", "--max-per-concept", "8",
                 "--threshold", "100", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "forget shirt (fine), 8 images" in printed
    rows = [line.split() for line in _rows(printed, "method ")]
    assert [r[:3] for r in rows] == [["ga", "1e-03", "1"], ["ga", "1e-01", "1"]]  # sorted by rate, epoch 1 kept (the only one)
    assert [r[5:] for r in rows] == [["<-", "chosen"], []]

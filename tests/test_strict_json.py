"""Every JSON ktmu writes is strict JSON: NaN and infinities are null, and nothing non-standard slips through."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ktmu.cli import main
from ktmu.outputs import dumps_json, json_ready, write_json_atomic

TINY = ["--model", "tiny-clip", "--force", "--quiet", "--max-per-concept", "10", "--zero-shot", "none"]


def strict_loads(text: str):
    """json.loads that refuses the NaN / Infinity / -Infinity tokens Python's json writes by default."""
    def refuse(token: str):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_json_ready_turns_non_finite_numbers_into_null_and_keeps_every_key():
    obj = {"qu": float("nan"), "hi": float("inf"), "lo": -math.inf, "n": np.int64(3), "x": np.float32(0.5), "ok": np.bool_(True),
           "ci": (1.0, np.float64("nan")), "nested": [{"a": np.nan}], 7: "int key", np.int64(8): "numpy key"}
    ready = json_ready(obj)
    assert ready == {"qu": None, "hi": None, "lo": None, "n": 3, "x": 0.5, "ok": True, "ci": [1.0, None], "nested": [{"a": None}],
                     7: "int key", 8: "numpy key"}
    assert type(ready["n"]) is int and type(ready["x"]) is float and type(ready["ok"]) is bool and type(list(ready)[-1]) is int
    assert strict_loads(dumps_json(obj)) == {"qu": None, "hi": None, "lo": None, "n": 3, "x": 0.5, "ok": True, "ci": [1.0, None],
                                             "nested": [{"a": None}], "7": "int key", "8": "numpy key"}


def test_write_json_atomic_writes_null_and_refuses_what_json_cannot_hold(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"quality_ca": float("nan"), "rows": [1, float("-inf")]})
    assert path.read_text() == '{\n  "quality_ca": null,\n  "rows": [\n    1,\n    null\n  ]\n}\n'
    with pytest.raises(TypeError):  # a Path in a record is a bug to see, not a value to guess at
        write_json_atomic(tmp_path / "bad.json", {"where": Path("x")})
    assert not (tmp_path / "bad.json").exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_every_json_file_a_run_writes_parses_strictly(tmp_path, capsys):
    """unlearn, bench (two methods), audit, eval --json and perf --json on tiny-clip: every .json they write is strict."""
    unlearned = tmp_path / "unlearn"
    assert main(["unlearn", *TINY, "--method", "ga", "--epochs", "2", "--out", str(unlearned)]) == 0
    assert main(["bench", *TINY, "--methods", "ga", "nhl-kl", "--epochs", "1", "--out", str(tmp_path / "bench")]) == 0
    assert main(["audit", "--model", f"tiny-clip:{unlearned / 'model.safetensors'}", "--original", "tiny-clip", *TINY,
                 "--probe-per-class", "5", "--relearn-steps", "2", "--relearn-images", "2", "--out", str(tmp_path / "audit")]) == 0
    assert main(["eval", "--model", "tiny-clip", "--quiet", "--zero-shot", "none", "--json", str(tmp_path / "eval.json")]) == 0
    assert main(["perf", "--model", "tiny-clip", "--methods", "ga", "--steps", "1", "--epochs", "1", "--images", "8", "--repeats", "1",
                 "--classes", "4", "--quiet", "--json", str(tmp_path / "perf.json")]) == 0
    capsys.readouterr()
    written = sorted(tmp_path.rglob("*.json"))
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {"unlearn/results.json", "bench/results.json", "bench/bench.json", "bench/methods/ga.json", "bench/methods/nhl-kl.json",
            "audit/audit.json", "eval.json", "perf.json"} <= names
    parsed = {p.relative_to(tmp_path).as_posix(): strict_loads(p.read_text()) for p in written}
    # tiny-clip never knew the shirt: the chance-aware scores are undefined, and written as null (they were NaN)
    assert parsed["unlearn/results.json"]["qu_ca"] is None
    assert [row["qu_ca"] for row in parsed["bench/results.json"]["rows"]] == [None, None]
    assert main(["world", "fashion", "--json"]) == 0
    assert strict_loads(capsys.readouterr().out)["name"] == "fashion"

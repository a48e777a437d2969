"""The benchmark runs at a tiny size and writes its JSON. No timing is asserted: CI machines vary."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_bench_tiny_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    # one thread: spinning OpenMP threads crawl on a CPU shared with other jobs
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--tiny", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "P1" in done.stdout and "P6" in done.stdout
    r = json.loads(out.read_text())

    assert r["device"]["type"] == "cpu" and r["device"]["name"] and r["versions"]["torch"]
    assert r["setting"]["keep"] >= 2
    for value in (r["P1"]["value"], r["P1"]["saln"], r["P2"]["value"], r["P2"]["model_bound"],
                  r["P3"]["value"],
                  r["P6"]["saln"], r["peak_memory"]["bytes"]):
        assert finite_positive(value), value
    assert r["P2"]["bound"] == 1 / (1 - r["setting"]["filter_ratio"])
    assert 0 < r["P6"]["saln"] < 1
    # jest is measured when registered; otherwise null with the reason
    assert finite_positive(r["P6"]["jest"]) or (r["P6"]["jest"] is None and r["P6"]["jest_reason"])
    for name in ("ceiling", "ceiling_keep", "standard", "saln", "paper_style"):
        assert name in r["measurements"]
    # the 2-process communication of a data-parallel step: a real gloo measurement on CPU
    c = r["communication"]
    assert c["ranks"] == 2 and c["backend"] == "gloo"
    assert c["all_gather"]["bytes"] == r["setting"]["batch"] * (4 + 512) * 4  # tiny: 4 classes
    for value in (c["all_gather"]["seconds_per_call"], c["grad_all_reduce"]["seconds_per_call"],
                  c["grad_all_reduce"]["numel"]):
        assert finite_positive(value), value

"""The short version of bench/load.py: a few users for a few seconds, zero errors, no files left."""
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_short_load_run(tiny_onnx):
    import load

    r = load.main(["--users", "4", "--seconds", "4", "--rounds", "2", "--ttl", "5", "--zip-count", "200",
                   "--model", str(tiny_onnx)])
    assert r["errors"] == 0, r["error_samples"]
    assert r["requests"] >= 8 and r["latency_s"]["face"]["n"] >= 4
    assert r["temp_files_left"] == 0, r["files_left_sample"]
    mem = r["rss_mb"]
    assert mem["start"] > 0 and mem["peak"] >= mem["start"] and len(mem["after_each_round"]) == 2
    assert mem["growth_after_first_round"] < 100, mem  # a gross leak, not allocator noise

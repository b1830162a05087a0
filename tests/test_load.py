"""The short versions of bench/load.py: a load with heavy requests mixed in (zero errors, no files
left, none after the app stops), and memory back to idle after the heaviest request of each endpoint."""
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_short_load_run_with_heavy_requests(tiny_onnx):
    import load

    r = load.main(["--users", "4", "--seconds", "6", "--rounds", "2", "--ttl", "20", "--zip-count", "200",
                   "--heavy", "0.2", "--model", str(tiny_onnx)])
    assert r["errors"] == 0, r["error_samples"]
    assert r["requests"] >= 8 and r["latency_s"]["face"]["n"] >= 4
    assert r["temp_files_left"] == 0, r["files_left_sample"]
    assert r["files_left_after_stop"] == []  # SIGTERM: the app removes its folder and Gradio's copies
    mem = r["rss_mb"]
    assert mem["start"] > 0 and mem["peak"] >= mem["start"] and len(mem["after_each_round"]) == 2
    assert mem["growth_after_first_round"] < 100, mem  # a gross leak, not allocator noise


def test_memory_returns_after_the_heaviest_request_of_each_endpoint(tiny_onnx):
    import load

    r = load.main(["--memory", "--settle", "7", "--zip-count", "1000", "--model", str(tiny_onnx)])
    assert set(r["requests"]) == {"face", "heavy_grid", "heavy_morph", "zip"}
    for kind, row in r["requests"].items():
        assert row["after_vs_idle"] < 0.10, (kind, r)

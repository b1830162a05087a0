"""The short versions of bench/load.py: a load with heavy requests mixed in (zero errors, no files
left, none after the app stops), and memory back to idle after the heaviest request of each endpoint."""




def test_short_load_run_with_heavy_requests(tiny_onnx):
    from bench import load

    # The file lifetime is far longer than any request here can take on a loaded machine (the slowest,
    # a heavy morph, takes about 6 s on two cores): a lifetime shorter than a slow request would fail
    # its downloads (and test the machine's speed, not the app). Each round waits for it to pass.
    r = load.main(["--users", "4", "--seconds", "6", "--rounds", "2", "--ttl", "40", "--zip-count", "200",
                   "--heavy", "0.2", "--model", str(tiny_onnx)])
    assert r["errors"] == 0, r["error_samples"]
    assert r["requests"] >= 8 and r["latency_s"]["face"]["n"] >= 4
    assert r["temp_files_left"] == 0, r["files_left_sample"]
    assert r["files_left_after_stop"] == []  # SIGTERM: the app removes its folder and Gradio's copies
    mem = r["rss_mb"]
    assert mem["start"] > 0 and mem["peak"] >= mem["start"] and len(mem["after_each_round"]) == 2
    assert mem["growth_after_first_round"] < 100, mem  # a gross leak, not allocator noise


def test_memory_returns_after_the_heaviest_request_of_each_endpoint(tiny_onnx):
    from bench import load

    # As above: a lifetime far longer than the slowest request (a 241-frame morph's gallery downloads
    # after the answer; with the default 20 s a loaded machine once got 403 for a frame already swept).
    r = load.main(["--memory", "--settle", "7", "--ttl", "600", "--zip-count", "1000", "--model", str(tiny_onnx)])
    assert set(r["requests"]) == {"face", "heavy_grid", "heavy_morph", "zip"}
    for kind, row in r["requests"].items():
        assert row["after_vs_idle"] < 0.10, (kind, r)


def test_a_hostile_visitor_takes_neither_memory_nor_the_queue(tiny_onnx):
    """Cancel storm, huge bodies, uploads, one client's flood of zips: memory back within 10 % of its
    start, every upload and huge body refused, most of the flood turned away, and the other visitor's
    faces answered throughout."""
    from bench import hostile

    r = hostile.main(["--model", str(tiny_onnx), "--zips", "6", "--zip-count", "300", "--bodies", "3",
                      "--body-mib", "8", "--uploads", "2", "--upload-mib", "16", "--flood", "20", "--settle", "7"])
    assert r["rss_mb"]["after_vs_start"] < 0.10, r["rss_mb"]
    assert r["huge_bodies"]["statuses"] == [413] and r["uploads"]["statuses"] == [403]
    assert r["uploaded_files_stored"] == 0
    # Most of the flood is turned away; how many zips finish while it arrives depends on the CPU's speed.
    assert r["flood"]["refused_busy"] > 20 // 2 and r["flood"]["refused_busy"] + r["flood"]["done"] <= 20, r["flood"]
    assert r["other_visitor"]["failures"] == 0 and r["other_visitor"]["faces"] >= 5, r["other_visitor"]

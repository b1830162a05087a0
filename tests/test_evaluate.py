"""Evaluation: the real TF-Inception on a few dozen synthetic images, plus planted duplicates."""
import json

import numpy as np
import pytest

from core.dataset import DataError
from metrics import diversity, fid
from metrics.report import evaluate
from tests.conftest import blob_image, make_folder
from trainer import evaluate as ev


@pytest.fixture(scope="module")
def inception():
    return fid.InceptionFeatures("cpu")


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_perturbation(inception):
    rng = np.random.RandomState(0)
    images = np.stack([blob_image(rng) for _ in range(16)])
    base = fid.stats(inception(images, progress=False))
    assert abs(fid.frechet_distance(base, base)) < 1e-3
    noisy = np.clip(images + rng.normal(0, 25, images.shape), 0, 255).astype(np.uint8)
    blurred = np.clip(images + rng.normal(0, 60, images.shape), 0, 255).astype(np.uint8)
    f1 = fid.frechet_distance(base, fid.stats(inception(noisy, progress=False)))
    f2 = fid.frechet_distance(base, fid.stats(inception(blurred, progress=False)))
    assert 1.0 < f1 < f2


def test_duplicates_counts_exact_and_near_copies():
    rng = np.random.RandomState(1)
    images = np.stack([blob_image(rng) for _ in range(10)])
    images[7] = images[2]  # one exact duplicate
    feats = rng.normal(size=(10, 64))
    feats[7] = feats[2]
    feats[9] = feats[4] + 1e-4 * rng.normal(size=64)  # a near duplicate with other pixels
    d = diversity.duplicates(images, feats, threshold=0.01, seeds=list(range(100, 110)))
    assert d["exact"] == 1 and d["near"] == 2
    assert {tuple(p["seeds"]) for p in d["worst_pairs"][:2]} == {(102, 107), (104, 109)}


def test_memorisation_finds_planted_copies_of_training_images():
    rng = np.random.RandomState(2)
    ref = rng.normal(size=(200, 32))
    held_out = rng.normal(size=(100, 32))
    gen = rng.normal(size=(50, 32))
    gen[:5] = ref[[3, 10, 20, 30, 40]] + 1e-3 * rng.normal(size=(5, 32))  # 5 copies of training images
    mem_t, dup_t = diversity.calibrate_thresholds(ref, held_out, 50)
    d, j = diversity.nearest(gen, ref)
    assert list(j[:5]) == [3, 10, 20, 30, 40]
    copied = d < mem_t
    assert copied[:5].all() and copied[5:].mean() < 0.1
    assert mem_t > 0 and dup_t > 0


def test_reference_split_is_the_fixed_permutation():
    names = [f"{i:05d}.png" for i in range(50)]
    ref, floor = fid.reference_split(names, 20, 10)
    perm = np.random.RandomState(0).permutation(50)
    assert ref == [names[i] for i in perm[:20]] and floor == [names[i] for i in perm[20:30]]
    with pytest.raises(DataError):
        fid.reference_split(names, 50, 0)


def test_report_cache_reuse_and_invalidation(tmp_path, tiny_onnx, monkeypatch):
    data = make_folder(tmp_path / "data", 20, seed=3)
    cache = tmp_path / "cache"
    kw = dict(n=6, ref_n=12, floor_n=6, div_n=6, cache_dir=cache, progress=False)
    sample, z_dim, info = ev.load_sampler(tiny_onnx, "cpu")
    r1 = evaluate(sample, z_dim, data, pairs_png=tmp_path / "pairs.png", **kw)
    assert np.isfinite(r1["fid"]) and r1["fid"] > 0 and np.isfinite(r1["floor"])
    assert info == {"kind": "onnx", "path": str(tiny_onnx), "provider": "CPU"} and "n=6" in r1["protocol"]
    assert r1["duplicates"]["exact"] == 0 and 0 <= r1["memorisation"]["rate"] <= 1
    assert len(r1["memorisation"]["closest"]) == 6 and (tmp_path / "pairs.png").stat().st_size > 0
    json.dumps(r1)  # the report is plain JSON
    cached = list(cache.glob("fid-ref-*.npz"))
    assert len(cached) == 1

    def refuse(*a, **k):
        raise AssertionError("reference images were decoded again despite the cache")
    monkeypatch.setattr(fid, "load_images", refuse)
    r2 = evaluate(sample, z_dim, data, **kw)
    assert r2["fid"] == pytest.approx(r1["fid"], abs=1e-6) and r2["floor"] == r1["floor"]
    monkeypatch.undo()

    make_folder(data, 1, seed=99)  # overwrite one image: the data set changed
    r3 = evaluate(sample, z_dim, data, **kw)
    assert len(list(cache.glob("fid-ref-*.npz"))) == 2 and r3["reference_cache"] != r1["reference_cache"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    data = make_folder(tmp_path / "d", 4)
    assert ev.main(["--generator", str(tmp_path / "missing.onnx"), "--data", str(data), "--ref-n", "2"]) == 2
    assert "not found" in capsys.readouterr().err
    assert ev.main(["--generator", str(tmp_path / "x.onnx"), "--data", str(data), "--n", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_cli_report_says_where_each_part_ran(tmp_path, tiny_onnx, capsys, monkeypatch):
    monkeypatch.setenv("ANIME_GAN_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "d", 20, seed=4)
    out = tmp_path / "r" / "report.json"
    assert ev.main(["--generator", str(tiny_onnx), "--data", str(data), "--n", "6", "--ref-n", "12",
                    "--floor-n", "6", "--div-n", "6", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["generator"]["provider"] == "CPU" and report["inception_device"] == "cpu"
    assert "Inception on cpu, generator on CPU" in capsys.readouterr().out

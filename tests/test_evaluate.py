"""Evaluation: the real TF-Inception on a few dozen synthetic images, plus planted duplicates."""
import json

import numpy as np
import pytest

from core.dataset import DataError
from metrics import diversity, fid
from metrics import evaluate as ev
from metrics.report import evaluate
from tests.conftest import blob_image, fresh_cache, make_folder


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
    cache = fresh_cache(tmp_path / "cache")
    kw = dict(n=6, ref_n=12, floor_n=6, div_n=6, cache_dir=cache, progress=False)
    sample, z_dim, info = ev.load_sampler(tiny_onnx, "cpu")
    r1 = evaluate(sample, z_dim, data, pairs_png=tmp_path / "pairs.png", **kw)
    assert np.isfinite(r1["fid"]) and r1["fid"] > 0 and np.isfinite(r1["floor"])
    assert info == {"kind": "onnx", "path": str(tiny_onnx), "provider": "CPU", "classes": [], "class_weights": []}
    assert "n=6" in r1["protocol"] and r1["inception_backend"] == "ort"
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
    monkeypatch.setenv("ANIME_GAN_CACHE", str(fresh_cache(tmp_path / "cache")))
    data = make_folder(tmp_path / "d", 20, seed=4)
    out = tmp_path / "r" / "report.json"
    assert ev.main(["--generator", str(tiny_onnx), "--data", str(data), "--n", "6", "--ref-n", "12",
                    "--floor-n", "6", "--div-n", "6", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["generator"]["provider"] == "CPU" and report["inception_device"] == "cpu"
    assert "Inception on cpu, generator on CPU" in capsys.readouterr().out


def test_kid_is_the_unbiased_mmd_by_hand():
    from metrics.kernels import kid

    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [2.0, 1.0], [1.0, -1.0]])

    def k(a, b):
        return (a @ b / 2 + 1) ** 3
    m = 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    r = kid(x, y, subsets=4, subset_size=3)
    assert r["kid"] == pytest.approx(xx + yy - 2 * xy, rel=1e-12) and r["kid_std"] == pytest.approx(0, abs=1e-12)
    rng = np.random.RandomState(0)
    a, b = rng.randn(600, 4), rng.randn(600, 4)
    same, shifted = kid(a, b, 20, 300), kid(a, b + 1.0, 20, 300)
    assert abs(same["kid"]) < 0.05 * shifted["kid"]  # one distribution: near 0 (unbiased: it may dip below 0)
    assert same["kid_std"] > 0 and shifted["kid_std"] > 0


def test_precision_and_recall_by_hand():
    """1-D sets with k = 1: real [0, 1, 2, 3, 10] has radii 1, 1, 1, 1, 7; generated [0.5, 6, 20] has
    radii 5.5, 5.5, 14. 0.5 and 6 fall in the real manifold, 20 does not; every real point falls in
    the generated one."""
    from metrics.kernels import kth_radii, precision_recall

    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    gen = np.array([[0.5], [6.0], [20.0]])
    np.testing.assert_allclose(kth_radii(real, 1), [1, 1, 1, 1, 7])
    np.testing.assert_allclose(kth_radii(gen, 1), [5.5, 5.5, 14])
    r = precision_recall(gen, real, k=1)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0
    far = precision_recall(gen + 100, real, k=1)
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_inception_on_onnxruntime_equals_torch():
    """The faster CPU path (metrics/inception.py) computes the FID's features: the same to about 1e-5."""
    from metrics.inception import onnx_file

    rng = np.random.RandomState(5)
    images = np.stack([blob_image(rng) for _ in range(12)])
    network = onnx_file()  # exported into the session's cache on first use
    made = network.stat().st_mtime_ns
    fast = fid.InceptionFeatures("cpu", backend="ort")(images, progress=False)
    slow = fid.InceptionFeatures("cpu", backend="torch")(images, progress=False)
    assert fast.shape == slow.shape == (12, 2048)
    assert np.abs(fast - slow).max() < 1e-4
    a, b = fid.stats(fast[:6]), fid.stats(fast[6:])
    a2, b2 = fid.stats(slow[:6]), fid.stats(slow[6:])
    assert round(fid.frechet_distance(a, b), 2) == round(fid.frechet_distance(a2, b2), 2)
    assert onnx_file() == network and network.stat().st_mtime_ns == made  # exported once, then reused


def test_report_has_kid_precision_recall_and_per_class_figures(tmp_path, monkeypatch):
    """A conditional generator on the hair classes: per-class FID where a class has real images, and
    the share of faces whose measured class is the asked one."""
    import torch

    from core.attributes import HAIR_CLASSES
    from metrics.report import summary_line
    from tests.conftest import export_tiny
    from networks.dcgan import Generator

    torch.manual_seed(3)
    g = Generator(z_dim=16, width=8, n_classes=len(HAIR_CLASSES)).eval()
    model = export_tiny(g, tmp_path / "hair.onnx", g.arch(), "cgan-test", classes=HAIR_CLASSES,
                        counts=list(range(1, 11)))
    data = make_folder(tmp_path / "data", 24, seed=6)
    sample, z_dim, info = ev.load_sampler(model, "cpu")
    assert info["classes"] == HAIR_CLASSES and info["class_weights"] == list(range(1, 11))
    r = evaluate(sample, z_dim, data, n=6, ref_n=12, floor_n=6, div_n=6, cache_dir=fresh_cache(tmp_path / "c"), progress=False,
                 classes=info["classes"], weights=info["class_weights"], per_class_n=4)
    assert r["kid_subset_size"] == 6 and np.isfinite(r["kid"]) and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    pc = r["per_class"]
    assert set(pc["classes"]) == set(HAIR_CLASSES) and 0 <= pc["class_accuracy"] <= 1
    assert sum(row["n_real"] for row in pc["classes"].values()) == 12
    assert all(("fid" in row) == (row["n_real"] > 2) for row in pc["classes"].values())
    line = summary_line(r)
    assert "KID" in line and "precision" in line and "class accuracy" in line


def test_frechet_without_a_matrix_square_root_equals_the_sqrtm_formula():
    """FidHelper's and pytorch-fid's formula (scipy's sqrtm) and ours (eigenvalues): the same figure,
    on full-rank covariances and on rank-deficient ones (fewer samples than features)."""
    import scipy.linalg

    from metrics.kernels import frechet

    rng = np.random.RandomState(7)
    for n in (400, 20):
        x, y = rng.normal(size=(n, 48)), rng.normal(size=(n, 48)) @ rng.normal(size=(48, 48)) * 0.3 + 0.5
        m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
        sqrtm = float(np.real((m1 - m2) @ (m1 - m2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2))))
        assert frechet(m1, s1, m2, s2) == pytest.approx(sqrtm, rel=1e-6, abs=1e-6)
    assert abs(frechet(m1, s1, m1, s1)) < 1e-6

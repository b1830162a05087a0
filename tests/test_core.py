"""The shared core: seed and psi rules, limits, atomic files, PNGs, error echoes, and the import
graph (core at the bottom; the trainer and exporter never import the app)."""
import ast
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import limits
from core.errors import UserError, quote, shorten
from core.files import atomic_write, atomic_write_bytes
from core.images import png_batch
from core.seeds import (
    check_int,
    check_psi,
    check_seed,
    compress_seeds,
    latents,
    parse_seeds,
    slerp,
)
from tests.conftest import ROOT


def test_latent_rule():
    z = latents([7, 42], 100)
    np.testing.assert_array_equal(z[1], np.random.RandomState(42).randn(100).astype(np.float32))
    np.testing.assert_allclose(latents([3], 8, 0.5), 0.5 * latents([3], 8))
    assert latents([], 8).shape == (0, 8)


@pytest.mark.parametrize("spec,expected", [
    ("0-3", [0, 1, 2, 3]), ("1,5,9-12", [1, 5, 9, 10, 11, 12]), (" 7 ", [7]), ("4294967295", [2**32 - 1]),
    ("3, 1 - 2", [3, 1, 2]),
])
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec, 1000) == expected
    assert parse_seeds(compress_seeds(expected), 1000) == expected


@pytest.mark.parametrize("spec,message", [
    ("", "empty"), ("a", "whole number"), ("-1", "from 0 to"), ("4294967296", "from 0 to"), ("5-2", "backwards"),
    ("1,,2", "empty"), ("1.5", "whole number"), ("0-99999999", "too many"), ("1e3", "whole number"),
    (None, "must be text"), ("0-4294967295", "too many"),
])
def test_parse_seeds_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_seeds(spec, 1000)


@pytest.mark.parametrize("value,ok", [(5, 5), (5.0, 5), ("5", 5), (" 7 ", 7), ("5.0", 5), (np.int64(3), 3)])
def test_check_int_accepts_whole_numbers(value, ok):
    assert check_int(value, "rows", 0, 10) == ok


@pytest.mark.parametrize("value,message", [
    (True, "rows must be a whole number from 1 to 16, got True"), (None, "rows is empty"), ("", "rows is empty"),
    ("four", "rows must be a whole number"), (1.5, "whole number"), (float("nan"), "whole number"),
    (17, "rows must be from 1 to 16, got 17"), ([], "got list"), ("9" * 40, "whole number"),
])
def test_check_int_names_the_field(value, message):
    with pytest.raises(UserError, match=message):
        check_int(value, "rows", 1, 16)


def test_seed_true_is_not_empty_and_psi_has_one_rule():
    with pytest.raises(UserError, match="seed must be a whole number .* got True"):
        check_seed(True)
    assert check_psi(0.01) == 0.01 and check_psi(2) == 2.0
    for bad in (0, -1, 2.5, float("nan"), float("inf"), "x", None, True):
        with pytest.raises(UserError, match=r"psi must be .*\(0, 2\]"):
            check_psi(bad)


def test_limits_are_costs():
    assert limits.check_morph(3, 120) == 241 and limits.check_morph(16, 16) == 241
    with pytest.raises(UserError, match="1801 frames .*at most 241.*at most 16 frames per step"):
        limits.check_morph(16, 120)
    with pytest.raises(UserError, match="too large an animation"):
        limits.check_morph(2, 100, scale=8)
    limits.check_grid(16, 16, scale=3)
    with pytest.raises(UserError, match="1058 .* wide|4232 pixels wide"):
        limits.check_grid(16, 16, scale=4)
    with pytest.raises(UserError, match="at most 4096"):
        limits.check_picture(64, 64, 65) if False else limits.check_picture(300, 300, 16)


def test_errors_echo_a_short_prefix():
    assert len(quote("x" * 1_000_000)) < 80 and quote("abc") == "'abc'"
    cut = shorten("word " * 200, 50)
    assert len(cut) <= 56 and cut.endswith("[...]") and not cut[:-6].endswith("wor")


def test_atomic_write_leaves_old_file_or_new_and_unique_temporaries(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def fail(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    errors = []

    def writer(i):
        try:
            for _ in range(20):
                atomic_write_bytes(target, bytes([i]) * 1000)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    data = target.read_bytes()
    assert not errors and len(data) == 1000 and len(set(data)) == 1  # whole files only, no shared temporaries


def test_save_figure_writes_a_whole_png_and_closes_the_figure_even_when_it_fails(tmp_path):
    pytest.importorskip("matplotlib")
    from core.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "new" / "curve.png", make_parents=True)
    assert Image.open(out).format == "PNG" and Image.open(out).size == (200, 100)
    assert fig.number not in plt.get_fignums()
    bad = plt.figure()
    with pytest.raises(UserError, match="is a folder"):
        save_figure(bad, tmp_path / "new")
    assert bad.number not in plt.get_fignums()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["curve.png"]  # no temporaries left


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("shape", [(3, 64, 64, 3), (1, 5, 7, 3), (2, 130, 66, 3)])
def test_png_batch_decodes_to_the_same_pixels(shape):
    import io

    rng = np.random.RandomState(sum(shape))
    imgs = rng.randint(0, 256, shape).astype(np.uint8)
    imgs[0, :, : shape[2] // 2] = 255  # flat areas and wrap-around differences (255 above 0)
    imgs[0, 1::2, : shape[2] // 2] = 0
    files = png_batch(imgs)
    assert len(files) == shape[0]
    for data, img in zip(files, imgs):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (shape[2], shape[1]))
            assert np.array_equal(np.asarray(im), img)


def test_png_batch_refuses_what_it_cannot_encode():
    with pytest.raises(UserError, match="uint8 images"):
        png_batch(np.zeros((2, 8, 8, 3), np.float32))


def test_slerp_keeps_the_norm_between_endpoints():
    a, b = latents([1, 2], 512)
    mid = slerp(a, b, 0.5)
    assert abs(np.linalg.norm(mid) - np.linalg.norm(a)) < 0.05 * np.linalg.norm(a)
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-5)


# ----------------------------------------------------------------------------- the house

PACKAGES = ("core", "networks", "metrics", "trainer", "export", "runtime", "demo", "bench", "scripts")
# Modules that are commands (python -m ...): nothing imports from them.
COMMANDS = ("trainer/train.py", "metrics/evaluate.py", "export/to_onnx.py", "demo/generate.py")


def _imports(path: Path) -> set[str]:
    return {n.split(".")[0] for n in _all_imports(path)} & set(PACKAGES)


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_imports_flow_one_way():
    """data -> trainer -> Generator.pth -> export -> runtime -> CLI and app, over a core that imports
    nothing of ours: core imports nothing of ours and no torch; networks (the architectures and
    their files) only core; metrics core and networks; the trainer those and metrics (never the
    other way: metrics reads Generator.pth through networks); export core and networks; the runtime
    only core; the runtime and the app never import torch."""
    allowed = {"core": set(), "networks": {"core"}, "metrics": {"core", "networks"},
               "trainer": {"core", "networks", "metrics"}, "export": {"core", "networks"}, "runtime": {"core"},
               "demo": {"core", "runtime"}}
    for package, ok in allowed.items():
        for f in _files(package):
            bad = _imports(f) - ok - {package}
            assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
    for f in _files("core") + _files("runtime") + _files("demo"):
        assert "torch" not in {n.split(".")[0] for n in _all_imports(f)}, f"{f.relative_to(ROOT)} imports torch"


def test_no_module_imports_a_command():
    """A command (python -m X) is a thin layer: what it uses lives in a module of its job, which other
    modules import instead (a command's __main__.py likewise)."""
    commands = {c.removesuffix(".py").replace("/", ".") for c in COMMANDS}
    commands |= {str(p.relative_to(ROOT).with_suffix("")).replace("/", ".") for pkg in PACKAGES
                 for p in (ROOT / pkg).rglob("__main__.py")}
    for pkg in PACKAGES + ("tests",):
        for f in _files(pkg):
            if pkg == "tests":
                continue  # tests run the commands
            used = _all_imports(f) & commands
            assert not used, f"{f.relative_to(ROOT)} imports the command {used}"


def test_the_trainer_shows_its_jobs_as_folders():
    """trainer/'s top level is the training core; every other job is a folder that names its command."""
    top = {p.name for p in (ROOT / "trainer").iterdir() if p.suffix == ".py"}
    assert top == {"__init__.py", "train.py", "options.py", "config.py", "data.py", "run_state.py", "step.py",
                   "training_loop.py", "run_files.py", "objectives.py", "ema.py", "diffaug.py", "signals.py",
                   "precision.py", "checks.py", "evaluation.py"}
    for job in (p for p in (ROOT / "trainer").iterdir() if p.is_dir() and p.name != "__pycache__"):
        doc = ast.get_docstring(ast.parse((job / "__init__.py").read_text()))
        assert doc and ("python -m trainer." in doc), f"trainer/{job.name}/__init__.py names no command"


def _all_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_file_over_350_lines_outside_tests():
    long = [f"{p.relative_to(ROOT)}: {n}" for pkg in PACKAGES for p in _files(pkg)
            if (n := len(p.read_text().splitlines())) > 350]
    assert long == []
    tests = [f"{p.relative_to(ROOT)}: {n}" for p in _files("tests") if (n := len(p.read_text().splitlines())) > 450]
    assert tests == []


def test_atomic_write_never_replaces_a_device_or_a_folder(tmp_path):
    import stat

    atomic_write_bytes("/dev/null", b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a regular file
    with pytest.raises(UserError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")


def test_reserved_seed_ranges_never_overlap():
    from core.seeds import SEED_RANGES, seed_range

    spans = sorted((r.start, r.stop, name) for name, r in SEED_RANGES.items())
    for (a0, a1, a), (b0, b1, b) in zip(spans, spans[1:]):
        assert a1 <= b0, f"{a} and {b} overlap"
    assert spans[0][0] == 0 and all(r.stop <= 2**32 for r in SEED_RANGES.values())
    assert seed_range("faces", 64) == range(64) and seed_range("int8", 512) == range(100_000, 100_512)
    with pytest.raises(UserError):
        seed_range("int8", 10_000)


def test_a_killed_test_session_s_folder_is_swept_by_the_next(tmp_path):
    import subprocess
    import sys

    from tests.conftest import _sweep_orphans

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan, alive, young = (tmp_path / f"anime-gan-tests-{n}" for n in ("orphan", "alive", "young"))
    for folder in (orphan, alive, young):
        (folder / "gradio").mkdir(parents=True)
    (orphan / "OWNER_PID").write_text(dead.stdout.strip())  # a process that has ended
    (alive / "OWNER_PID").write_text(str(os.getpid()))
    _sweep_orphans(tmp_path)
    assert not orphan.exists() and alive.exists() and young.exists()  # young: no owner written yet

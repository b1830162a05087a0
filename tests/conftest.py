"""Shared fixtures: synthetic face-like images, tiny models and a running app, all made here (no
real data needed). Everything the suite writes lives in one temporary folder, removed at the end."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# The real faces, for the few tests that use them (skipped when absent): a folder holding
# anime-faces-64.zip, from ANIME_GAN_TEST_DATA or beside the repository.
SHARED_DATA = Path(os.environ.get("ANIME_GAN_TEST_DATA") or ROOT.parent / "shared" / "data") / "anime-faces-64.zip"

# One folder for everything the session writes, set before gradio is imported: Gradio's cache (and
# the app's files inside it), and the temporary folder of this process and its children
# (gradio_client leaves an empty folder there for every file it downloads).
def _sweep_orphans(parent: Path) -> None:
    """Remove the folders of earlier sessions that were killed (SIGKILL runs no clean-up): each
    folder names its process in OWNER_PID, and a folder whose process is gone is an orphan."""
    for folder in parent.glob("anime-gan-tests-*"):
        try:
            os.kill(int((folder / "OWNER_PID").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # no owner file yet (being made), or a process of another user
            pass


_sweep_orphans(Path(tempfile.gettempdir()))
_SCRATCH = Path(tempfile.mkdtemp(prefix="anime-gan-tests-"))
(_SCRATCH / "OWNER_PID").write_text(str(os.getpid()))
os.environ["GRADIO_TEMP_DIR"] = str(_SCRATCH / "gradio")
os.environ["TMPDIR"] = tempfile.tempdir = str(_SCRATCH / "tmp")
Path(tempfile.tempdir).mkdir()
os.environ["MPLCONFIGDIR"] = str(_SCRATCH / "matplotlib")  # matplotlib's font cache, not in the home folder
os.environ["ANIME_GAN_CACHE"] = str(_SCRATCH / "fid-cache")  # FID reference statistics
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.pop("ANIME_GAN_MODEL", None)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SCRATCH, ignore_errors=True)


# Also when this module is imported outside pytest (a script importing a test's helpers).
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


def fresh_cache(path: Path) -> Path:
    """An empty FID cache folder (no reference statistics) that already holds the exported Inception
    network: exporting it takes a minute or more on two cores, so the session does it once (in the
    session's cache) and each test that needs a cache of its own gets a copy."""
    from metrics.inception import onnx_file

    network = onnx_file()
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy2(network, path / network.name)
    return path


def blob_image(rng: np.random.RandomState, size: int = 64) -> np.ndarray:
    """A coloured background with two coloured ellipses: enough structure for GAN and FID tests."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.randint(0, 256, 3)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(2):
        cy, cx = rng.randint(size // 4, 3 * size // 4, 2)
        ry, rx = rng.randint(size // 8, size // 3, 2)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.randint(0, 256, 3)
    return img


def make_folder(path: Path, n: int, seed: int = 0, ext: str = ".png") -> Path:
    rng = np.random.RandomState(seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(blob_image(rng)).save(path / f"img_{i:04d}{ext}")
    return path


@pytest.fixture(scope="session")
def blobs(tmp_path_factory) -> Path:
    """64 synthetic 64x64 PNGs in a folder."""
    return make_folder(tmp_path_factory.mktemp("blobs"), 64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, blobs) -> Path:
    """A finished tiny training run (Generator.pth + generator.json) of the seed recipe."""
    from trainer.train import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    rc = main(["--data", str(blobs), "--recipe", "seed-dcgan", "--out", str(out), "--g-width", "8",
               "--d-width", "8", "--batch-size", "16", "--max-steps", "3", "--log-every", "1", "--quiet"])
    assert rc == 0
    return out


TINY_CLASSES = ["red", "blue", "green"]


def trained_like(g):
    """G with its weights, norm gains and BatchNorm statistics moved away from their initial values, as
    after training: folding, transfer and class strength must carry them (defaults would hide a slip)."""
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                if m.affine:
                    m.weight.uniform_(0.5, 2.0)
                    m.bias.uniform_(-0.5, 0.5)
                if m.running_mean is not None:
                    m.running_mean.uniform_(-1, 1)
                    m.running_var.uniform_(0.5, 3.0)
    return g


def export_tiny(g, out: Path, arch: dict, recipe: str = "test", classes: list | None = None,
                counts: list | None = None) -> Path:
    from export.onnx_export import to_onnx_fp32, write_verified
    from networks import fold_batchnorm

    card = {"arch": arch, "recipe": {"name": recipe, "description": "a tiny test generator"}, "epochs": 0, "steps": 0,
            "classes": classes or [], "class_counts": counts or []}
    res = write_verified(g, to_onnx_fp32(fold_batchnorm(g), g.z_dim), "fp32", out, card)
    assert res.passed, res.message
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A small exported generator whose random weights still give distinct faces for every seed."""
    import torch

    from networks.dcgan import Generator

    torch.manual_seed(0)
    g = Generator(z_dim=16, width=8).eval()  # PyTorch's default init: varied outputs, unlike N(0, 0.02)
    return export_tiny(g, tmp_path_factory.mktemp("onnx") / "generator.onnx", g.arch())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_onnx) -> Path:
    """A models folder like demo/models/: the tiny generator as the default, a second model with its
    card, and one broken file that must not stop the others."""
    import json

    import torch

    from networks.resnet import Generator

    folder = tmp_path_factory.mktemp("models")
    shutil.copy(tiny_onnx, folder / "generator.onnx")
    (folder / "generator.json").write_text(json.dumps({"label": "Tiny default (test)"}))
    torch.manual_seed(1)
    g = Generator(z_dim=16, width=4, cap=16).eval()
    export_tiny(g, folder / "small-resnet.onnx", g.arch(), "resnet-test")
    (folder / "small-resnet.json").write_text(json.dumps({"label": "Small ResNet (test)", "notes": "for tests"}))
    (folder / "broken.onnx").write_bytes(b"not a model")
    from networks.dcgan import Generator as DCGAN

    torch.manual_seed(2)
    c = DCGAN(z_dim=16, width=8, n_classes=3).eval()
    export_tiny(c, folder / "tiny-cgan.onnx", c.arch(), "cgan-test", classes=TINY_CLASSES, counts=[1, 2, 7])
    (folder / "tiny-cgan.json").write_text(json.dumps({"label": "Tiny conditional (test)", "classes": TINY_CLASSES,
                                                        "class_counts": [1, 2, 7]}))
    from core.steering import directions_path
    from export.directions import measure

    result = measure(folder / "generator.onnx", samples=400, principal=2, candidates=4, progress=lambda m: None)
    directions_path(folder / "generator.onnx").write_text(json.dumps(result))
    for name in ("generator", "tiny-cgan"):  # the default and the conditional model can find a picture's face
        run = tmp_path_factory.mktemp("encoder") / name
        train_tiny_encoder(folder / f"{name}.onnx", run)
        from export.encoder import main as export_encoder

        assert export_encoder(["--run", str(run), "--out", str(folder / f"{name}.encoder.onnx")]) == 0
    return folder


def train_tiny_encoder(generator: Path, out: Path, kimg: float = 0.256, **options):
    """A few steps of an encoder (trainer/encoder) for a generator file; the finished EncoderRun."""
    import torch

    from trainer.encoder.run import EncoderOptions, EncoderRun, train

    run = EncoderRun(EncoderOptions(generator=str(generator), kimg=kimg, batch_size=16, width=8, **options),
                     torch.device("cpu"))
    train(run, out, log_every=4)
    return run


@pytest.fixture(scope="session")
def served(tiny_models):
    """The app on a free localhost port, driven through gradio_client: (client, menu, port)."""
    from gradio_client import Client

    from core.system import free_port
    from demo.app import build_app, launch_options, serve_edge
    from demo.settings import Settings
    from runtime.menu import ModelMenu

    menu = ModelMenu(tiny_models, device="cpu", default="generator")
    settings = Settings(max_count=50, file_ttl_s=600, uploads_per_minute=1000)  # tests upload more than a person
    app = build_app(menu, settings)
    port = free_port()
    app.launch(prevent_thread_lock=True, quiet=True,
               **{**launch_options(settings), "server_name": "127.0.0.1", "server_port": port})
    serve_edge(app, tiny_models)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, menu, port
    app.close()
    app.work.close()

"""A picture's face found in a generator's space: reading pictures safely, the encoder's training,
export and resume, the runtime, the CLI, the app's upload path and its bad input."""
from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.pictures import MAX_BYTES, read_face
from tests.conftest import train_tiny_encoder


def png_bytes(img: np.ndarray | Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, fmt, **kw)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, in a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * 1024)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------- pictures


def test_a_picture_is_cropped_to_its_centre_and_resized():
    img = np.zeros((80, 160, 3), np.uint8)
    img[:, 40:120] = [200, 30, 30]  # the centre square is all red, the sides black
    face = read_face(png_bytes(img))
    assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    assert np.abs(face.astype(int) - [200, 30, 30]).max() <= 2


def test_an_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert read_face(buf.getvalue())[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"GIF89a but not really", "not a readable picture"),
    (b"x" * (MAX_BYTES + 1), "at most 2 MiB"),
    (bomb_png(20000, 20000), "at most 16,777,216 pixels"),
    (bomb_png(5000, 5000), "at most 16,777,216 pixels"),
    (png_bytes(np.zeros((8, 8, 3), np.uint8), "TIFF"), "take a PNG"),
], ids=["empty", "not-an-image", "too-large", "bomb", "bomb-below-pillows-cap", "tiff"])
def test_bad_pictures_get_one_line(data, message):
    with pytest.raises(UserError, match=message) as e:
        read_face(data)
    assert "\n" not in str(e.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="no picture at"):
        read_face(tmp_path / "nope.png")


# ---------------------------------------------------------------------------------- the encoder


def test_encoder_training_resumes_to_the_same_weights(tmp_path, tiny_onnx):
    import torch

    from networks.files import load_torch
    from trainer.encoder.run import LOSS_FIELDS, EncoderOptions, EncoderRun, save, train
    from trainer.run_files import LossLog

    straight = train_tiny_encoder(tiny_onnx, tmp_path / "straight", kimg=0.128)
    opts = EncoderOptions(generator=str(tiny_onnx), kimg=0.128, batch_size=16, width=8)
    half = EncoderRun(opts, torch.device("cpu"))
    for _ in range(4):
        half.train_step()
    (tmp_path / "resumed").mkdir()
    save(half, tmp_path / "resumed", LossLog(tmp_path / "resumed" / "losses.csv", half.step, fields=LOSS_FIELDS))
    resumed = EncoderRun(opts, torch.device("cpu"), load_torch(tmp_path / "resumed" / "checkpoint.pt"))
    assert resumed.images_seen == 64
    train(resumed, tmp_path / "resumed")
    assert resumed.images_seen == straight.images_seen == 128
    for (k, a), b in zip(straight.e.state_dict().items(), resumed.e.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    card = json.loads((tmp_path / "resumed" / "encoder.json").read_text())
    assert card["generator"]["sha256"] == straight.generator_sha256 and card["images_seen"] == 128
    assert {"latent_mse", "psnr_db"} <= set(card["held_out"])


@pytest.fixture(scope="module")
def lively(tmp_path_factory) -> Path:
    """A tiny generator whose faces differ visibly with z (the shared tiny one's barely do)."""
    import torch

    from networks.dcgan import Generator
    from tests.conftest import export_tiny

    torch.manual_seed(0)
    g = Generator(z_dim=16, width=8).eval()
    with torch.no_grad():  # larger convolutions than PyTorch's init
        for p in g.parameters():
            p.mul_(3.0 if p.dim() == 4 else 1.0)
    return export_tiny(g, tmp_path_factory.mktemp("lively") / "lively.onnx", g.arch())


def test_the_encoder_learns_the_latents(lively):
    import torch

    from trainer.encoder.run import EncoderOptions, EncoderRun

    run = EncoderRun(EncoderOptions(generator=str(lively), kimg=10, batch_size=32, width=8, lr=3e-3), torch.device("cpu"))
    before = run.held_out(128)
    for _ in range(150):
        run.train_step()
    after = run.held_out(128)
    assert after["latent_mse"] < 0.5 * before["latent_mse"], (before, after)
    assert after["psnr_db"] > before["psnr_db"] + 3, (before, after)  # the faces found look more like the faces


def test_the_command_refuses_a_second_start_and_leaves_no_folder_for_a_bad_generator(tmp_path, tiny_onnx, capsys):
    from trainer.encoder.__main__ import main

    out = tmp_path / "enc"
    assert main(["--generator", str(tiny_onnx), "--out", str(out), "--kimg", "0.032", "--batch-size", "16",
                 "--width", "8"]) == 0
    assert {"checkpoint.pt", "Encoder.pth", "encoder.json", "losses.csv"} <= {p.name for p in out.iterdir()}
    assert main(["--generator", str(tiny_onnx), "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["--generator", str(bad), "--out", str(tmp_path / "never")]) == 2
    assert not (tmp_path / "never").exists()


def test_export_checks_parity_and_names_its_generator(tmp_path, tiny_onnx):
    import onnx

    from core.files import sha256_file
    from export.encoder import main as export

    run = tmp_path / "enc"
    train_tiny_encoder(tiny_onnx, run, kimg=0.032)
    out = tmp_path / "generator.encoder.onnx"
    assert export(["--run", str(run), "--out", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["kind"] == "encoder" and meta["generator_sha256"] == sha256_file(tiny_onnx)
    assert float(meta["parity_max_abs"]) <= 1e-4
    assert export(["--run", str(run), "--out", str(tmp_path / "generator-encoder.onnx")]) == 2
    assert not (tmp_path / "generator-encoder.onnx").exists()


# ---------------------------------------------------------------------------------- runtime and CLI


def test_the_runtime_finds_faces_and_their_classes(tiny_models):
    from runtime.menu import ModelMenu

    menu = ModelMenu(tiny_models, device="cpu")
    engine = menu.get("generator")
    faces = engine.faces([1, 2, 3])
    z, classes = engine.invert(faces)
    assert z.shape == (3, engine.z_dim) and z.dtype == np.float32 and classes is None
    assert engine.from_latents(z).shape == (3, 64, 64, 3)
    cgan = menu.get("tiny-cgan")
    z, classes = cgan.invert(cgan.faces([1, 2]))
    assert classes.shape == (2,) and set(classes.tolist()) <= {0, 1, 2}
    assert [m["encoder"] for m in menu.index()["models"] if m["name"] in ("generator", "small-resnet")] == [True, False]
    assert not any(n.endswith("encoder") for n in menu.names())


def test_a_model_without_its_own_encoder_says_so(tmp_path, tiny_models):
    import shutil

    from runtime.engine import Engine, EngineError

    with pytest.raises(EngineError, match="has no encoder"):
        Engine.load(tiny_models / "small-resnet.onnx", "cpu").encoder()
    # An encoder beside a model it was not made for is refused, not used.
    shutil.copy(tiny_models / "small-resnet.onnx", tmp_path / "other.onnx")
    shutil.copy(tiny_models / "generator.encoder.onnx", tmp_path / "other.encoder.onnx")
    with pytest.raises(EngineError, match="made for another model"):
        Engine.load(tmp_path / "other.onnx", "cpu").encoder()


def test_the_cli_writes_the_face_found_its_latent_and_a_morph(tmp_path, tiny_models, monkeypatch, capsys):
    from demo.generate import main

    monkeypatch.setenv("ANIME_GAN_MODELS", str(tiny_models))
    picture = tmp_path / "me.png"
    picture.write_bytes(png_bytes(np.full((100, 80, 3), 120, np.uint8)))
    assert main(["--invert", str(picture), "--out", str(tmp_path / "found.png"), "--upscale", "2"]) == 0
    assert Image.open(tmp_path / "found.png").size == (128, 128)
    record = json.loads((tmp_path / "found.latent.json").read_text())
    assert len(record["z"]) == 16 and record["model"] == "generator.onnx" and record["picture"] == "me.png"
    assert main(["--invert", str(picture), "--morph", "3,7", "--frames", "4", "--out", str(tmp_path / "m.gif")]) == 0
    assert Image.open(tmp_path / "m.gif").n_frames == 9  # 4 per leg from the face found, then seed 7
    assert main(["--model", "tiny-cgan", "--invert", str(picture), "--class", "blue",
                 "--out", str(tmp_path / "blue.png")]) == 0
    assert json.loads((tmp_path / "blue.latent.json").read_text())["class"] == "blue"
    capsys.readouterr()


def test_a_found_face_continues_from_its_latent_file_in_its_own_model_only(tmp_path, tiny_models, monkeypatch, capsys):
    from demo.generate import main
    from runtime.menu import ModelMenu

    monkeypatch.setenv("ANIME_GAN_MODELS", str(tiny_models))
    picture = tmp_path / "me.png"
    picture.write_bytes(png_bytes(np.full((64, 64, 3), 90, np.uint8)))
    assert main(["--invert", str(picture), "--out", str(tmp_path / "found.png")]) == 0
    latent = tmp_path / "found.latent.json"
    assert main(["--latent", str(latent), "--out", str(tmp_path / "again.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(tmp_path / "found.png")))
    engine = ModelMenu(tiny_models, device="cpu").get("generator")
    name = engine.directions.names[0]
    assert main(["--latent", str(latent), "--edit", f"{name}=2", "--out", str(tmp_path / "edited.png")]) == 0
    z = np.asarray(json.loads(latent.read_text())["z"], np.float32)[None]
    want = engine.from_latents(z, edits={name: 2.0})[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "edited.png")), want)
    capsys.readouterr()
    assert main(["--model", "tiny-cgan", "--latent", str(latent), "--out", str(tmp_path / "x.png")]) == 2
    assert "was found in generator.onnx, not in tiny-cgan.onnx" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"z": "nope"}')
    assert main(["--latent", str(tmp_path / "bad.json"), "--out", str(tmp_path / "y.png")]) == 2
    assert "not a latent file" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_refinement_brings_the_face_closer_to_the_picture(tmp_path, tiny_models, lively, capsys, monkeypatch):
    from demo.generate import main as cli
    from runtime.engine import Engine
    from trainer.encoder.refine.__main__ import main

    target = Engine.load(lively, "cpu").faces([5])[0]  # a face the model can draw, from a latent far from zero
    picture = tmp_path / "me.png"
    picture.write_bytes(png_bytes(target))
    start = tmp_path / "start.latent.json"
    start.write_text(json.dumps({"z": [0.0] * 16, "class": None}))
    assert main(["--picture", str(picture), "--model", str(lively), "--latent", str(start), "--steps", "40",
                 "--out", str(tmp_path / "lively.png")]) == 0
    before, after = (float(v) for v in re.search(r"PSNR ([\d.]+) -> ([\d.]+) dB", capsys.readouterr().out).groups())
    assert after > before + 1, (before, after)
    out = tmp_path / "refined.png"
    assert main(["--picture", str(picture), "--model", str(tiny_models / "generator.onnx"), "--steps", "3",
                 "--out", str(out)]) == 0  # from the encoder beside the model
    record = json.loads(out.with_name("refined.latent.json").read_text())
    assert record["refined_steps"] == 3 and len(record["z"]) == 16
    monkeypatch.setenv("ANIME_GAN_MODELS", str(tiny_models))  # the CLI continues from a refined latent too
    assert cli(["--latent", str(out.with_name("refined.latent.json")), "--out", str(tmp_path / "again.png")]) == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "again.png"), int) - np.asarray(Image.open(out), int)).max() <= 2
    import shutil

    shutil.copy(tiny_models / "generator.onnx", tmp_path / "alone.onnx")
    assert main(["--picture", str(picture), "--model", str(tmp_path / "alone.onnx"), "--out",
                 str(tmp_path / "no.png")]) == 2
    assert "has no encoder" in capsys.readouterr().err and not (tmp_path / "no.png").exists()


def test_the_cli_refuses_bad_pictures_and_models_without_an_encoder(tmp_path, tiny_models, monkeypatch, capsys):
    from demo.generate import main

    monkeypatch.setenv("ANIME_GAN_MODELS", str(tiny_models))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert main(["--invert", str(text), "--out", str(tmp_path / "a.png")]) == 2
    assert "not a readable picture" in capsys.readouterr().err
    good = tmp_path / "me.png"
    good.write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    assert main(["--model", "small-resnet", "--invert", str(good), "--out", str(tmp_path / "b.png")]) == 2
    assert "has no encoder" in capsys.readouterr().err
    assert main(["--invert", str(good), "--seeds", "1", "--out", str(tmp_path / "c.png")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.png", "notes.png"]  # nothing half-written


# ---------------------------------------------------------------------------------- the app


def test_the_app_finds_an_uploaded_face_and_keeps_nothing(served, tmp_path):
    import gradio as gr
    from gradio_client import handle_file

    client, menu, _ = served
    picture = tmp_path / "me.png"
    picture.write_bytes(png_bytes(np.full((90, 90, 3), 200, np.uint8)))
    direction = menu.get("generator").directions.names[0]
    original, found, strip, caption = client.predict(handle_file(str(picture)), "steer", direction, 42, "generator",
                                                     api_name="/invert")
    assert Image.open(found).size[0] >= 64 and Image.open(strip).size[0] > 5 * Image.open(strip).size[1]
    assert "face found" in caption
    *_, caption = client.predict(handle_file(str(picture)), "morph", None, 7, "generator", api_name="/invert")
    assert "morph to seed 7" in caption
    uploads = Path(gr.utils.get_upload_folder())
    assert not [p for p in uploads.rglob("me.png")]  # each picture deleted once read


def test_the_app_answers_bad_uploads_in_one_line(served, tmp_path):
    from gradio_client import handle_file

    client, _, _ = served
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(Exception, match="not a readable picture"):
        client.predict(handle_file(str(text)), "steer", None, 42, "small-resnet", api_name="/invert")
    picture = tmp_path / "me.png"
    picture.write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    with pytest.raises(Exception, match="has no encoder"):
        client.predict(handle_file(str(picture)), "steer", None, 42, "small-resnet", api_name="/invert")
    with pytest.raises(Exception, match="direction must be one of"):
        client.predict(handle_file(str(picture)), "steer", "no-such-direction", 42, "generator", api_name="/invert")


def test_the_handler_takes_only_files_it_was_sent(tmp_path):
    from demo.handlers import uploaded_path

    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    for given in ({"path": str(secret)}, str(secret), {"path": "../../etc/passwd"}, None, {"path": ""}, 7):
        with pytest.raises(UserError):
            uploaded_path(given)
    assert secret.exists()


def _upload(middleware, size: int, host: str = "10.0.0.1") -> int:
    """The status BodyLimit answers an upload of `size` bytes with (200: passed on to the app)."""
    statuses: list[int] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    middleware.app = app
    scope = {"type": "http", "path": "/gradio_api/upload", "client": (host, 1),
             "headers": [(b"content-length", str(size).encode())]}
    asyncio.run(middleware(scope, receive, send))
    return statuses[0]


def test_uploads_are_one_small_picture_a_few_times_a_minute():
    from demo.admission import ALL_UPLOADS, UPLOAD_BYTES, BodyLimit
    from demo.settings import Settings

    per_minute = Settings().uploads_per_minute
    limit = BodyLimit(None, uploads_per_minute=per_minute)
    assert _upload(limit, UPLOAD_BYTES + 1) == 403  # a refused upload counts too: a script's flood is a flood
    assert [_upload(limit, 50_000) for _ in range(per_minute)] == [200] * (per_minute - 1) + [429]
    assert _upload(limit, 50_000, host="10.0.0.2") == 200  # another visitor is not held back
    many = [_upload(limit, 50_000, host=f"10.1.{i // 200}.{i % 200}") for i in range(ALL_UPLOADS * per_minute)]
    assert many.count(429) == per_minute + 1  # all visitors together: ALL_UPLOADS visitors' worth a minute


def test_a_picture_never_read_goes_before_the_made_files(tmp_path, monkeypatch):
    from demo import sweeper

    work = sweeper.WorkDir(tmp_path / "work", ttl_s=3600)
    made, uploads = tmp_path / "made.png", tmp_path / "up" / "me.png"
    uploads.parent.mkdir()
    for p in (made, uploads):
        p.write_bytes(b"x")
    work.adopt([{str(made)}], uploads={str(uploads)})
    work.sweep()  # first seen now
    monkeypatch.setattr(sweeper, "UPLOAD_TTL_S", -1)
    work.sweep()
    assert made.exists() and not uploads.exists() and not uploads.parent.exists()
    work.close()


def test_the_inversion_report_measures_three_ways_and_names_the_data_by_hash(tmp_path, tiny_models, blobs,
                                                                            monkeypatch, capsys):
    from core.dataset import dataset_fingerprint
    from scripts.inversion_report import main as report

    monkeypatch.setenv("ANIME_GAN_MODELS", str(tiny_models))
    out = tmp_path / "report"
    assert report(["--model", "generator", "--data", str(blobs), "--n", "6", "--pool", "12", "--refine-n", "2",
                   "--refine-steps", "2", "--out", str(out), "--real-grid", str(tmp_path / "real.png")]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["data"] == {"name": blobs.name, "sha256": dataset_fingerprint(blobs)}  # no path of this machine
    for kind in ("generated", "real"):
        figures = r["sets"][kind]
        assert set(figures) == {"encoder", "encoder + refinement", "nearest of 12 seeds", "unrelated faces"}
        assert figures["encoder"]["faces"] == 6 and figures["encoder + refinement"]["faces"] == 2
        assert all(0 < f["psnr_db"] < 100 and f["feature_distance"] >= 0 for k, f in figures.items() if "psnr_db" in f)
    # faces and their three rebuilds, as many columns as the shortest row (2 refined), 2 px between, 2x
    assert Image.open(out / "grid.png").size == (2 * (2 * 64 + 3 * 2), 2 * (4 * 64 + 5 * 2))
    assert (tmp_path / "real.png").is_file() and "| generated (6) | encoder |" in capsys.readouterr().out
    assert report(["--model", "small-resnet", "--n", "2"]) == 2  # a model without an encoder: a clear error
    assert "encoder" in capsys.readouterr().err

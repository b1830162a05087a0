import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.attributes import HAIR_CLASSES
from core.seeds import latents
from tests.conftest import ROOT, fresh_cache
from trainer import objectives
from trainer.config import RECIPES, describe, get_recipe, recipe_changes
from networks.files import load_generator
from networks.dcgan import Discriminator, Generator
from trainer.train import main

# fp32 pinned: on a CPU with bf16, `auto` probes at each start and two runs could differ in arithmetic.
TINY = ["--precision", "fp32", "--g-width", "8", "--d-width", "8", "--batch-size", "16", "--log-every", "1", "--quiet"]


def read_losses(run: Path) -> list[dict]:
    with open(run / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_trains_and_writes_loadable_outputs(tmp_path, blobs, recipe):
    out = tmp_path / recipe
    small = ["--batch-size", "8"] if RECIPES[recipe].n_critic > 1 else []  # 5 critic batches per step
    if RECIPES[recipe].g_train != "all":  # a fine-tuning recipe: from zero only when told to train all of G
        assert main(["--data", str(blobs), "--recipe", recipe, "--out", str(out), *TINY]) == 2
        small.extend(["--g-train", "all"])
    assert main(["--data", str(blobs), "--recipe", recipe, "--out", str(out), "--max-steps", "2", *TINY, *small]) == 0
    rows = read_losses(out)
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("loss_d", "loss_g"))
    state = torch.load(out / "Generator.pth", weights_only=True)
    g, card = load_generator(out / "Generator.pth")
    assert set(state) == set(g.state_dict())
    r = RECIPES[recipe]
    assert card["arch"]["name"] == r.g_arch and card["arch"]["g_width"] == 8 and card["arch"]["z_dim"] == r.z_dim
    assert card["recipe"]["name"] == recipe and card["steps"] == 2 and card["dataset"]["images"] == 64
    assert card["weights"] == ("ema" if r.ema_kimg else "raw")
    assert card["g_parameters"] == sum(p.numel() for p in g.parameters())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"G", "D", "EMA", "opt_g", "opt_d", "rng_cpu", "epoch", "step"} <= set(ckpt)
    assert (out / "losses.png").stat().st_size > 0 and [p.name for p in (out / "samples").glob("*.png")] == [
        "step_0000002.png"]  # written at the end, not after every epoch
    assert card["classes"] == (HAIR_CLASSES if r.classes else []) and g.n_classes == len(card["classes"])
    with torch.no_grad():
        img = g(torch.zeros(2, r.z_dim), torch.tensor([0, 3]) if g.n_classes else None)
    assert img.shape == (2, 3, 64, 64) and img.abs().max() <= 1


def test_seed_architecture_matches_the_report():
    g, d = Generator(100, 128), Discriminator(64, "batch", sigmoid=True)
    convs = [m for m in g.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.padding[0]) for c in convs] == [
        (100, 1024, 1, 0), (1024, 512, 2, 1), (512, 256, 2, 1), (256, 128, 2, 1), (128, 3, 2, 1)]
    assert all(c.bias is not None for c in convs)
    dconvs = [m for m in d.net if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.padding[0]) for c in dconvs] == [
        (3, 64, 2, 1), (64, 128, 2, 1), (128, 256, 2, 1), (256, 512, 2, 1), (512, 1, 2, 0)]
    assert isinstance(d.net[-1], torch.nn.Conv2d) and d.sigmoid  # the report's Sigmoid, applied in forward
    plain = Discriminator(64, "batch")
    plain.load_state_dict(d.state_dict())  # the same weights without it
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(d.eval()(x), torch.sigmoid(plain.eval()(x)))
    r = get_recipe("seed-dcgan")
    assert (r.lr_g, r.lr_d, r.beta1, r.beta2, r.batch_size) == (2e-3, 2e-3, 0.5, 0.999, 128)
    assert r.loss_params == {"real_label": (0.7, 1.12), "fake_label": (0.0, 0.3)}


def test_overrides_reach_the_recipe(tmp_path, blobs):
    out = tmp_path / "o"
    assert main(["--data", str(blobs), "--recipe", "wgan", "--out", str(out), "--max-steps", "1", "--lr", "0.001",
                 "--z-dim", "32", "--n-critic", "2", *TINY]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert card["recipe"]["lr_g"] == card["recipe"]["lr_d"] == 0.001
    assert card["recipe"]["n_critic"] == 2 and card["arch"]["z_dim"] == 32


def test_resume_continues_exactly(tmp_path, blobs):
    common = ["--data", str(blobs), "--recipe", "best", *TINY]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*common, "--out", str(full), "--max-steps", "6"]) == 0
    assert main([*common, "--out", str(part), "--max-steps", "3"]) == 0
    assert main(["--resume", str(part), "--max-steps", "6", *TINY[-3:]]) == 0
    a, b = read_losses(full), read_losses(part)
    assert [r["step"] for r in b] == [str(i) for i in range(1, 7)]
    for ra, rb in zip(a, b):
        for k in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-5, abs=1e-6), (ra["step"], k)
    ga, gb = torch.load(full / "Generator.pth", weights_only=True), torch.load(part / "Generator.pth", weights_only=True)
    assert all(torch.allclose(ga[k].float(), gb[k].float(), atol=1e-6) for k in ga)


def test_bad_inputs_give_one_line_errors(tmp_path, blobs, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r1"), *TINY]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["--data", str(blobs), "--out", str(tmp_path / "r3"), "--diffaug", "zoom", *TINY]) == 2
    assert "DiffAugment" in capsys.readouterr().err
    assert main(["--data", str(blobs), "--out", str(tmp_path / "r4"), "--batch-size", "500",
                 "--g-width", "8", "--d-width", "8", "--quiet"]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert main(["--data", str(blobs), "--out", str(tmp_path / "r5"), "--recipe", "wgan", *TINY]) == 2
    assert "shorter than n_critic" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nothing-here"), *TINY]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder_fails_at_start(tmp_path, blobs, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["--data", str(blobs), "--out", str(ro / "run"), "--max-steps", "1", *TINY]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_unwritable_output_path_fails_at_start(tmp_path, blobs, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(["--data", str(blobs), "--out", str(blocker / "run"), "--max-steps", "1", *TINY]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_last_good_files(tmp_path, blobs, capsys, monkeypatch):
    out = tmp_path / "nan"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(out), "--max-steps", "2", *TINY]) == 0
    good_g = (out / "Generator.pth").read_bytes()
    good_ckpt = (out / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(objectives.Hinge, "g_loss", lambda self, fake, score_real: -fake.mean() * float("nan"))
    assert main(["--resume", str(out), "--max-steps", "4", *TINY[-3:]]) == 2
    assert "non-finite loss_g at step 3" in capsys.readouterr().err
    assert (out / "Generator.pth").read_bytes() == good_g
    assert (out / "checkpoint.pt").read_bytes() == good_ckpt


def test_existing_run_is_not_overwritten(tmp_path, tiny_run, blobs, capsys):
    assert main(["--data", str(blobs), "--out", str(tiny_run), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_torchrun_two_cpu_processes(tmp_path, blobs):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "trainer.train", "--data", str(blobs), "--recipe", "seed-dcgan", "--out", str(out),
           "--device", "cpu", "--max-steps", "2", *TINY]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_losses(out)
    assert [int(x["step"]) for x in rows] == [1, 2]
    card = json.loads((out / "generator.json").read_text())
    assert card["speed"]["processes"] == 2 and card["speed"]["batch_per_process"] == 8
    load_generator(out)


def test_ema_half_life_ramps_up_then_settles():
    from trainer.ema import EMA, ema_beta, half_life_kimg_of_decay

    assert ema_beta(10, 0.05, images_seen=1000, batch=100) == pytest.approx(0.25)  # half-life 50 images early
    assert ema_beta(10, 0.05, images_seen=10**7, batch=100) == pytest.approx(0.5 ** 0.01)  # then 10k images
    assert ema_beta(10, 0.0, images_seen=100, batch=100) == pytest.approx(0.5 ** 0.01)  # no ramp
    assert half_life_kimg_of_decay(0.999, 128) == pytest.approx(88.67, abs=0.01)
    g = torch.nn.Linear(2, 2)
    ema = EMA(g, half_life_kimg=0.1, rampup=0.0)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        g.weight.add_(1.0)
    ema.update(g, images_seen=10**6, batch=100)  # beta = 0.5: halfway to the new weights
    assert torch.allclose(ema.module.weight, before + 0.5)


def test_old_checkpoints_ema_and_decay_still_load():
    from trainer.config import Recipe
    from trainer.ema import EMA

    r = Recipe.from_dict({"name": "old", "ema_decay": 0.999, "batch_size": 128, "d_sigmoid": True})
    assert r.ema_kimg == pytest.approx(88.67, abs=0.01)
    g = torch.nn.Linear(2, 2)
    old = {"module.weight": torch.ones(2, 2), "module.bias": torch.zeros(2), "n_averaged": torch.tensor(5)}
    ema = EMA(g, 1.0, 0.05)
    ema.load_state_dict(old)
    assert torch.equal(ema.module.weight, torch.ones(2, 2))


def test_diffaugment_keeps_shape_and_gradients():
    from trainer.diffaug import diff_augment

    x = torch.rand(4, 3, 64, 64, requires_grad=True)
    y = diff_augment(x, "color,translation,cutout")
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(0)
    cut = diff_augment(torch.ones(2, 3, 64, 64), "cutout")
    assert 0.6 < cut.mean().item() < 0.9  # a 32x32 hole (or what of it lies inside) per image


def test_eval_every_keeps_the_best_generator_by_fid(tmp_path, blobs, monkeypatch):
    monkeypatch.setenv("ANIME_GAN_CACHE", str(fresh_cache(tmp_path / "cache")))
    out = tmp_path / "ev"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(out), "--epochs", "2", "--eval-every", "1",
                 "--eval-n", "6", "--eval-ref-n", "12", *TINY]) == 0
    with open(out / "evals.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epoch"]) for r in rows] == [1, 2] and [int(r["images_seen"]) for r in rows] == [64, 128]
    fids = [float(r["fid"]) for r in rows]
    best = json.loads((out / "generator-best.json").read_text())
    assert best["fid"]["fid"] == pytest.approx(min(fids), abs=1e-3)
    load_generator(out / "Generator-best.pth", out / "generator-best.json")
    from scripts.model_card import curve

    curve(out / "evals.csv", tmp_path / "evals.png")  # README's picture of a run's evaluations
    assert (tmp_path / "evals.png").stat().st_size > 10_000


def test_tradeoff_draws_conditional_runs_and_refuses_unconditional_ones(tmp_path, capsys):
    from scripts.model_card import main as model_card

    head = "epoch,step,images_seen,seconds,fid,class_accuracy\n"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "evals.csv").write_text(head + "0,0,0,0,55.7,0.12\n1,179,22912,580,61.3,0.887\n")
    (tmp_path / "variant.csv").write_text(head + "1,179,22912,700,67.5,0.899\n")
    out = tmp_path / "figs" / "tradeoff.png"
    assert model_card(["tradeoff", str(tmp_path / "run" / "evals.csv"), str(tmp_path / "variant.csv"),
                       "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    (tmp_path / "plain.csv").write_text("epoch,step,images_seen,seconds,fid\n1,10,640,5,80.0\n")
    (tmp_path / "empty.csv").write_text(head)
    bad = tmp_path / "bad.png"
    for csv_file, message in [("plain.csv", "has no class accuracy"), ("empty.csv", "has no evaluations"),
                              ("missing.csv", "No such file")]:
        assert model_card(["tradeoff", str(tmp_path / csv_file), "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not bad.exists() and not list(tmp_path.glob("*.tmp"))


def test_max_minutes_stops_the_run(tmp_path, blobs):
    out = tmp_path / "mm"
    assert main(["--data", str(blobs), "--recipe", "seed-dcgan", "--out", str(out), "--max-minutes", "0.0001",
                 *TINY]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert 1 <= card["steps"] <= 2


def test_batchnorm_recalibration_matches_the_weights():
    from networks import recalibrate_batchnorm

    torch.manual_seed(0)
    g = Generator(16, 8)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(1e4)  # statistics that belong to other weights, as after an EMA
    z = torch.from_numpy(latents(range(512), 16))
    with torch.no_grad():
        target = g.train()(z).std().item()
        grey = g.eval()(z).std().item()
        rng_before = torch.get_rng_state()
        recalibrate_batchnorm(g, batches=4, batch_size=128)
        fixed = g.eval()(z).std().item()
    assert grey < 0.2 * target and abs(fixed - target) < 0.1 * target
    assert torch.equal(rng_before, torch.get_rng_state())  # training randomness untouched


def test_the_step_loop_reads_nothing_back_from_the_device(blobs, tmp_path):
    """Our code in the step (not torch's optimisers) calls no .item()/float()/bool()/tolist():
    on a GPU each of those would wait for it. bench/train_speed.py reports the same count."""

    from bench.train_speed import count_host_reads
    from core.dataset import load_images
    from trainer.options import new_recipe, options_from, parse_args
    from trainer.run_state import RunState
    from trainer.step import apply_schedules, epoch_permutation, real_batch, train_step
    from trainer.data import class_labels

    images, _ = load_images(blobs)
    for recipe in ("seed-dcgan", "best", "wgan-gp", "resnet", "r3", "sngan", "cgan", "cgan-best"):
        args = parse_args(["--data", "x", "--recipe", recipe, *TINY, "--batch-size", "8"])
        r = new_recipe(args)[0]
        t = RunState(r, options_from(args), images, {"path": "x"}, *class_labels(r, images))
        perm = epoch_permutation(len(images), 0, 0)
        with count_host_reads() as reads:
            for i in range(2):
                apply_schedules(t)
                train_step(t, [real_batch(t, perm, (i * t.recipe.n_critic + j) % t.batches_per_epoch)
                               for j in range(t.recipe.n_critic)])
        assert reads == [], (recipe, reads[:3])
        assert np.isfinite(t.sums.numpy()).all()


def test_compile_failure_falls_back_to_eager(blobs, tmp_path, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("compiler exploded")
    monkeypatch.setattr(torch, "compile", broken)
    out = tmp_path / "c"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(out), "--max-steps", "2", "--compile", *TINY]) == 0
    assert "torch.compile failed (RuntimeError: compiler exploded); training eagerly" in caplog.text
    card = json.loads((out / "generator.json").read_text())
    assert card["speed"]["compile"] is False and card["steps"] == 2


@pytest.mark.parametrize("recipe", ["resnet", "r3"])
def test_new_recipes_resume_exactly(tmp_path, blobs, recipe):
    common = ["--data", str(blobs), "--recipe", recipe, *TINY, "--batch-size", "8"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*common, "--out", str(full), "--max-steps", "4"]) == 0
    assert main([*common, "--out", str(part), "--max-steps", "2"]) == 0
    assert main(["--resume", str(part), "--max-steps", "4", *TINY[-3:]]) == 0
    a, b = read_losses(full), read_losses(part)
    assert [r["step"] for r in b] == ["1", "2", "3", "4"]
    for ra, rb in zip(a, b):
        assert float(ra["loss_d"]) == pytest.approx(float(rb["loss_d"]), rel=1e-4, abs=1e-5)


def test_the_cgan_step_scores_three_pairs_and_weighs_them_as_the_report(blobs, monkeypatch):
    """In the training step: D sees (real, its class), (generated, the class it was made for) and
    (real, a wrong class); with the report's BCE the D loss is -log D(real) - 1/2 log(1 - D(fake))
    - 1/2 log(1 - D(wrong)), by hand below from the scores the step used."""
    from core.dataset import load_images
    from trainer import step as S
    from trainer.options import new_recipe, options_from, parse_args
    from trainer.run_state import RunState
    from trainer.data import class_labels

    images, _ = load_images(blobs)
    args = parse_args(["--data", "x", "--recipe", "cgan", *TINY, "--batch-size", "8"])
    r = new_recipe(args)[0]
    s = RunState(r, options_from(args), images, {"path": "x"}, *class_labels(r, images))
    seen = []
    real_groups = S.score_groups

    def recorded(state, groups):
        out = real_groups(state, groups)
        seen.append(([g[1] for g in groups], [o.detach().clone() for o in out]))
        return out
    monkeypatch.setattr(S, "score_groups", recorded)
    perm = S.epoch_permutation(len(images), 0, 0)
    batch = S.real_batch(s, perm, 0)
    S.train_step(s, [batch])
    (classes, (real, fake, wrong)), = seen
    assert torch.equal(classes[0], batch[1]) and torch.equal(classes[1], batch[1])  # fakes made for the reals' classes
    assert (classes[2] != classes[0]).all()                                        # every third pair is wrong
    by_hand = (-torch.log(real).mean() - 0.5 * torch.log(1 - fake).mean() - 0.5 * torch.log(1 - wrong).mean())
    assert s.sums[0].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_the_cgan_resumes_exactly(tmp_path, blobs):
    common = ["--data", str(blobs), "--recipe", "cgan-best", *TINY]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*common, "--out", str(full), "--max-steps", "4"]) == 0
    assert main([*common, "--out", str(part), "--max-steps", "2"]) == 0
    assert main(["--resume", str(part), "--max-steps", "4", *TINY[-3:]]) == 0
    for ra, rb in zip(read_losses(full), read_losses(part)):
        assert float(ra["loss_d"]) == pytest.approx(float(rb["loss_d"]), rel=1e-4, abs=1e-5)
    assert json.loads((part / "generator.json").read_text())["classes"] == json.loads(
        (full / "generator.json").read_text())["classes"]


def test_train_speed_counts_flops_of_every_recipe_with_a_gradient_penalty():
    """torch's FLOP counter tracks modules with backward hooks that torch refuses inside a double
    backward; the bench counts the total without them, so R1/R2 and WGAN-GP recipes are measured."""
    from bench.train_speed import main as train_speed

    rows = train_speed(["--recipes", "r3,wgan-gp", "--steps", "1", "--images", "64", "--device", "cpu",
                        "--batch-size", "4", "--g-width", "8", "--d-width", "8"])
    assert [r["recipe"] for r in rows] == ["r3", "wgan-gp"]
    assert all(r["gflop_per_image"] > 0 and r["images_per_s"] > 0 for r in rows)


def test_train_speed_fp32_is_fp32_where_auto_would_take_bf16(monkeypatch):
    """The side-by-side must time two arithmetics, also on a CPU where the trainer's auto takes bf16."""
    from bench.train_speed import main as train_speed
    from trainer import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "_step_seconds", lambda *a, **k: 1.0 if a[4] else 2.0)  # bf16 "twice as fast"
    rows = train_speed(["--recipes", "best", "--settings", "fp32", "bf16", "tf32", "--steps", "1", "--images", "64",
                        "--device", "cpu", "--batch-size", "4", "--g-width", "8", "--d-width", "8"])
    assert [(r["setting"], r["autocast"]) for r in rows] == [("fp32", "-"), ("bf16", "bf16"), ("tf32", "-")]


def test_a_run_that_changed_its_recipe_says_what_it_changed():
    r = get_recipe("seed-dcgan", lr_g=2e-4, lr_d=2e-4).to_dict()
    assert recipe_changes(r) == {"lr_g": (2e-3, 2e-4), "lr_d": (2e-3, 2e-4)}
    assert describe(r).endswith("Changed in this run: lr_g 0.0002 (recipe: 0.002), lr_d 0.0002 (recipe: 0.002).")
    r["loss_params"] = {"real_label": [0.7, 1.0], "fake_label": [0.0, 0.3]}  # as a JSON card holds it
    assert recipe_changes(r)["loss_params.real_label"] == ((0.7, 1.12), (0.7, 1.0))
    plain = RECIPES["best"].to_dict()
    assert recipe_changes(plain) == {} and describe(plain) == RECIPES["best"].description
    plain["ema_kimg"] = RECIPES["best"].ema_kimg * 1.0001  # an older file's converted half-life: no change
    assert recipe_changes(plain) == {}
    assert describe({"name": "distill", "description": "a student"}) == "a student"  # no named recipe to compare

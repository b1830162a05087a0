"""Objectives: the seed's BCE equals BCELoss (values and gradients), penalties equal hand-computed
figures, and the seed recipe trains through a saturated discriminator without NaN."""
import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from trainer import objectives
from trainer.config import get_recipe
from trainer.objectives import seed_bce

# p from 0 to 1, exact 0 and 1 included (where the old guarded log gave NaN).
P = torch.tensor([0.0, 1e-30, 1e-7, 0.05, 0.3, 0.5, 0.7, 0.95, 1 - 1e-7, 1.0])


def _value_and_grad(fn, target):
    p = P.clone().requires_grad_(True)
    loss = fn(p, target)
    (grad,) = torch.autograd.grad(loss, p)
    return loss.detach(), grad


@pytest.mark.parametrize("target", [0.0, 0.3, 0.7, 1.0])
def test_seed_bce_equals_bce_loss_in_value_and_gradient(target):
    ours, g_ours = _value_and_grad(seed_bce, target)
    ref, g_ref = _value_and_grad(lambda p, t: F.binary_cross_entropy(p, torch.full_like(p, t)), target)
    assert torch.isfinite(ours) and torch.isfinite(g_ours).all()
    assert torch.allclose(ours, ref, rtol=1e-6)
    assert torch.allclose(g_ours, g_ref, rtol=1e-5, atol=1e-12)
    # BCELoss's backward, by hand: (p - y) / max(p (1 - p), 1e-12), over the batch mean.
    by_hand = (P - target) / torch.clamp(P * (1 - P), min=1e-12) / len(P)
    assert torch.allclose(g_ours, by_hand, rtol=1e-5)


def test_seed_bce_above_one_follows_bce_by_linearity():
    l1, g1 = _value_and_grad(seed_bce, 1.0)
    l08, g08 = _value_and_grad(seed_bce, 0.8)
    l112, g112 = _value_and_grad(seed_bce, 1.12)
    assert torch.isfinite(l112) and torch.isfinite(g112).all()
    assert torch.allclose(l112, l1 + 0.6 * (l1 - l08), rtol=1e-6)
    assert torch.allclose(g112, g1 + 0.6 * (g1 - g08), rtol=1e-5, atol=1e-12)
    # A tensor target (drawn on the device) gives the same as a float one.
    assert torch.allclose(seed_bce(P, torch.tensor(1.12)), l112)


def test_seed_bce_gradient_fades_when_d_saturates():
    """A real image scored p = 1.8e-35 (logit -80): BCELoss's gradient on the logit is about -1.8e-23."""
    z = torch.tensor([-80.0], requires_grad=True)
    seed_bce(torch.sigmoid(z), 1.0).backward()
    assert torch.isfinite(z.grad).all() and abs(z.grad.item()) < 1e-20
    z = torch.tensor([40.0], requires_grad=True)  # sigmoid is exactly 1.0 in float32
    seed_bce(torch.sigmoid(z), 0.0).backward()
    assert torch.isfinite(z.grad).all()


def _discs(folder, n=48):
    """Flat colours with one disc each: D tells real from fake at once."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[:64, :64]
    folder.mkdir()
    for i in range(n):
        img = np.empty((64, 64, 3), np.uint8)
        img[:] = rng.randint(0, 256, 3)
        cy, cx = rng.randint(16, 48, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.randint(6, 20) ** 2] = rng.randint(0, 256, 3)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def test_a_run_whose_d_saturates_for_good_stops_saved_with_a_clear_error(tmp_path, capsys):
    """The report's recipe on flat discs: D says exactly 1 of every image from step 2 on, where the
    sigmoid's gradient is zero (it never recovers: checked for 36 steps). Before the BCE fix this
    was NaN at step 3; now the trainer stops after three such reads, saved, and says why."""
    from trainer.train import main

    out = tmp_path / "seed"
    assert main(["--data", str(_discs(tmp_path / "discs")), "--recipe", "seed-dcgan", "--out", str(out),
                 "--g-width", "32", "--batch-size", "16", "--max-steps", "36", "--log-every", "1", "--quiet",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "error: D saturated: it gave every real and fake image exactly 1 for 3 steps up to step 4" in err
    assert "--lr 2e-4" in err
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("loss_d", "loss_g", "d_real", "d_fake"))
    assert all(float(r["d_real"]) == float(r["d_fake"]) == 1.0 for r in rows[1:])
    assert (out / "Generator.pth").is_file() and torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def test_saturation_means_exactly_zero_or_one_from_a_d_that_gives_probabilities():
    from trainer.checks import saturated

    assert saturated(True, {"d_real": 1.0, "d_fake": 1.0}) == "every real and fake image exactly 1"
    assert saturated(True, {"d_real": 1.0, "d_fake": 0.0}) == "every real image exactly 1 and every fake exactly 0"
    assert saturated(True, {"d_real": 0.9999999, "d_fake": 1.0}) is None  # one image still has a gradient
    assert saturated(False, {"d_real": 1.0, "d_fake": 1.0}) is None  # hinge scores: 1.0 is just a score


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_d_probabilities_stay_below_one_in_bf16(arch):
    """bf16 rounds sigmoid(8) to exactly 1, where BCE's gradient vanishes; D's sigmoid runs in float32."""
    from networks import DISCRIMINATORS

    d = DISCRIMINATORS[arch](width=8, norm="none", sigmoid=True)
    last = d.net[-1] if arch == "dcgan" else d.score
    with torch.no_grad():  # every image's logit is 8
        last.bias.fill_(8.0)
        last.weight.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = d(torch.randn(2, 3, 64, 64))
        loss = seed_bce(p, 0.0)
    loss.backward()
    assert p.dtype == torch.float32 and (p < 1).all() and p[0].item() == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item())
    assert last.bias.grad.abs().item() > 0.9  # d/dlogit of -log(1 - p) is p: strong, not zero


def test_r1_r2_penalty_matches_a_hand_computed_value():
    """For D(x) = sum(w * x), grad_x D = w for every sample, so R1 = gamma/2 * ||w||^2."""
    w = torch.arange(12, dtype=torch.float32).reshape(1, 3, 2, 2) / 10

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1)
    r = get_recipe("r3", loss_params={"r1_gamma": 0.5, "r2_gamma": 0.25, "reg_every": 1})
    obj = objectives.objective_for(r)
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    pen = obj.d_penalty(Linear(), real, fake, step=0)
    expected = (0.5 / 2 + 0.25 / 2) * float((w ** 2).sum())
    assert pen.item() == pytest.approx(expected, rel=1e-6)
    lazy = objectives.objective_for(get_recipe("r3", loss_params={"r1_gamma": 0.5, "r2_gamma": 0.25, "reg_every": 4}))
    assert lazy.d_penalty(Linear(), real, fake, step=1) is None
    assert lazy.d_penalty(Linear(), real, fake, step=8).item() == pytest.approx(4 * expected, rel=1e-6)


def test_gradient_penalty_matches_a_hand_computed_value():
    """For D(x) = sum(w * x), ||grad|| = ||w|| everywhere: GP = lambda * (||w|| - 1)^2."""
    w = torch.full((1, 3, 2, 2), 0.5)

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1)
    obj = objectives.objective_for(get_recipe("wgan-gp"))
    pen = obj.d_penalty(Linear(), torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2), step=0)
    assert pen.item() == pytest.approx(10 * (math.sqrt(12 * 0.25) - 1) ** 2, rel=1e-5)


def test_rpgan_losses_are_relativistic():
    obj = objectives.objective_for(get_recipe("r3"))
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    assert obj.d_loss(real, fake).item() == pytest.approx(float(F.softplus(torch.tensor([-2.0, 0.0])).mean()))
    asked = []
    assert obj.g_loss(fake, lambda: asked.append(1) or real).item() == pytest.approx(
        float(F.softplus(torch.tensor([2.0, 0.0])).mean()))
    assert asked == [1]  # the relativistic G term scores the real batch itself
    hinge = objectives.objective_for(get_recipe("best"))
    assert hinge.g_loss(fake, lambda: pytest.fail("hinge's G loss needs no real scores")).item() == 0.0


def test_wgan_clips_after_each_d_step():
    d = torch.nn.Linear(4, 1)
    torch.nn.init.constant_(d.weight, 1.0)
    objectives.objective_for(get_recipe("wgan")).after_d_step(d)
    assert d.weight.abs().max().item() == pytest.approx(0.01)


def test_unknown_loss_is_a_clear_error():
    from core.errors import UserError

    with pytest.raises(UserError, match="unknown loss 'bce'"):
        objectives.objective_for(get_recipe("best", loss="bce"))
    with pytest.raises(UserError, match="loss hinge has no parameter gp_lambda"):
        objectives.objective_for(get_recipe("best", loss_params={"gp_lambda": 1.0}))


def test_each_loss_owns_its_flags():
    """Every objective's Params field is a trainer flag; a flag of another loss is a one-line error."""
    from core.errors import UserError
    from trainer.options import new_recipe, parse_args

    r = new_recipe(parse_args(["--data", "x", "--recipe", "r3", "--r1-gamma", "0.5", "--reg-every", "4"]))[0]
    assert r.loss_params == {"r1_gamma": 0.5, "r2_gamma": 2.0, "reg_every": 4}
    r = new_recipe(parse_args(["--data", "x", "--recipe", "seed-dcgan", "--real-label", "0.9,1.0"]))[0]
    assert r.loss_params["real_label"] == (0.9, 1.0) and r.loss_params["fake_label"] == (0.0, 0.3)
    with pytest.raises(UserError, match="--gp-lambda is a parameter of loss wgan-gp, not of hinge"):
        new_recipe(parse_args(["--data", "x", "--recipe", "best", "--gp-lambda", "5"]))[0]


def test_old_flat_recipes_move_their_loss_fields():
    from trainer.config import Recipe

    r = Recipe.from_dict({"name": "old", "loss": "rpgan", "r1_gamma": 0.05, "r2_gamma": 0.05, "reg_every": 4,
                          "clip": 0.0, "gp_lambda": 0.0, "real_label": [1.0, 1.0]})
    assert r.loss_params == {"r1_gamma": 0.05, "r2_gamma": 0.05, "reg_every": 4}
    assert objectives.objective_for(r).p.reg_every == 4


def test_three_pair_loss_matches_a_hand_computation():
    """The seed report's CGAN: D's loss is the real pair's term plus half the generated pair's and
    half the wrong-class pair's (mismatch 0.5), here with BCE on hand-picked probabilities."""
    from trainer.step import score_groups  # noqa: F401  (the trainer's path; checked end to end below)

    obj = objectives.objective_for(get_recipe("cgan"))
    real, fake, wrong = torch.tensor([0.9, 0.6]), torch.tensor([0.2, 0.4]), torch.tensor([0.7, 0.1])
    m = get_recipe("cgan").mismatch
    loss = (1 - m) * obj.d_loss(real, fake) + m * obj.d_loss(real, wrong)
    by_hand = (-(math.log(0.9) + math.log(0.6)) / 2
               - 0.5 * (math.log(0.8) + math.log(0.6)) / 2 - 0.5 * (math.log(0.3) + math.log(0.9)) / 2)
    assert m == 0.5 and loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_schedules_follow_a_cosine_then_hold():
    from types import SimpleNamespace

    from trainer.step import apply_schedules

    r = get_recipe("r3")
    obj = objectives.objective_for(r)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0, betas=(0.0, 0.5))
    s = SimpleNamespace(recipe=r, objective=obj, opt_g=opt, opt_d=opt, images_seen=0)
    apply_schedules(s)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4) and obj.p.r1_gamma == pytest.approx(2.0)
    assert opt.param_groups[0]["betas"] == (0.0, pytest.approx(0.9))
    s.images_seen = 10_000_000  # halfway: the cosine's midpoint
    apply_schedules(s)
    assert obj.p.r1_gamma == pytest.approx(1.1) and opt.param_groups[0]["lr"] == pytest.approx(1.25e-4)
    s.images_seen = 10**9  # past the end: held
    apply_schedules(s)
    assert obj.p.r2_gamma == pytest.approx(0.2) and opt.param_groups[0]["betas"][1] == pytest.approx(0.99)

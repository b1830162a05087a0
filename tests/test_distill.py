"""Distillation into a narrower generator: the pruned start keeps the teacher's live channels, a
resumed run continues exactly, the command writes a run folder export takes, and bad teachers are
one-line errors."""
import json

import pytest
import torch

from core.errors import UserError
from trainer.distill.__main__ import main
from trainer.distill.run import DistillOptions, Distillation
from trainer.distill.pruning import features, pruned_student
from networks.dcgan import Generator


def test_a_pruned_student_is_the_teacher_when_the_dropped_channels_are_dead():
    """Half of every hidden layer's channels silenced (BatchNorm gain and bias 0: ReLU gives 0): the
    ranking keeps exactly the live half and, with batch statistics as in training, the student then
    computes the teacher's images and its kept features."""
    torch.manual_seed(0)
    teacher = Generator(z_dim=16, width=8)
    dead = []
    with torch.no_grad():
        for bn in (m for m in teacher.net if isinstance(m, torch.nn.BatchNorm2d)):
            bn.bias.fill_(0.5)  # every live channel surely active, whatever the random weights
            idx = torch.randperm(bn.num_features)[: bn.num_features // 2]
            bn.weight[idx], bn.bias[idx] = 0.0, 0.0
            dead.append(set(idx.tolist()))
    student, kept = pruned_student(teacher.eval(), width=4, probe_n=64)
    assert [len(k) for k in kept] == [32, 16, 8, 4]
    for k, d in zip(kept, dead):
        assert not set(k.tolist()) & d  # only live channels kept
        assert torch.equal(k, torch.sort(k).values)
    teacher.train()
    student.train()
    z = torch.randn(32, 16)
    with torch.no_grad():
        *t_feats, t_img = features(teacher, z, None)
        *s_feats, s_img = features(student, z, None)
    assert s_img.shape == t_img.shape == (32, 3, 64, 64)
    assert torch.allclose(s_img, t_img, atol=1e-4), (s_img - t_img).abs().max()
    for s, t, k in zip(s_feats, t_feats, kept):
        assert torch.allclose(s, t[:, k], atol=1e-4)


def test_pruning_refuses_what_it_cannot_prune():
    with pytest.raises(UserError, match="smaller width"):
        pruned_student(Generator(z_dim=16, width=8), width=8, probe_n=8)
    with pytest.raises(UserError, match="without class norms"):
        pruned_student(Generator(z_dim=16, width=8, n_classes=3, class_norm=True), width=4, probe_n=8)


def test_a_conditional_teacher_gives_a_conditional_student_that_keeps_every_class():
    """The class inputs are pruned like z's: with half of each layer dead, the student computes the
    teacher's images for every class, and its first layer keeps the class rows."""
    torch.manual_seed(1)
    teacher = Generator(z_dim=16, width=8, n_classes=3)
    with torch.no_grad():
        for bn in (m for m in teacher.net if isinstance(m, torch.nn.BatchNorm2d)):
            bn.bias.fill_(0.5)
            idx = torch.randperm(bn.num_features)[: bn.num_features // 2]
            bn.weight[idx], bn.bias[idx] = 0.0, 0.0
    student, kept = pruned_student(teacher.eval(), width=4, probe_n=64)
    assert student.arch() == {"name": "dcgan", "z_dim": 16, "g_width": 4, "n_classes": 3}
    assert torch.equal(student.net[0].weight[16:], teacher.net[0].weight[16:][:, kept[0]])  # the class rows
    teacher.train()
    student.train()
    z = torch.randn(30, 16)
    for k in range(3):
        y = torch.full((30,), k)
        with torch.no_grad():
            t, s = teacher(z, y), student(z, y)
        assert torch.allclose(s, t, atol=1e-4), (k, (s - t).abs().max())
    with torch.no_grad():  # and the classes matter: another class is another image
        assert (teacher(z, torch.zeros(30, dtype=torch.long)) - teacher(z, torch.ones(30, dtype=torch.long))).abs().max() > 1e-3


def _straight_and_resumed(cfg: DistillOptions) -> tuple[Distillation, Distillation, list[dict]]:
    """Four steps in one go; and two steps, a new run from that checkpoint, two more (with their
    loss rows)."""
    straight = Distillation(cfg, torch.device("cpu"))
    for _ in range(4):
        straight.train_step()
    first = Distillation(cfg, torch.device("cpu"))
    for _ in range(2):
        first.train_step()
    second = Distillation(cfg, torch.device("cpu"), first.state_dict())
    return straight, second, [second.train_step() for _ in range(2)]


def test_a_resumed_distillation_continues_exactly(tiny_run):
    """Two steps, checkpoint, a new run from it, two more: the same weights as four in one go
    (training latents, optimiser moments and counters all come back)."""
    cfg = DistillOptions(teacher=str(tiny_run / "Generator.pth"), g_width=4, kimg=1.0, batch_size=8)
    straight, second, losses = _straight_and_resumed(cfg)
    assert (second.step, second.images_seen) == (4, 32)
    assert all(row["loss_pixels"] > 0 and row["loss_features"] > 0 for row in losses)
    assert all(row["loss_adv"] == row["loss_d"] == 0 for row in losses)  # no discriminator unless asked
    for (name, a), b in zip(straight.student.state_dict().items(), second.student.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_command_writes_a_run_that_exports(tiny_run, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["--teacher", str(tiny_run), "--g-width", "4", "--out", str(out), "--kimg", "0.4",
                 "--batch-size", "8", "--lr", "3e-3"]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert card["arch"] == {"name": "dcgan", "z_dim": 100, "g_width": 4}
    assert card["recipe"]["name"] == "distill" and card["teacher"]["recipe"]["name"] == "seed-dcgan"
    assert (card["steps"], card["images_seen"]) == (50, 400)
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["step", "images_seen", "loss_pixels", "loss_features"] and len(rows) == 2
    assert (out / "losses.png").is_file() and (out / "samples" / "step_0000050.png").is_file()
    # The student's Generator.pth is what export and evaluation read: it loads and draws faces.
    from networks.files import load_generator

    g, _ = load_generator(out)
    with torch.no_grad():
        img = g(torch.randn(2, 100))
    assert img.shape == (2, 3, 64, 64) and float(img.std()) > 0
    # A second start into the same folder is refused; --resume of a finished run changes nothing.
    assert main(["--teacher", str(tiny_run), "--g-width", "4", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["--resume", str(out)]) == 0
    assert json.loads((out / "generator.json").read_text())["steps"] == 50


def test_the_command_needs_a_teacher_or_a_run(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "--teacher" in capsys.readouterr().err


def _adversarial(tiny_run, **kw) -> DistillOptions:
    return DistillOptions(teacher=str(tiny_run / "Generator.pth"), g_width=4, kimg=1.0, batch_size=8, d_width=4, **kw)


def test_the_discriminator_reaches_the_student_only_after_its_warm_up(tiny_run):
    """While D warms up, the student learns exactly what it learns without D (same latents, same
    steps), and D itself learns; once its term is on, the student's steps differ."""
    plain = Distillation(_adversarial(tiny_run), torch.device("cpu"))
    adv = Distillation(_adversarial(tiny_run, adv_weight=0.5, d_warmup_kimg=0.016), torch.device("cpu"))
    assert plain.adversary is None and adv.adversary is not None
    d0 = {k: v.clone() for k, v in adv.adversary.d.state_dict().items()}
    for _ in range(2):  # 16 images: the warm-up
        plain.train_step()
        row = adv.train_step()
    assert row["loss_d"] > 0 and row["loss_adv"] != 0
    for (name, a), b in zip(plain.student.state_dict().items(), adv.student.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(d0[k], v) for k, v in adv.adversary.d.state_dict().items())
    plain.train_step()
    adv.train_step()
    assert not torch.equal(plain.student.net[0].weight, adv.student.net[0].weight)


def test_a_resumed_adversarial_distillation_continues_exactly(tiny_run):
    """D and its optimiser are in checkpoint.pt: two steps, a new run from the checkpoint, two more
    give the weights of four in one go, the student's and D's."""
    straight, second, _ = _straight_and_resumed(_adversarial(tiny_run, adv_weight=0.5))
    for one, other in ((straight.student, second.student), (straight.adversary.d, second.adversary.d)):
        for (name, a), b in zip(one.state_dict().items(), other.state_dict().values()):
            assert torch.equal(a, b), name


def test_a_student_can_start_from_an_earlier_student(tiny_run, tmp_path):
    """--student: the run starts from that generator's weights (and norms), not the pruned copy; a
    student of another width is a one-line error."""
    out = tmp_path / "first"
    assert main(["--teacher", str(tiny_run), "--g-width", "4", "--out", str(out), "--kimg", "0.08",
                 "--batch-size", "8", "--lr", "3e-3"]) == 0
    earlier = torch.load(out / "Generator.pth", weights_only=True)
    again = Distillation(DistillOptions(teacher=str(tiny_run), g_width=4, student=str(out)), torch.device("cpu"))
    fresh = Distillation(DistillOptions(teacher=str(tiny_run), g_width=4), torch.device("cpu"))
    state = again.student.state_dict()
    assert all(torch.equal(state[k], v) for k, v in earlier.items())
    assert not torch.equal(state["net.0.weight"], fresh.student.state_dict()["net.0.weight"])
    with pytest.raises(UserError, match="not the student"):
        Distillation(DistillOptions(teacher=str(tiny_run), g_width=2, student=str(out)), torch.device("cpu"))
    for wrong in (str(tmp_path / "none.onnx"), str(tiny_run)):  # no such file; the teacher, width 8
        assert main(["--teacher", str(tiny_run), "--student", wrong, "--g-width", "4", "--out", str(tmp_path / "no")]) == 2
        assert not (tmp_path / "no").exists()  # refused before the run folder is made
    second = tmp_path / "second"
    assert main(["--teacher", str(tiny_run), "--student", str(out), "--g-width", "4", "--out", str(second),
                 "--kimg", "0.016", "--batch-size", "8", "--adv-weight", "0.5", "--d-width", "4"]) == 0
    card = json.loads((second / "generator.json").read_text())
    assert card["recipe"]["adv_weight"] == 0.5 and card["recipe"]["student"] == str(out)
    assert "an earlier student" in card["recipe"]["description"] and "hinge D" in card["recipe"]["description"]
    # A resume takes the student from its checkpoint: the --student file need not be there any more.
    (out / "Generator.pth").rename(tmp_path / "moved.pth")
    assert main(["--resume", str(second)]) == 0

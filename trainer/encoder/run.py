"""An encoder's training: the generator's own faces as data (z -> G(z)), no real images.

    run = EncoderRun(EncoderOptions(generator="demo/models/generator.onnx"), torch.device("cpu"))
    train(run, Path("runs/encoder-generator"))

Each step draws latents (and, for a conditional generator, classes with the training data's
frequencies), makes their faces with the frozen generator, and teaches the encoder to read the
latent back: a latent loss (mean squared error), a class loss (cross-entropy) and an image loss (the
generator's face of the encoder's latent against the face it read, L1, on part of each batch: it
costs a pass through the generator and back). Adam with a cosine to 0 over the run.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core.files import sha256_file
from core.seeds import latents, seed_range
from networks.encoder import Encoder
from networks.files import save_json, save_torch
from trainer.finetune.sources import load_generator_source
from trainer.run_files import LossLog, device_name, parameter_count

log = logging.getLogger("trainer")
LOSS_FIELDS = ["step", "images_seen", "loss_latent", "loss_image", "loss_class", "lr", "images_per_s"]


@dataclasses.dataclass
class EncoderOptions:
    """Everything that shapes the run; stored in checkpoint.pt and encoder.json."""
    generator: str
    kimg: float = 100.0          # thousands of the generator's faces in the whole run
    batch_size: int = 64
    image_share: float = 0.25    # part of each batch that also gets the image loss
    image_weight: float = 1.0
    lr: float = 1e-3
    width: int = 32
    seed: int = 0


def generator_sha256(path: str | Path) -> str:
    """The hash the encoder's file records: of the model file, or of a run folder's Generator.pth."""
    p = Path(path)
    return sha256_file(p / "Generator.pth" if p.is_dir() else p)


class EncoderRun:
    def __init__(self, cfg: EncoderOptions, device: torch.device, state: dict | None = None):
        self.cfg, self.device = cfg, device
        self.g, self.g_card = load_generator_source(cfg.generator)
        self.g.to(device).requires_grad_(False)
        self.n_classes = getattr(self.g, "n_classes", 0)
        counts = self.g_card.get("class_counts") or [1.0] * self.n_classes
        self.class_weights = torch.tensor(counts, dtype=torch.float) if self.n_classes else None
        torch.manual_seed(cfg.seed)
        self.e = Encoder(self.g.z_dim, self.n_classes, cfg.width).to(device)
        self.opt = torch.optim.Adam(self.e.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.rng = torch.Generator().manual_seed(cfg.seed)  # training latents on the CPU: the same on any device
        self.step, self.images_seen, self.seconds = 0, 0, 0.0
        self.generator_sha256 = generator_sha256(cfg.generator)
        self.interrupted = 0
        if state is not None:
            self.e.load_state_dict(state["encoder"])
            self.opt.load_state_dict(state["opt"])
            self.rng.set_state(state["rng"])
            self.step, self.images_seen, self.seconds = state["step"], state["images_seen"], state["seconds"]

    def lr(self) -> float:
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, self.images_seen / (self.cfg.kimg * 1000))))

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, self.g.z_dim, generator=self.rng)
        y = torch.multinomial(self.class_weights, n, replacement=True, generator=self.rng) if self.n_classes else None
        return z.to(self.device), None if y is None else y.to(self.device)

    def train_step(self) -> dict:
        for group in self.opt.param_groups:
            group["lr"] = self.lr()
        z, y = self.batch(self.cfg.batch_size)
        with torch.no_grad():
            x = self.g(z, y)
        z_hat, logits = self.e(x)
        loss_latent = F.mse_loss(z_hat, z)
        loss_class = F.cross_entropy(logits, y) if self.n_classes else torch.zeros((), device=self.device)
        k = max(1, int(self.cfg.batch_size * self.cfg.image_share)) if self.cfg.image_share > 0 else 0
        loss_image = (F.l1_loss(self.g(z_hat[:k], None if y is None else y[:k]), x[:k]) if k
                      else torch.zeros((), device=self.device))
        loss = loss_latent + loss_class + self.cfg.image_weight * loss_image
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.images_seen += self.cfg.batch_size
        return {"loss_latent": loss_latent.item(), "loss_image": loss_image.item(), "loss_class": loss_class.item()}

    @torch.no_grad()
    def held_out(self, n: int = 256) -> dict:
        """How well the encoder reads faces it never trained on (seeds of the 'inversion' range)."""
        self.e.eval()
        z = torch.from_numpy(latents(seed_range("inversion", n), self.g.z_dim)).to(self.device)
        y = (torch.arange(n, device=self.device) % self.n_classes) if self.n_classes else None
        x = self.g(z, y)
        z_hat, logits = self.e(x)
        x_hat = self.g(z_hat, logits.argmax(1) if self.n_classes else None)
        self.e.train()
        mse = F.mse_loss(x_hat, x).item() / 4  # images in [-1, 1]: a quarter of it in [0, 1] units
        out = {"latent_mse": round(F.mse_loss(z_hat, z).item(), 5), "psnr_db": round(10 * math.log10(1 / max(mse, 1e-12)), 2)}
        if self.n_classes:
            out["class_accuracy"] = round((logits.argmax(1) == y).float().mean().item(), 4)
        return out

    def state_dict(self) -> dict:
        return {"options": dataclasses.asdict(self.cfg), "encoder": self.e.state_dict(), "opt": self.opt.state_dict(),
                "rng": self.rng.get_state(), "step": self.step, "images_seen": self.images_seen, "seconds": self.seconds}

    def card(self) -> dict:
        """encoder.json: what the encoder reads, which generator it belongs to, how it was trained."""
        return {"arch": self.e.arch(), "generator": {"name": Path(self.cfg.generator).name, "sha256": self.generator_sha256,
                                                     "arch": self.g.arch()},
                "classes": self.g_card.get("classes") or [], "options": dataclasses.asdict(self.cfg),
                "steps": self.step, "images_seen": self.images_seen, "seconds": round(self.seconds, 1),
                "parameters": parameter_count(self.e), "hardware": device_name(self.device), "torch": torch.__version__}


def save(run: EncoderRun, out: Path, losses: LossLog) -> dict:
    """Write the run's files; returns the held-out figures that encoder.json records."""
    out.mkdir(parents=True, exist_ok=True)
    save_torch(run.state_dict(), out / "checkpoint.pt")
    save_torch({k: v.detach().cpu() for k, v in run.e.state_dict().items()}, out / "Encoder.pth")
    held_out = run.held_out()
    save_json({**run.card(), "held_out": held_out}, out / "encoder.json")
    losses.plot(out / "losses.png", "encoder")
    return held_out


def train(run: EncoderRun, out: Path, time_limit: float = 0.0, log_every: int = 50, save_every_s: float = 600.0) -> dict:
    """Train until the run's kimg, a stop signal or time_limit minutes; save. Returns the held-out figures."""
    out.mkdir(parents=True, exist_ok=True)
    losses = LossLog(out / "losses.csv", run.step, fields=LOSS_FIELDS,
                     curves=(("loss_latent", "latent MSE"), ("loss_image", "image L1")))
    total, start, last_save = int(run.cfg.kimg * 1000), time.time(), time.time()
    seen0, trained_s = run.images_seen, 0.0
    while run.images_seen < total and not run.interrupted:
        tick = time.time()
        row = run.train_step()
        now = time.time()
        run.seconds += now - tick
        trained_s += now - tick
        if run.step % log_every == 0:
            speed = (run.images_seen - seen0) / max(trained_s, 1e-9)
            losses.append({"step": run.step, "images_seen": run.images_seen, **row, "lr": run.lr(), "images_per_s": speed})
            log.info("step %d, %d faces: latent MSE %.4f, image L1 %.4f%s, %.0f faces/s", run.step, run.images_seen,
                     row["loss_latent"], row["loss_image"],
                     f", class {row['loss_class']:.3f}" if run.n_classes else "", speed)
        if now - last_save > save_every_s:
            save(run, out, losses)
            last_save = time.time()
        if time_limit and now - start > time_limit * 60:
            break
    return save(run, out, losses)

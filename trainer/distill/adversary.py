"""A discriminator beside a loss that has none: trainer.distill's adversarial term.

The `best` recipe's D and loss (spectral-norm DCGAN D, hinge, Adam with betas (0, 0.9)) learn to tell
reference images (a teacher's faces) from generated ones (a student's) drawn for the same latents;
the generator's term is the hinge generator loss through the D just updated. A conditional D sees
the class as one-hot planes beside the image, as the conditional recipes' D does.
"""
from __future__ import annotations

import torch

from networks import DISCRIMINATORS
from trainer.config import RECIPES
from trainer.objectives import objective_for

RECIPE = RECIPES["best"]


class Adversary:
    """D, its optimiser and its loss; state_dict() goes into the run's checkpoint."""

    def __init__(self, width: int, lr: float, n_classes: int, seed: int, device: torch.device):
        self.objective = objective_for(RECIPE)
        with torch.random.fork_rng(devices=[]):  # D's start (weights, spectral norm's vectors) from the run's seed
            torch.manual_seed(seed)
            self.d = DISCRIMINATORS[RECIPE.d_arch](width, RECIPE.d_norm, n_classes=n_classes)
            self.d.initialise()
        self.d.to(device).train()
        self.opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(RECIPE.beta1, RECIPE.beta2))

    def step(self, fake: torch.Tensor, real: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """One D step (`real` real, `fake` detached as fake), then the generator's loss on `fake`
        through the updated D: (that loss, with its graph; D's loss)."""
        self.d.requires_grad_(True)
        d_loss = self.objective.d_loss(self.d(real, y), self.d(fake.detach(), y))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt.step()
        self.d.requires_grad_(False)  # the generator's backward needs D's input gradients only
        return self.objective.g_loss(self.d(fake, y), None), d_loss.item()

    def state_dict(self) -> dict:
        return {"d": self.d.state_dict(), "opt_d": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.d.load_state_dict(state["d"])
        self.opt.load_state_dict(state["opt_d"])

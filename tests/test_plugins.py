"""A new architecture is its module alone: a toy generator registered from a module outside the
package trains, exports with parity and runs in the torch-free runtime, with no other file touched."""
import sys
import textwrap

import numpy as np

TOY = '''
import torch
from torch import nn

from networks.common import GENERATORS


@GENERATORS.register("toy")
class Toy(nn.Module):
    """z -> a linear layer to a 4x4 image, nearest upsampling to 64x64, tanh."""

    def __init__(self, z_dim=100, n_classes=0):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.fc = nn.Linear(z_dim, 3 * 4 * 4)

    @classmethod
    def from_recipe(cls, r, n_classes=0):
        return cls(r.z_dim, n_classes)

    @classmethod
    def from_arch(cls, arch):
        return cls(int(arch["z_dim"]))

    def arch(self):
        return {"name": "toy", "z_dim": self.z_dim}

    def forward(self, z, y=None):
        x = self.fc(z.reshape(-1, self.z_dim)).reshape(-1, 3, 4, 4)
        return torch.tanh(nn.functional.interpolate(x, scale_factor=16.0, mode="nearest"))
'''


def test_a_toy_architecture_goes_through_training_export_and_the_runtime(tmp_path, blobs, monkeypatch):
    (tmp_path / "toy_arch.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_arch  # noqa: F401  (registers "toy")

    from export.to_onnx import main as export
    from runtime.engine import Engine
    from networks import GENERATORS
    from trainer.train import main as train

    try:
        assert "toy" in GENERATORS and {"dcgan", "resnet"} <= set(GENERATORS)  # the folder's modules, found
        run = tmp_path / "run"
        assert train(["--data", str(blobs), "--recipe", "best", "--g-arch", "toy", "--d-width", "8",
                      "--batch-size", "16", "--max-steps", "2", "--out", str(run), "--quiet"]) == 0
        assert export(["--checkpoint", str(run), "--out", str(tmp_path / "toy.onnx"), "--fp16"]) == 0
        e = Engine.load(tmp_path / "toy.onnx", "cpu")
        faces = e.faces([1, 2, 3])
        assert faces.shape == (3, 64, 64, 3) and e.about()["architecture"]["name"] == "toy"
        assert not np.array_equal(faces[0], faces[1])
    finally:
        GENERATORS._items.pop("toy", None)
        sys.modules.pop("toy_arch", None)

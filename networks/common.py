"""Pieces every network shares: the registries, class inputs, DCGAN initialisation, spectral norm
that stays in fp32 under autocast, BatchNorm folding for export, and BatchNorm recalibration after
an EMA."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from core.errors import UserError
from core.registry import Registry
from core.seeds import latents, seed_range

GENERATORS: Registry[type] = Registry("generator architecture")
DISCRIMINATORS: Registry[type] = Registry("discriminator architecture")


class ClassInput(nn.Module):
    """Class indices [B] -> one-hot rows [B, n] (a Gather from an identity matrix, which every
    ONNX runtime runs); a network with n = 0 classes takes none."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n = n_classes
        self.register_buffer("eye", torch.eye(max(1, n_classes)), persistent=False)

    def forward(self, y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if self.n == 0:
            return None
        if y is None:
            raise ValueError(f"this network is conditional ({self.n} classes): pass the class of every sample")
        return self.eye[y.reshape(batch)]


class ClassAffine(nn.Module):
    """A gain and a bias per class, applied per channel (what remains of a conditional BatchNorm
    once its statistics are folded into the convolution before it)."""

    conditional = True

    def __init__(self, gain: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.gain, self.bias = nn.Parameter(gain), nn.Parameter(bias)

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return x * (onehot @ self.gain)[:, :, None, None] + (onehot @ self.bias)[:, :, None, None]


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine, then a per-class gain (starting at 1) and bias (at 0).
    Export folds `bn` into the convolution before it and keeps the ClassAffine (see `folded`)."""

    conditional = True

    def __init__(self, ch: int, n_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.affine = ClassAffine(torch.ones(n_classes, ch), torch.zeros(n_classes, ch))

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.affine(self.bn(x), onehot)

    def folded(self) -> ClassAffine:
        return self.affine


def apply_norm(norm: nn.Module, x: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
    """A norm layer on x, with the class rows when it is a class-conditional one."""
    return norm(x, onehot) if getattr(norm, "conditional", False) else norm(x)


def conditional_key(key: str) -> str:
    """The plain BatchNorm's name for a ConditionalBatchNorm's tensor (for adopt_weights): its
    statistics and per-class affine come from the plain norm's statistics and affine."""
    return key.replace(".bn.", ".").replace(".affine.gain", ".weight").replace(".affine.bias", ".bias")


@torch.no_grad()
def adopt_weights(net: nn.Module, source: dict[str, torch.Tensor], source_key: Callable[[str], str] = lambda k: k,
                  strict: bool = True) -> list[str]:
    """Load another network's weights into `net` where the two differ only by class inputs, so that
    before any training step `net` computes the source's function for every class:

    - a tensor of the same shape is copied;
    - a tensor larger along one axis (class channels appended after z in G's first layer, or after the
      image's channels in D's; spectral norm's `_v` of such a layer) gets the source in its leading
      part and zeros in the rest: the class inputs start with weight 0 and add nothing;
    - a per-class gain or bias [n_classes, C] of a conditional BatchNorm gets the source BatchNorm's
      [C] in every row: every class starts with the unconditional norm.

    `source_key` maps a key of `net` to the source's (architectures whose conditional layers are named
    apart). With strict, every tensor of `net` must come from the source (a generator: equality is
    the promise); otherwise tensors without a source keep their fresh initialisation. Returns the
    keys that were widened or kept fresh. Any other mismatch is a one-line UserError.
    """
    target = net.state_dict()
    out, changed = {}, []
    for key, t in target.items():
        src = source.get(source_key(key))
        if src is None:
            if strict:
                raise UserError(f"the source weights have no {source_key(key)!r} for this network's {key!r}")
            out[key] = t
            changed.append(f"{key} (new)")
            continue
        src = src.to(t.dtype)
        if src.shape == t.shape:
            out[key] = src
            continue
        grown = [i for i in range(t.dim()) if t.dim() == src.dim() and t.shape[i] != src.shape[i]]
        if len(grown) == 1 and t.shape[grown[0]] > src.shape[grown[0]]:
            wide = torch.zeros_like(t)
            wide.narrow(grown[0], 0, src.shape[grown[0]]).copy_(src)
            out[key] = wide
        elif t.dim() == 2 and src.dim() == 1 and t.shape[1] == src.shape[0]:
            out[key] = src.expand_as(t).clone()
        else:
            raise UserError(f"the source's {source_key(key)!r} {tuple(src.shape)} does not fit this network's "
                            f"{key!r} {tuple(t.shape)}: a different architecture or width")
        changed.append(key)
    net.load_state_dict(out)
    return changed


def refuse(arch: str, option: str, value: object) -> None:
    """One-line error for a recipe option an architecture does not have."""
    raise UserError(f"the {arch} networks do not take {option}={value!r}")


class _SpectralNormFP32(_SpectralNorm):
    """torch's spectral norm with its power iteration and sigma in float32 even inside a bf16
    autocast region (autocast would run torch.mv in bf16, which blurs sigma). Same state_dict keys
    as torch.nn.utils.parametrizations.spectral_norm, so older checkpoints load."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            return super().forward(weight.float()).to(weight.dtype)


def probability(score: torch.Tensor) -> torch.Tensor:
    """D's score [B] -> probability [B], in float32 even inside a bf16 autocast region."""
    # bf16 rounds every probability above 0.998 (a logit above about 6) to exactly 1, where
    # BCE's gradient is zero: D would stop learning from the fakes it is most wrong about.
    # float32 keeps them apart up to a logit of about 17.
    return torch.sigmoid(score.float())


def spectral_norm(module: nn.Module) -> nn.Module:
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    parametrize.register_parametrization(module, "weight", _SpectralNormFP32(module.weight, 1, dim, 1e-12))
    return module


def weight_of(module: nn.Module) -> torch.Tensor:
    """The trainable weight tensor, under a spectral-norm parametrization or not."""
    return module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight") else module.weight


def init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm weights N(1, 0.02); conv biases keep
    PyTorch's default initialisation, as in the seed report."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(weight_of(module), 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:  # not a conditional norm's
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def _fold_pair(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, absorbed into conv in place.

    The per-output-channel scale multiplies weight axis 0 for Conv2d and axis 1 for
    ConvTranspose2d, which stores its weight as [in, out, kH, kW].
    """
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)  # affine=False: 1 and 0
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    shape = [1, -1, 1, 1] if isinstance(conv, nn.ConvTranspose2d) else [-1, 1, 1, 1]
    conv.weight.copy_(conv.weight * scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + beta)


@torch.no_grad()
def fold_batchnorm(g: nn.Module) -> nn.Module:
    """An eval-mode copy of G computing the same function with every BatchNorm folded into the
    convolution before it. Pairs are found in nn.Sequential order and in each module's FOLD list of
    (conv attribute, norm attribute) names; a folded norm becomes nn.Identity (a class-conditional
    one keeps its per-class gain and bias)."""
    g = copy.deepcopy(g).eval()
    convs = (nn.Conv2d, nn.ConvTranspose2d)
    for module in list(g.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], convs) and isinstance(module[i + 1], nn.BatchNorm2d):
                    _fold_pair(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
                elif isinstance(module[i], convs) and hasattr(module[i + 1], "folded"):
                    _fold_pair(module[i], module[i + 1].bn)
                    module[i + 1] = module[i + 1].folded()
        for conv_name, bn_name in getattr(module, "FOLD", ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if isinstance(bn, nn.BatchNorm2d):
                _fold_pair(conv, bn)
                setattr(module, bn_name, nn.Identity())
            elif hasattr(bn, "folded"):  # a conditional norm: its statistics fold, its per-class affine stays
                _fold_pair(conv, bn.bn)
                setattr(module, bn_name, bn.folded())
    return g


def calibration_batch(train_batch: int) -> int:
    """Calibration batches twice the training batch, at most 256: never noisier than the statistics
    training itself sees, and tiny runs (tests) do not pay for 2,048 samples per snapshot."""
    return min(256, 2 * train_batch)


@torch.no_grad()
def recalibrate_batchnorm(g: nn.Module, batches: int = 32, batch_size: int = 256) -> nn.Module:
    """Re-estimate BatchNorm running statistics for G's current weights, in place.

    An EMA of weights does not come with matching BatchNorm statistics (averaging the running
    means and variances of past generators gives grey images in eval mode), so they are measured
    again: exact averages over `batches` x `batch_size` latents from fixed seeds. Uses no torch RNG,
    so a training run's random stream is untouched.
    """
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return g
    classes = getattr(g, "n_classes", 0)
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = g.training
    g.train()
    device = next(g.parameters()).device
    pool = seed_range("BatchNorm", batches * batch_size)
    for b in range(batches):
        seeds = pool[b * batch_size:(b + 1) * batch_size]
        y = torch.arange(batch_size, device=device) % classes if classes else None  # every class equally
        g(torch.from_numpy(latents(seeds, g.z_dim)).to(device), y)
    for m, momentum in saved:
        m.momentum = momentum
    return g.train(was_training)

"""The parity gates: how far an ONNX file's faces may be from its PyTorch generator's, per variant.

The export refuses to write a file outside them (export/onnx_export.py), and the trainer refuses to
read one back into PyTorch outside them (trainer/from_onnx.py): one table, so the two cannot drift.
"""
from __future__ import annotations

# Max abs difference on pixels in [-1, 1] against PyTorch fp32 on the CPU, per variant. The int8
# figure comes from measurement (docs/export.md): QDQ int8 with the last ConvTranspose kept in float.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.35}
# Mean abs difference: int8's max is dominated by a few saturated pixels, its mean says more.
MEAN_TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3, "int8": 0.05}

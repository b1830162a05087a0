"""Metrics of a generator, kept apart from training: FID against a cached reference, duplicates
and memorisation. A generator comes in as a sampling function (z -> images), so these modules
work the same for PyTorch checkpoints, ONNX files and generators in the middle of a run."""

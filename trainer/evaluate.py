"""`python -m trainer.evaluate`, the older name of `python -m metrics.evaluate` (it evaluates ONNX
files too, so it lives with the metrics); both run the same command."""
import sys

from metrics.evaluate import fid_of_torch_generator, load_sampler, main, torch_sampler  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())

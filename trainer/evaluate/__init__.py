"""`python -m trainer.evaluate`: the older name of `python -m metrics.evaluate`, kept so that commands
written for it still work (it evaluates ONNX files too, so it lives with the metrics)."""

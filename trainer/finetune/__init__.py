"""Fine-tuning (python -m trainer.train --finetune SOURCE): what a run can start from (sources.py:
published states, run folders, Generator.pth, exported .onnx files read back by from_onnx.py) and
how their weights enter the new run's networks (transfer.py)."""

"""The one way the project opens an ONNX model with onnxruntime: provider choice, the CUDA probe
and an honest note on why CUDA is not in use. Used by the runtime, the exporter's parity check
and the metrics."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError, shorten
from core.system import nvidia_gpu_present

DEVICES = ("auto", "cpu", "cuda")
CUDA_HELP = "pip install 'onnxruntime-gpu[cuda,cudnn]' installs CUDA 13 and cuDNN 9"


@dataclass
class OrtSession:
    session: object       # onnxruntime.InferenceSession
    provider: str         # "CPU" or "CUDA": what really runs
    note: str             # why this provider (one line, for people)


def _preload_cuda(ort) -> None:
    preload = getattr(ort, "preload_dlls", None)
    if preload:  # loads CUDA/cuDNN from the nvidia-* wheels, when installed, before the session needs them
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                preload()
        except Exception:  # noqa: BLE001 - missing wheels: the session then falls back and we say so
            pass


def plan(device: str) -> tuple[list, str]:
    """(providers to ask for, note) for device auto | cpu | cuda; UserError when cuda cannot be had."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise UserError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"], "CPU requested"
    gpu = nvidia_gpu_present()
    built = "CUDAExecutionProvider" in ort.get_available_providers()
    if not gpu:
        if device == "cuda":
            raise UserError("device cuda: no NVIDIA GPU found on this machine; use device cpu or auto")
        return ["CPUExecutionProvider"], "no NVIDIA GPU found; CPU in use"
    if not built:
        if device == "cuda":
            raise UserError("device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu); "
                            "use device cpu or auto")
        return ["CPUExecutionProvider"], "an NVIDIA GPU is present but this onnxruntime has no CUDA provider; CPU in use"
    _preload_cuda(ort)
    # HEURISTIC avoids cuDNN's exhaustive search, which makes the first run of every batch shape slow.
    return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"], "CUDA"


def open_session(model: str | Path | bytes, device: str = "auto", threads: int = 0) -> OrtSession:
    """An InferenceSession on the best provider `device` allows; UserError (one line) when the file
    is not a usable ONNX model or `device=cuda` cannot be honoured."""
    import onnxruntime as ort

    providers, note = plan(device)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # onnxruntime's CPU arena keeps the largest batch's buffers for the life of the session (about 45 MB
    # for a 64-face batch); without it, and with glibc's mmap threshold fixed (demo/memory.py), the app's
    # memory returns to its idle figure after each request at the same speed (bench/load.py --memory).
    opts.enable_cpu_mem_arena = False
    # Quantised (QDQ int8) generators: onnxruntime has no integer ConvTranspose, so by default it keeps
    # each DequantizeLinear of a weight as a node (to preserve QDQ groups for fusion) and dequantises
    # every weight on every run: int8 ran at half fp32's speed. Without QDQ handling the weights'
    # DequantizeLinear nodes are folded into float weights once, at load, and the activations' Q/DQ
    # pairs run as the cheap element-wise ops they are: the same numbers, as fast as fp32
    # (bench/generator_speed.py). Float models are unaffected.
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    if threads:
        opts.intra_op_num_threads = threads
    name = "the model" if isinstance(model, bytes) else str(model)
    # A CUDA provider that cannot start prints a multi-line banner; the note below says it in one line.
    ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - protobuf and graph errors vary; the user needs one line
        raise UserError(f"{name} is not a usable ONNX model: {shorten(exc, 200)}") from None
    finally:
        ort.set_default_logger_severity(2)
    used = sess.get_providers()[0].replace("ExecutionProvider", "")
    if note == "CUDA" and used != "CUDA":
        if device == "cuda":
            raise UserError(f"device cuda: onnxruntime could not start CUDA on this NVIDIA GPU ({CUDA_HELP}); "
                            f"use device cpu or auto")
        note = f"an NVIDIA GPU is present but onnxruntime could not start CUDA ({CUDA_HELP}); CPU in use"
    return OrtSession(sess, used, note)


def usable_devices() -> list[str]:
    """'cpu', plus 'cuda' where a GPU and a CUDA build are both present (sessions then tell for sure)."""
    import onnxruntime as ort

    cuda = nvidia_gpu_present() and "CUDAExecutionProvider" in ort.get_available_providers()
    return ["cpu"] + (["cuda"] if cuda else [])


def model_classes(session) -> tuple[list[str], list[float]]:
    """(class names, training class counts) of a conditional generator, from its `class` input and
    metadata; ([], []) for an unconditional one. UserError when the two disagree."""
    import json

    if "class" not in [i.name for i in session.get_inputs()]:
        return [], []
    meta = session.get_modelmeta().custom_metadata_map
    try:
        classes = [str(c) for c in json.loads(meta.get("classes") or "[]")]
        counts = [float(c) for c in json.loads(meta.get("class_counts") or "[]")] or [1.0] * len(classes)
    except (ValueError, TypeError):
        raise UserError("the model's class metadata is not readable") from None
    if not classes or len(counts) != len(classes) or sum(counts) <= 0:
        raise UserError(f"the model takes a class but its metadata names {len(classes)} classes and "
                        f"{len(counts)} counts")
    return classes, counts

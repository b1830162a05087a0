"""The project's ground floor: seeds and latents, images, files, limits, onnxruntime sessions.

Torch-free and independent of every other package of this project, so the trainer, the exporter,
the metrics, the runtime, the CLI, the app and the benchmarks can all stand on it.
"""

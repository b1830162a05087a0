"""The production runtime: ONNX generators on onnxruntime (torch-free), the model menu, and the
output writers. The CLI, the app, bench/ and scripts/ use it; it imports only core/."""

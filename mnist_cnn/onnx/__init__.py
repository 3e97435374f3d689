"""ONNX export: a model's network as a graph from normalised images (N, 1, 28, 28) float32 to logits (N, 10), with a
dynamic batch size, for onnxruntime and other serving stacks."""

OPSET = 18  # the ONNX opset exported to, unless the export command is given another (its opset option)
INPUT_NAME, OUTPUT_NAME = "images", "logits"

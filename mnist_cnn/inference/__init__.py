"""Running a model: classifying MNIST-formatted arrays in batches, images of any form, and the backends a server runs
(PyTorch, or the model's ONNX export on onnxruntime)."""

BACKENDS = ("torch", "onnx")  # what runs a served model (see mnist_cnn.inference.backends)

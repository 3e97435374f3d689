"""From a user's image to a prediction: MNIST preprocessing, batched classification, ONNX export."""

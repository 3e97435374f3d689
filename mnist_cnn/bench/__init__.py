"""``python -m mnist_cnn.bench``: benchmarks, each reported as ratios against a baseline measured in the same run."""

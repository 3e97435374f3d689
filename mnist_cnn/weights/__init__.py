"""Checkpoint files and shipped weights: weights-only reading, the manifest, checksums, one resolver."""

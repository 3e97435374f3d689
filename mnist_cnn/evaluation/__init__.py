"""Evaluate a trained classifier: metrics, per-class table, confusion matrix, worst mistakes, training curves."""

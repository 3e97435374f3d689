"""Evaluate a trained classifier: metrics, per-class table, confusion matrix, worst mistakes, training curves."""

from mnist_cnn.evaluation.callback import EvaluationReport
from mnist_cnn.evaluation.evaluator import Evaluator, format_summary, write_report
from mnist_cnn.evaluation.metrics import precision_recall_f1, top_k_accuracy
from mnist_cnn.evaluation.plots import plot_training_history, read_training_history

__all__ = [
    "EvaluationReport",
    "Evaluator",
    "format_summary",
    "plot_training_history",
    "precision_recall_f1",
    "read_training_history",
    "top_k_accuracy",
    "write_report",
]

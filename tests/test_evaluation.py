"""The evaluation library: metrics against scikit-learn, input checks, single batched inference, plots, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as sk
from torch import nn

from mnist_cnn import (
    Evaluator,
    MNISTClassifier,
    MNISTDataModule,
    format_summary,
    normalize,
    plot_training_history,
    precision_recall_f1,
    read_splits,
    read_training_history,
    top_k_accuracy,
    write_report,
)
from mnist_cnn.data.pixels import prepared

DIGITS = list(range(10))


@pytest.fixture(scope="module")
def model() -> MNISTClassifier:
    torch.manual_seed(0)
    return MNISTClassifier("lenet5").eval()


@pytest.fixture(scope="module")
def evaluator(model: MNISTClassifier, fake_root: Path) -> Evaluator:
    return Evaluator(model, MNISTDataModule(root=str(fake_root), val_size=100), batch_size=64)


def test_a_data_module_is_read_without_being_set_up(model: MNISTClassifier, fake_root: Path) -> None:
    datamodule = MNISTDataModule(root=str(fake_root), val_size=100)
    evaluator = Evaluator(model, datamodule, batch_size=64)
    assert datamodule.datasets == {} and len(evaluator.labels) == 200  # the caller's data module is left as it was
    arrays = MNISTDataModule.from_arrays(np.zeros((4, 28, 28), np.uint8), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=re.escape("no test arrays: pass test=(x_test, y_test) to MNISTDataModule")):
        Evaluator(model, arrays)


def test_logits_given_are_used_instead_of_running_the_model(evaluator: Evaluator) -> None:
    given = Evaluator(None, (evaluator.images, evaluator.labels), logits=evaluator.logits.flip(1))
    assert given.evaluate_per_class()["support"].sum() == 200
    assert torch.equal(given.predictions, evaluator.logits.flip(1).argmax(dim=1))


def test_support_sums_to_test_size_and_diagonal_gives_accuracy(evaluator: Evaluator) -> None:
    per_class, counts = evaluator.evaluate_per_class(), evaluator.confusion_matrix()
    assert list(per_class.index) == DIGITS and per_class["support"].sum() == 200 == counts.sum()
    assert (counts.sum(axis=1) == per_class["support"]).all()
    assert counts.trace() / counts.sum() == evaluator.evaluate()["accuracy"]


def test_evaluator_agrees_with_scikit_learn(evaluator: Evaluator) -> None:
    labels, probabilities = evaluator.labels.numpy(), evaluator.probabilities.numpy()
    predictions = probabilities.argmax(axis=1)
    metrics, per_class = evaluator.evaluate(), evaluator.evaluate_per_class()
    precision, recall, f1, _ = sk.precision_recall_fscore_support(labels, predictions, average="macro", zero_division=0)
    assert metrics["accuracy"] == sk.accuracy_score(labels, predictions)
    assert metrics["loss"] == pytest.approx(sk.log_loss(labels, probabilities, labels=DIGITS), rel=1e-5)
    assert metrics["top3_accuracy"] == pytest.approx(sk.top_k_accuracy_score(labels, probabilities, k=3, labels=DIGITS))
    assert [metrics["precision"], metrics["recall"], metrics["f1"]] == pytest.approx([precision, recall, f1], rel=1e-6)
    expected = sk.precision_recall_fscore_support(labels, predictions, labels=DIGITS, zero_division=0)
    for column, values in zip(["precision", "recall", "f1", "support"], expected):
        assert per_class[column].to_numpy() == pytest.approx(values, rel=1e-6)
    assert (evaluator.confusion_matrix() == sk.confusion_matrix(labels, predictions, labels=DIGITS)).all()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("form", ["numpy", "torch", "one-hot"])
def test_metric_functions_match_scikit_learn(form: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 9, 500)  # digit 9 never occurs: macro averages must skip it, as scikit-learn's do
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 7, 500))
    scores = rng.random((500, 10))
    scores_in_form = scores if form == "numpy" else torch.as_tensor(scores)
    convert = {
        "numpy": lambda y: y,
        "torch": torch.as_tensor,
        "one-hot": lambda y: F.one_hot(torch.as_tensor(y), 10),
    }[form]
    precision, recall, f1, _ = sk.precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    ours = precision_recall_f1(convert(y_true), convert(y_pred))
    assert ours == pytest.approx({"precision": precision, "recall": recall, "f1": f1}, rel=1e-6)
    for k in (1, 3, 5):
        expected = sk.top_k_accuracy_score(y_true, scores, k=k, labels=list(range(10)))
        assert top_k_accuracy(convert(y_true), scores_in_form, k) == pytest.approx(expected)


SHAPE_MESSAGE = re.escape("(N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1)")


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (torch.zeros(5, 28, dtype=torch.uint8), torch.zeros(5, dtype=torch.long), SHAPE_MESSAGE),
        (torch.zeros(5, 3, 28, 28), torch.zeros(5, dtype=torch.long), SHAPE_MESSAGE),
        (np.zeros((5, 32, 32), np.uint8), np.zeros(5, np.int64), SHAPE_MESSAGE),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), SHAPE_MESSAGE),
        (torch.full((5, 28, 28), 255.0), torch.zeros(5, dtype=torch.long), "float images must hold pixels in 0-1"),
        (np.zeros((5, 28, 28), bool), np.zeros(5, np.int64), re.escape("uint8 pixels (0-255) or float pixels (0-1)")),
        (torch.zeros(5, 28, 28), torch.zeros(4, dtype=torch.long), re.escape("shape (5,)")),
        (torch.zeros(5, 28, 28), torch.zeros(5), "integer class indices"),
        (torch.zeros(5, 28, 28), torch.full((5,), 10), "0-9"),
    ],
    ids=["2d", "3-channels", "32x32", "empty", "float-0-255", "bool", "label-count", "float-labels", "label-range"],
)
def test_bad_images_or_labels_raise_valueerror(images: object, labels: object, message: str, model: nn.Module) -> None:
    with pytest.raises(ValueError, match=message):
        Evaluator(model, (images, labels))


def test_images_are_pixels_in_any_form_or_normalised_floats_when_said(model: nn.Module, fake_root: Path) -> None:
    images, labels = read_splits(fake_root, val_size=100).test
    with torch.inference_mode():
        expected, as_given = model(prepared(images)), model(normalize(images))
    pixels = images.squeeze(1).numpy()
    one_hot = F.one_hot(labels, 10).numpy()  # as Keras' to_categorical gives them
    for data in ((pixels, labels.numpy()), (pixels / 255.0, labels), (pixels[..., None], one_hot)):
        torch.testing.assert_close(Evaluator(model, data).logits, expected)
    torch.testing.assert_close(Evaluator(model, (normalize(images), labels), normalized=True).logits, as_given)


class CountingModel(nn.Module):
    """Records each forward call's batch size and whether inference mode was on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(images), torch.is_inference_mode_enabled(), self.training))
        return self.inner(images)


def test_inference_runs_once_in_batches_in_eval_mode(model: nn.Module, fake_root: Path) -> None:
    counting = CountingModel(model).train()
    evaluator = Evaluator(counting, MNISTDataModule(root=str(fake_root), val_size=100), batch_size=64)
    evaluator.evaluate(), evaluator.evaluate_per_class(), evaluator.confusion_matrix(normalize=True)
    evaluator.misclassified_examples(), evaluator.plot_misclassified(), evaluator.plot_confusion_matrix()
    assert counting.calls == [(64, True, False), (64, True, False), (64, True, False), (8, True, False)]
    assert counting.training  # the caller's mode is restored


def test_normalised_confusion_matrix_is_each_row_over_its_support(evaluator: Evaluator) -> None:
    counts, rates = evaluator.confusion_matrix(), evaluator.confusion_matrix(normalize=True)
    np.testing.assert_allclose(rates, counts / counts.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(rates.sum(axis=1), 1.0)


def test_misclassified_examples_are_the_most_confident_mistakes_first(evaluator: Evaluator, model: nn.Module) -> None:
    images, labels, predictions = evaluator.misclassified_examples(num_examples=7)
    assert len(labels) == 7 and (labels != predictions).all()
    with torch.inference_mode():
        shown = model(prepared(images)).softmax(dim=1)[torch.arange(7), predictions]
    wrong = evaluator.predictions != evaluator.labels
    expected = evaluator.probabilities[wrong].max(dim=1).values.sort(descending=True).values[:7]
    torch.testing.assert_close(shown, expected)


@pytest.mark.parametrize("normalized", [False, True])
def test_confusion_matrix_plot_writes_every_value_and_labels_the_digits(evaluator: Evaluator, normalized: bool) -> None:
    figure = evaluator.plot_confusion_matrix(normalize=normalized)
    axes = figure.axes[0]
    values = evaluator.confusion_matrix(normalize=normalized).ravel()
    assert [text.get_text() for text in axes.texts] == [f"{v:.2f}" if normalized else str(v) for v in values]
    for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
        assert [label.get_text() for label in labels] == [str(digit) for digit in DIGITS]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("Predicted digit", "True digit")
    assert axes.get_title().startswith("Confusion matrix")


def test_misclassified_plot_titles_each_image_true_arrow_predicted_and_probability(evaluator: Evaluator) -> None:
    figure = evaluator.plot_misclassified(num_examples=4)
    _, labels, predictions = evaluator.misclassified_examples(num_examples=4)
    (axes,) = figure.axes
    titles = [text.get_text() for text in axes.texts]
    expected = [f"{true}→{predicted}" for true, predicted in zip(labels.tolist(), predictions.tolist())]
    assert [title.split(" ")[0] for title in titles] == expected
    assert all(re.fullmatch(r"\d→\d \((0|1)\.\d\d\)", title) for title in titles)


def _write_lightning_csv(path: Path, rows: list[dict[str, float]]) -> None:
    path.parent.mkdir(parents=True)
    columns = ["epoch", "lr-Adam", "step", "test_acc", "train_acc", "train_loss", "val_acc", "val_loss"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run dir as training leaves it after a restart: csv/version_0 (epochs 0-1) and csv/version_1 (epoch 2, test)."""
    _write_lightning_csv(
        tmp_path / "csv" / "version_0" / "metrics.csv",
        [
            {"lr-Adam": 1e-3, "step": 0},
            {"epoch": 0, "step": 9, "val_acc": 0.5, "val_loss": 1.5},
            {"epoch": 0, "step": 9, "train_acc": 0.4, "train_loss": 1.8},
            {"epoch": 1, "step": 19, "val_acc": 0.7, "val_loss": 1.0},
            {"epoch": 1, "step": 19, "train_acc": 0.6, "train_loss": 1.2},
        ],
    )
    _write_lightning_csv(
        tmp_path / "csv" / "version_1" / "metrics.csv",
        [
            {"epoch": 2, "step": 29, "val_acc": 0.8, "val_loss": 0.7},
            {"epoch": 2, "step": 29, "train_acc": 0.75, "train_loss": 0.9},
            {"epoch": 3, "step": 30, "test_acc": 0.81},
        ],
    )
    return tmp_path


def test_training_history_merges_every_version_per_epoch(run_dir: Path) -> None:
    history = read_training_history(run_dir)
    assert list(history.index) == [0, 1, 2]
    assert history["val_acc"].tolist() == [0.5, 0.7, 0.8] and history["train_loss"].tolist() == [1.8, 1.2, 0.9]
    loss, accuracy = plot_training_history(run_dir).axes
    axes = (loss, accuracy)
    curves = {(ax.get_ylabel(), line.get_label()): list(line.get_ydata()) for ax in axes for line in ax.lines}
    assert curves == {
        ("Cross-entropy loss", "train"): [1.8, 1.2, 0.9],
        ("Cross-entropy loss", "validation"): [1.5, 1.0, 0.7],
        ("Accuracy", "train"): [0.4, 0.6, 0.75],
        ("Accuracy", "validation"): [0.5, 0.7, 0.8],
    }
    assert list(loss.lines[0].get_xdata()) == [0, 1, 2] and loss.get_xlabel() == "Epoch"
    assert list(read_training_history(run_dir / "csv" / "version_1" / "metrics.csv").index) == [2]
    assert list(read_training_history(run_dir / "csv" / "version_1").index) == [2]  # a CSVLogger's log_dir
    assert read_training_history(run_dir / "csv").equals(history)  # the logger's root: every version
    with pytest.raises(FileNotFoundError, match="no training log"):
        read_training_history(run_dir / "csv" / "elsewhere")


def test_training_history_takes_keras_history_dicts_and_dataframes() -> None:
    keras = {"loss": [0.9, 0.5], "val_loss": [0.8, 0.6], "accuracy": [0.7, 0.85], "val_accuracy": [0.75, 0.8]}
    history = read_training_history(keras)
    assert list(history.index) == [0, 1] and history["val_acc"].tolist() == [0.75, 0.8]
    assert read_training_history(pd.DataFrame(keras)).equals(history)
    figure = plot_training_history(keras)
    curves = {(ax.get_ylabel(), line.get_label()): list(line.get_ydata()) for ax in figure.axes for line in ax.lines}
    assert curves[("Accuracy", "train")] == [0.7, 0.85] and curves[("Cross-entropy loss", "validation")] == [0.8, 0.6]


def test_report_writes_metrics_table_and_legible_pngs(evaluator: Evaluator, run_dir: Path, tmp_path: Path) -> None:
    written = write_report(evaluator, tmp_path / "report", history=run_dir)
    assert {path.name for path in written} == {
        "metrics.json", "per_class.csv", "confusion_matrix.png", "confusion_matrix_normalized.png",
        "misclassified.png", "training_history.png",
    }  # fmt: skip
    for path in written:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 10_000
    report = tmp_path / "report"
    assert json.loads((report / "metrics.json").read_text()) == {"num_images": 200, **evaluator.evaluate()}
    per_class = pd.read_csv(report / "per_class.csv", index_col="digit")
    assert list(per_class.index) == DIGITS and per_class["support"].sum() == 200


def test_summary_lists_overall_metrics_and_one_row_per_digit(evaluator: Evaluator) -> None:
    metrics, per_class = evaluator.evaluate(), evaluator.evaluate_per_class()
    lines = format_summary(metrics, per_class).splitlines()
    assert lines[0].split() == ["images", "200"]
    assert lines[1].split() == ["accuracy", f"{metrics['accuracy']:.4f}"]
    assert [line.split()[0] for line in lines[-10:]] == [str(digit) for digit in DIGITS]


@pytest.mark.real_data
def test_real_test_set_support_and_accuracy(real_root: Path, model: nn.Module) -> None:
    evaluator = Evaluator(model, MNISTDataModule(root=str(real_root)))
    counts = evaluator.confusion_matrix()
    assert evaluator.evaluate_per_class()["support"].sum() == 10_000 == counts.sum()
    assert counts.trace() / 10_000 == evaluator.evaluate()["accuracy"]

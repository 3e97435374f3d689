"""Accuracy of every shipped model on digits as users meet them (``python -m benchmarks --robustness``).

Each condition of ``benchmarks.corruptions`` is applied to the same fixed-seed sample of digits (the
official test set's; ``--digits val`` takes them from the 5,000-image validation split of the training set, to
choose thresholds without the test set). Photos go through the user's path, ``to_mnist`` then the model, as
``predict_images`` does; a photo the preprocessing refuses counts as wrong. MNIST-C-style corruptions are fed to
the models as the 28×28 arrays they are, as MNIST-C measures them (and as a user's 28×28 image file is read).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from benchmarks.corruptions import MNIST_C, PHOTO_LIKE, PHOTOS
from mnist_cnn.data.files import read_test_split, read_train_split
from mnist_cnn.inference.classify import Predictions, choose_uncertain_below, classify, uncertainty_threshold
from mnist_cnn.preprocess.images import to_mnist
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import read_manifest
from mnist_cnn.weights.resolve import resolve_checkpoint

GROUPS = {
    "photo-like": "paper, light, noise, focus, JPEG; through the preprocessing",
    "other photos": "writing and framing; through the preprocessing",
    "MNIST-C": "MNIST-C-style corruptions, 28×28 arrays fed to the model as they are",
}
EXAMPLES = 5  # renderings per condition on the sheet
UNALTERED = 5000  # digits scored as they are, for the share of right answers flagged uncertain
MNIST_C_CLEAN = "identity"  # the file's clean digits, scored beside its corruptions but not in their mean


@dataclass
class Condition:
    """One condition's renderings of the sample: what each model sees, and a few of them as the user made them."""

    name: str
    group: str
    pixels: np.ndarray  # (N, 28, 28) uint8, MNIST-formatted
    refused: np.ndarray  # (N,) bool: the preprocessing found no digit (counted wrong)
    examples: list[np.ndarray] = field(default_factory=list)


def sample(count: int, digits: str, root: str | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` digits drawn without replacement (fixed seed) from the test set or the validation split."""
    images, labels = read_test_split(root) if digits == "test" else read_train_split(root)[1]
    chosen = np.sort(np.random.default_rng(seed).choice(len(labels), min(count, len(labels)), replace=False))
    return images[chosen, 0].numpy(), labels[chosen].numpy()


def _preprocessed(images: list[np.ndarray | Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.zeros((len(images), 28, 28), dtype=np.uint8)
    refused = np.zeros(len(images), dtype=bool)
    for index, image in enumerate(images):
        try:
            pixels[index] = to_mnist(image)
        except ValueError:
            refused[index] = True
    return pixels, refused


def render(digits: np.ndarray, seed: int, workers: int | None = None) -> list[Condition]:
    """Every condition applied to ``digits``, each from its own seeded generator (reproducible one by one), the
    conditions shared out among ``workers`` processes (default: one per CPU core)."""
    tasks = [("photo", name) for name in PHOTOS] + [("mnist-c", name) for name in MNIST_C]
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    context = multiprocessing.get_context("spawn")  # the parent has started torch's threads: do not fork it
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        rendered = pool.map(render_condition, tasks, [digits] * len(tasks), [seed] * len(tasks))
        return [condition for conditions in rendered for condition in conditions]


def render_condition(task: tuple[str, str], digits: np.ndarray, seed: int) -> list[Condition]:
    """One condition applied to every digit: a photo, or an MNIST-C corruption."""
    kind, name = task
    if kind == "photo":
        rng = np.random.default_rng([seed, list(PHOTOS).index(name)])
        pages = [PHOTOS[name](digit, rng) for digit in digits]
        group = "photo-like" if name in PHOTO_LIKE or name == "clean scan" else "other photos"
        return [Condition(name, group, *_preprocessed(pages), pages[:EXAMPLES])]
    rng = np.random.default_rng([seed, 1000 + list(MNIST_C).index(name)])
    corrupted = np.stack([np.round(MNIST_C[name](digit, rng) * 255).astype(np.uint8) for digit in digits])
    return [Condition(name, "MNIST-C", corrupted, np.zeros(len(digits), dtype=bool), list(corrupted[:EXAMPLES]))]


def predict(model: torch.nn.Module, conditions: list[Condition]) -> list[Predictions]:
    """The model's predictions for every condition, in one batched pass."""
    pixels = torch.from_numpy(np.concatenate([condition.pixels for condition in conditions])).unsqueeze(1)
    predictions = classify(model, pixels)
    bounds = np.cumsum([0, *(len(condition.pixels) for condition in conditions)])
    return [
        Predictions(predictions.labels[start:stop], predictions.probabilities[start:stop], predictions.uncertain_below)
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]


def run(count: int, digits: str, root: str | None, seed: int, sheet: Path | None, extra: tuple[str, ...] = ()) -> dict:
    """The benchmark: per model and condition the accuracy, group means, and how uncertainty flags answers; every
    shipped model, and the checkpoints ``extra`` names (files or run dirs, e.g. a candidate to ship)."""
    start = time.perf_counter()
    images, labels = sample(count, digits, root, seed)
    conditions = render(images, seed)
    rendered_s = time.perf_counter() - start
    unaltered, unaltered_labels = sample(UNALTERED, digits, root, seed + 1)
    models = {}
    for name in [*read_manifest(), *extra]:
        network = load_network(resolve_checkpoint(name)).to(memory_format=torch.channels_last)
        threshold = uncertainty_threshold(network)
        outcomes = predict(network, conditions)
        right = [(p.labels == labels) & ~c.refused for p, c in zip(outcomes, conditions)]
        confidence = [np.where(c.refused, 0.0, p.confidence) for p, c in zip(outcomes, conditions)]  # refused: flagged
        clean = classify(network, torch.from_numpy(unaltered).unsqueeze(1))
        clean_right = clean.labels == unaltered_labels
        wrong = ~np.concatenate(right)
        models[name] = {
            "accuracy": {f"{c.group}/{c.name}": float(r.mean()) for c, r in zip(conditions, right)},
            "group_mean": {
                group: float(np.mean([r.mean() for c, r in zip(conditions, right) if c.group == group]))
                for group in GROUPS
            },
            "uncertain_below": threshold,
            "wrong_flagged": float((np.concatenate(confidence)[wrong] < threshold).mean()),
            "unaltered_accuracy": float(clean_right.mean()),
            "unaltered_right_flagged": float(clean.uncertain[clean_right].mean()),
            "confidence": confidence,
            "right": right,
            "unaltered_confidence": clean.confidence,
            "unaltered_right": clean_right,
            "outcomes": outcomes,
        }
    if sheet is not None:
        best = max(read_manifest(), key=lambda name: read_manifest()[name].test_acc)
        write_sheet(sheet, conditions, models[best]["outcomes"], labels, best)
    return {
        "digits": digits,
        "count": len(labels),
        "unaltered": len(unaltered_labels),
        "seed": seed,
        "shipped": list(read_manifest()),
        "conditions": [(c.name, c.group) for c in conditions],
        "models": models,
        "render_s": rendered_s,
        "total_s": time.perf_counter() - start,
    }


def score_mnist_c(path: Path, names: list[str]) -> dict:
    """Accuracy of each model in ``names`` (shipped names, checkpoint files or run dirs) on every corruption of the
    MNIST-C file at ``path``, fed as the 28×28 arrays they are (as ``MNISTClassifier.predict`` takes them), and
    the mean over its corruptions (its clean digits are scored apart)."""
    data = np.load(path)
    labels = data["labels"]
    keys = [key for key in data.files if key != "labels"]
    scores = {}
    for name in names:
        network = load_network(resolve_checkpoint(name)).to(memory_format=torch.channels_last)
        accuracy = {key: float((classify(network, torch.from_numpy(data[key]).unsqueeze(1)).labels == labels).mean())
                    for key in keys}  # fmt: skip
        corrupted = [value for key, value in accuracy.items() if key != MNIST_C_CLEAN]
        scores[name] = {"accuracy": accuracy, "mean": float(np.mean(corrupted))}
    return {"file": str(path), "count": len(labels), "models": scores}


def mnist_c_table(results: dict) -> str:
    """The MNIST-C scores as a Markdown table: one row per corruption, one column per model, then the mean."""
    names = list(results["models"])
    keys = list(next(iter(results["models"].values()))["accuracy"])
    lines = [f"| MNIST-C | {' | '.join(names)} |", f"|---|{'---:|' * len(names)}"]
    for key in keys:
        cells = (results["models"][name]["accuracy"][key] for name in names)
        label = "clean (not in the mean)" if key == MNIST_C_CLEAN else key.replace("_", " ")
        lines.append(f"| {label} | {' | '.join(f'{cell:.2%}' for cell in cells)} |")
    means = (results["models"][name]["mean"] for name in names)
    lines.append(f"| *mean over the corruptions* | {' | '.join(f'*{mean:.2%}*' for mean in means)} |")
    return "\n".join(lines)


def table(results: dict) -> str:
    """The results as a Markdown table: one row per condition, one column per model, then the group means."""
    names = list(results["models"])
    lines = [f"| condition | {' | '.join(names)} |", f"|---|{'---:|' * len(names)}"]
    for group in GROUPS:
        lines.append(f"| **{group}** ({GROUPS[group]}) |{' |' * len(names)}")
        for name, condition_group in results["conditions"]:
            if condition_group == group:
                cells = (results["models"][model]["accuracy"][f"{group}/{name}"] for model in names)
                lines.append(f"| {name} | {' | '.join(f'{cell:.2%}' for cell in cells)} |")
        means = (results["models"][model]["group_mean"][group] for model in names)
        lines.append(f"| *mean, {group}* | {' | '.join(f'*{mean:.2%}*' for mean in means)} |")
    unaltered = f"{results['unaltered']:,} {results['digits']} digits"
    clean = (results["models"][model]["unaltered_accuracy"] for model in names)
    lines.append(f"| {unaltered}, unaltered | {' | '.join(f'{cell:.2%}' for cell in clean)} |")
    thresholds = (results["models"][model]["uncertain_below"] for model in names)
    lines.append(f"| uncertain below probability | {' | '.join(f'{cell:.2f}' for cell in thresholds)} |")
    flagged = (results["models"][model]["wrong_flagged"] for model in names)
    lines.append(f"| wrong answers above flagged uncertain | {' | '.join(f'{cell:.1%}' for cell in flagged)} |")
    right = (results["models"][model]["unaltered_right_flagged"] for model in names)
    lines.append(f"| right answers flagged, {unaltered} | {' | '.join(f'{cell:.2%}' for cell in right)} |")
    return "\n".join(lines)


def chosen_thresholds(results: dict) -> list[str]:
    """Per model, the threshold ``choose_uncertain_below`` picks on these digits' unaltered right answers (on
    validation digits: how a shipped model's ``uncertain_below`` is chosen), and the shares it flags."""
    lines = [
        "| model | uncertain below (chosen here) | right flagged, unaltered | wrong flagged, all conditions |",
        "|---|---:|---:|---:|",
    ]
    for name, model in results["models"].items():
        clean_right = model["unaltered_confidence"][model["unaltered_right"]]
        threshold = choose_uncertain_below(clean_right)
        confidence, correct = np.concatenate(model["confidence"]), np.concatenate(model["right"])
        right, wrong = (clean_right < threshold).mean(), (confidence[~correct] < threshold).mean()
        lines.append(f"| {name} | {threshold:.2f} | {right:.2%} | {wrong:.1%} |")
    return lines


def write_sheet(
    path: Path, conditions: list[Condition], outcomes: list[Predictions], labels: np.ndarray, model: str
) -> None:
    """A PNG with, per condition, a few renderings as the user made them beside what the model saw (28×28), each
    titled with the label, the prediction and its probability (red when wrong, ``?`` when uncertain)."""
    shown = [(c, p) for c, p in zip(conditions, outcomes) if c.examples]
    cell, name_width, title = 84, 240, 14  # pixels: a thumbnail's side, the condition names, a caption's height
    font = ImageFont.load_default(size=11)
    sheet = Image.new("RGB", (name_width + EXAMPLES * (2 * cell + 10), 24 + len(shown) * (cell + title + 6)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), f"Renderings (left) and what {model} saw (right): label->prediction probability", "black", font)
    for row, (condition, outcome) in enumerate(shown):
        top = 24 + row * (cell + title + 6)
        name = condition.name.replace("σ", "sd")  # the default font has no Greek
        draw.text((4, top + title + cell // 2 - 6), f"{name} ({condition.group})", "black", font)
        for column, page in enumerate(condition.examples):
            left = name_width + column * (2 * cell + 10)
            label, guess = labels[column], outcome.labels[column]
            wrong = condition.refused[column] or guess != label
            mark = "?" if outcome.uncertain[column] else ""
            caption = (
                "refused" if condition.refused[column] else f"{label}->{guess}{mark} {outcome.confidence[column]:.2f}"
            )
            draw.text((left, top), caption, "red" if wrong else "black", font)
            sheet.paste(ImageOps.contain(Image.fromarray(page), (cell, cell)), (left, top + title))
            seen = Image.fromarray(condition.pixels[column]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(seen, (left + cell + 2, top + title))
    sheet.save(path)


def summary(results: dict) -> dict:
    """``results`` without the per-image arrays, ready for JSON."""
    per_image = ("confidence", "right", "unaltered_confidence", "unaltered_right", "outcomes")
    models = {name: {k: v for k, v in model.items() if k not in per_image} for name, model in results["models"].items()}
    return {**results, "models": models}


def report(args: argparse.Namespace) -> dict:
    """Run the robustness benchmark, print its table (and, on validation digits, each model's chosen threshold)."""
    results = run(args.count, args.digits, args.root, args.seed, args.sheet, tuple(args.ckpt))
    print(f"{results['count']} {args.digits} digits per condition, seed {args.seed}\n")
    print(table(results))
    if args.digits == "val":
        print("\n" + "\n".join(chosen_thresholds(results)))
    print(f"\nwrote {args.sheet}; {results['render_s']:.0f} s rendering, {results['total_s']:.0f} s in all")
    mnist_c = Path(args.mnist_c) if args.mnist_c else None
    if args.digits == "test" and mnist_c is not None and mnist_c.is_file():
        results["mnist_c"] = score_mnist_c(mnist_c, list(results["models"]))
        print(f"\nMNIST-C ({results['mnist_c']['count']:,} test digits, {mnist_c}), as arrays:\n")
        print(mnist_c_table(results["mnist_c"]))
    elif args.digits == "test":
        print(f"\nno MNIST-C file at {mnist_c}: --mnist-c PATH scores it")
    return summary(results)

"""``python -m mnist_cnn.bench``: training epochs through three pipelines side by side (the default), start-up
(``--startup``) or predicting files (``--predict-files N``), on this machine. Report ratios, not seconds: the
seconds depend on the machine, the ratios measured in one run much less. ``--robustness`` measures accuracy
instead: every shipped model on digits photographed, scanned and corrupted (see mnist_cnn/bench/robustness.py).
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import torch

from mnist_cnn.bench import epoch, startup

SWEEP = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)  # thresholds that --digits val tries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_cnn.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="lenet5", help="comma-separated model names (default: lenet5)")
    parser.add_argument("--pipelines", default="abc", help="which of a, b, c to run (default: abc)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="gpu: (c) runs trainer=gpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--root", default=None, help="data root (default: $MNIST_DATA_DIR, else ./data)")
    parser.add_argument("--images", type=int, default=55_000, help="training images per epoch (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference throughput")
    parser.add_argument("--startup", action="store_true", help="only time --help and a one-batch training run")
    parser.add_argument("--predict-files", type=int, default=0, metavar="N", help="only time predicting N files")
    parser.add_argument("--robustness", action="store_true", help="only measure accuracy on photos and corruptions")
    parser.add_argument(
        "--digits",
        choices=("test", "val"),
        default="test",
        help="--robustness: digits of the test set, or of the validation split (to choose thresholds)",
    )
    parser.add_argument("--count", type=int, default=300, help="--robustness: digits per condition (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="--robustness: which digits and renderings")
    parser.add_argument(
        "--ckpt", action="append", default=[], metavar="PATH",
        help="--robustness: also score this checkpoint file or run dir beside the shipped models (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--sheet",
        type=Path,
        default=Path("robustness.png"),
        help="--robustness: where to write the PNG of example renderings (default: robustness.png)",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PIPELINE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: PyTorch sees no CUDA GPU here; run it on a GPU machine, or drop the option")

    if args.one:  # a worker process: measure one thing, print it as JSON
        result = epoch.one(*args.one, args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.accelerator == "gpu":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return
    if args.robustness:
        results = robustness_report(args)
    elif args.startup:
        results = startup.startup(args.root, args.repeats)
        print(f"train --help: {results['help_s']:.2f} s; one-batch training run: {results['one_batch_run_s']:.2f} s")
    elif args.predict_files:
        results = startup.predict_files(args.predict_files, args.root, args.repeats)
        print(
            f"predict {results['files']} PNG files: {results['seconds']:.2f} s ({results['files_per_s']:.0f} files/s), "
            f"accuracy {results['accuracy']:.2%}"
        )
    else:
        results = epoch.table(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def robustness_report(args: argparse.Namespace) -> dict:
    """Run the robustness benchmark, print its table (and, on validation digits, the threshold sweep)."""
    import numpy as np

    from mnist_cnn.bench import robustness

    results = robustness.run(args.count, args.digits, args.root, args.seed, args.sheet, tuple(args.ckpt))
    print(
        f"{results['count']} {args.digits} digits per condition, seed {args.seed}; "
        f"uncertain below probability {results['uncertain_below']}\n"
    )
    print(robustness.table(results))
    if args.digits == "val":
        lines, chosen = robustness.sweep(results, np.array(SWEEP))
        print("\n" + "\n".join(lines) + f"\n\nchosen: uncertain below {chosen}")
        results["chosen_threshold"] = chosen
    print(f"\nwrote {args.sheet}; {results['render_s']:.0f} s rendering, {results['total_s']:.0f} s in all")
    return robustness.summary(results)


if __name__ == "__main__":
    main()

"""``python -m benchmarks``: training epochs through several pipelines side by side (the default), the
framework's own cost per step (``--overhead``), start-up (``--startup``), predicting files (``--predict-files N``)
or serving (``--serve [MODEL]``), on this machine. Report ratios, not seconds: the seconds depend on the machine,
the ratios measured in one run much less. ``--robustness`` measures accuracy instead: every shipped model on digits
photographed, scanned and corrupted (see benchmarks/robustness.py).
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

from mnist_cnn.cli import fail, quiet_libraries
from mnist_cnn.errors import MissingExtraError, missing_extra
from mnist_cnn.weights.manifest import most_accurate

# MNIST-C itself (Mu & Gilmer 2019, made with its own code) on the first 2,000 test digits, beside a checkout
MNIST_C_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_c" / "mnist_c_test_0-1999.npz"


SERVER_DEFAULT = ""  # ``--serve`` alone: the model ``python -m mnist_cnn.serve`` serves when given none


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="lenet5", help="comma-separated model names (default: lenet5)")
    parser.add_argument(
        "--pipelines", default="abc", help="which of a, b, c, d (Keras), e (c with augmentation) to run (default: abc)"
    )
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="gpu: (c) runs trainer=gpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compile", metavar="MODE", help="(c), (e): train with compile=MODE (e.g. reduce-overhead)")
    parser.add_argument("--root", default=None, help="data root (default: $MNIST_DATA_DIR, else ./data)")
    parser.add_argument("--images", type=int, default=55_000, help="training images per epoch (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--threads", type=int, help="intra-op threads of every pipeline (default: PyTorch's)")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference throughput")
    parser.add_argument(
        "--startup", action="store_true",
        help="only time train --help, a one-batch training run, evaluate ckpt_path=lenet5 and predict of one file",
    )  # fmt: skip
    parser.add_argument("--predict-files", type=int, default=0, metavar="N", help="only time predicting N files")
    parser.add_argument(
        "--overhead", action="store_true", help="only time a step of a one-layer model: ours, the Trainer alone, plain"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile (c) and (d) per operator over --images of training; with --overhead: our step's functions",
    )
    parser.add_argument(
        "--serve",
        nargs="?",
        const=SERVER_DEFAULT,
        metavar="MODEL",
        help="only time serving MODEL (default: the server's own, the shipped model with the highest test accuracy)",
    )
    parser.add_argument("--backends", default="torch,onnx", help="with --serve: comma-separated (default: torch,onnx)")
    parser.add_argument("--latency-requests", type=int, default=300, help="with --serve: requests at concurrency 1")
    parser.add_argument("--throughput-requests", type=int, default=2000, help="with --serve: requests at 32")
    parser.add_argument("--robustness", action="store_true", help="only measure accuracy on photos and corruptions")
    parser.add_argument(
        "--speedrun", nargs="*", metavar="RECIPE [OVERRIDE]",
        help="only run a speedrun recipe (default speedrun_cpu), with any overrides, over --seeds seeds, each a fresh "
        "process: --speedrun speedrun compile=reduce-overhead",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5, help="--speedrun: how many seeds (default: 5)")
    parser.add_argument(
        "--digits",
        choices=("test", "val"),
        default="test",
        help="--robustness: digits of the test set, or of the validation split (to choose thresholds)",
    )
    parser.add_argument("--count", type=int, default=300, help="--robustness: digits per condition (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="--robustness: which digits and renderings")
    parser.add_argument(
        "--mnist-c", default=str(MNIST_C_FILE), metavar="PATH",
        help="--robustness: MNIST-C's npz file, scored too when present (default: ../shared/data/mnist_c/ beside a "
        "checkout); '' skips it",
    )  # fmt: skip
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
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch  # here, not at the top: --help and the parser's errors answer without loading it

    from benchmarks import epoch, overhead, profile, robustness, serving, speedrun, startup
    from benchmarks.keras import require_keras

    quiet_libraries()
    args.threads = args.threads or torch.get_num_threads()
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: PyTorch sees no CUDA GPU here; run it on a GPU machine, or drop the option")
    unknown = sorted(set(args.pipelines) - set(epoch.PIPELINES))
    if unknown:
        parser.error(f"--pipelines: no pipeline {', '.join(unknown)}; choose from {''.join(epoch.PIPELINES)}")
    if args.profile and not (args.one or args.overhead) and not set(args.pipelines) <= set(profile.PROFILED):
        parser.error(f"--profile covers pipelines {', '.join(profile.PROFILED)}: e.g. --pipelines cd")
    if "d" in args.pipelines and not (
        args.one or args.startup or args.predict_files or args.overhead or args.serve is not None
    ):
        if args.accelerator == "gpu":
            parser.error("--pipelines d runs on the CPU only: drop d, or --accelerator gpu")
        try:
            require_keras()
        except MissingExtraError as error:
            fail(str(error))

    if args.one:  # a worker process: measure one thing, print it as JSON
        what, which = args.one
        torch.set_num_threads(args.threads)
        if what == "overhead":
            result = overhead.one(which, args)
        elif args.profile:
            result = profile.profile(what, which, args.batch_size, args.root, args.images, args.threads)
        else:
            result = epoch.one(what, which, args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.accelerator == "gpu":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return
    if args.overhead and args.profile:
        overhead.project_step_ms(args.root, profile=True)
        return
    if args.overhead:
        results = overhead.table(args)
    elif args.robustness:
        results = robustness.report(args)
    elif args.speedrun is not None:
        recipe, *overrides = args.speedrun or ["speedrun_cpu"]
        results = speedrun.speedrun(recipe, overrides, args.seeds, args.root)
        print(speedrun.table(results))
    elif args.startup:
        results = startup.startup(args.root, args.repeats)
        print(
            f"train --help: {results['help_s']:.2f} s; one-batch training run: {results['one_batch_run_s']:.2f} s; "
            f"evaluate ckpt_path=lenet5: {results['evaluate_s']:.2f} s; predict one file: "
            f"{results['predict_one_file_s']:.2f} s"
        )
    elif args.predict_files:
        results = startup.predict_files(args.predict_files, args.root, args.repeats)
        print(
            f"predict {results['files']} PNG files: {results['seconds']:.2f} s ({results['files_per_s']:.0f} files/s), "
            f"accuracy {results['accuracy']:.2%}"
        )
    elif args.profile:
        results = profile.table(args)
    elif args.serve is not None:
        try:
            import uvicorn  # noqa: F401  (the server the bench starts)
        except ImportError as error:
            parser.error(str(missing_extra("--serve", error)))
        backends, model = args.backends.split(","), args.serve or most_accurate()
        results = serving.serve_table(model, backends, args.root, args.latency_requests, args.throughput_requests)
    else:
        results = epoch.table(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

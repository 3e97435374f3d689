"""``python -m mnist_cnn.bench``: training epochs through several pipelines side by side (the default), start-up
(``--startup``) or predicting files (``--predict-files N``), on this machine. Report ratios, not seconds: the
seconds depend on the machine, the ratios measured in one run much less.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

from mnist_cnn.cli import fail
from mnist_cnn.errors import MissingExtraError
from mnist_cnn.runtime import tune_cpu_process

# The pipelines that are this project's own path: their processes are set up as its commands set theirs up.
PROJECT_PIPELINES = ("c", "e", "inference")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_cnn.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="lenet5", help="comma-separated model names (default: lenet5)")
    parser.add_argument(
        "--pipelines", default="abc", help="which of a, b, c, d (Keras), e (c with augmentation) to run (default: abc)"
    )
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="gpu: (c) runs trainer=gpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--root", default=None, help="data root (default: $MNIST_DATA_DIR, else ./data)")
    parser.add_argument("--images", type=int, default=55_000, help="training images per epoch (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--threads", type=int, help="intra-op threads of every pipeline (default: PyTorch's)")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference throughput")
    parser.add_argument(
        "--profile", action="store_true", help="only profile (c) and (d) per operator, over --images of training"
    )
    parser.add_argument("--startup", action="store_true", help="only time --help and a one-batch training run")
    parser.add_argument("--predict-files", type=int, default=0, metavar="N", help="only time predicting N files")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PIPELINE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one and args.one[1] in PROJECT_PIPELINES:
        tune_cpu_process()
    import torch  # after the settings that must precede it

    from mnist_cnn.bench import epoch, profile, startup
    from mnist_cnn.bench.keras import require_keras

    args.threads = args.threads or torch.get_num_threads()
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: PyTorch sees no CUDA GPU here; run it on a GPU machine, or drop the option")

    unknown = sorted(set(args.pipelines) - set(epoch.PIPELINES))
    if unknown:
        parser.error(f"--pipelines: no pipeline {', '.join(unknown)}; choose from {''.join(epoch.PIPELINES)}")
    if args.profile and not args.one and not set(args.pipelines) <= set(profile.PROFILED):
        parser.error(f"--profile covers pipelines {', '.join(profile.PROFILED)}: e.g. --pipelines cd")
    if "d" in args.pipelines and not (args.one or args.startup or args.predict_files):
        if args.accelerator == "gpu":
            parser.error("--pipelines d runs on the CPU only: drop d, or --accelerator gpu")
        try:
            require_keras()
        except MissingExtraError as error:
            fail(str(error))

    if args.one:  # a worker process: measure one thing, print it as JSON
        model, pipeline = args.one
        torch.set_num_threads(args.threads)
        if args.profile:
            result = profile.profile(model, pipeline, args.batch_size, args.root, args.images, args.threads)
        else:
            result = epoch.one(model, pipeline, args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.accelerator == "gpu":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return
    if args.startup:
        results = startup.startup(args.root, args.repeats)
        print(f"train --help: {results['help_s']:.2f} s; one-batch training run: {results['one_batch_run_s']:.2f} s")
    elif args.predict_files:
        results = startup.predict_files(args.predict_files, args.root, args.repeats)
        print(
            f"predict {results['files']} PNG files: {results['seconds']:.2f} s ({results['files_per_s']:.0f} files/s), "
            f"accuracy {results['accuracy']:.2%}"
        )
    elif args.profile:
        results = profile.table(args)
    else:
        results = epoch.table(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

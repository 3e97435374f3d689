"""``python -m benchmarks --profile``: where a training step's time goes, operator by operator, in this
project's pipeline (c) (``torch.profiler``) and in the original stack's (d) (TensorFlow's profiler).

Each pipeline runs ``warmup`` untimed steps, then ``steps`` profiled ones. An operator's time is its own (self)
time on the thread that runs the step, whatever threads it uses inside; what is left of the step's wall time is
the framework around the operators (Python, Lightning or Keras, the input pipeline).
"""

from __future__ import annotations

import argparse
import glob
import tempfile
import time
from collections import Counter
from typing import Any

from benchmarks.common import alternating_medians
from benchmarks.epoch import PIPELINES, project_epoch, worker_arguments
from mnist_cnn.data.files import read_train_split

PROFILED = "cd"
WARMUP_STEPS = 5  # untimed steps before the profiled ones: first-call allocations, TensorFlow's tracing
TOP = 14  # operators listed by name; the rest are summed in one line
OUTSIDE = "(outside operators)"
OTHERS = "(other operators)"


def table(args: argparse.Namespace) -> list[dict]:
    """Each model's profile in each pipeline, printed and returned; with several repeats (fresh processes taking
    turns), the one of median step time."""
    results = []
    steps = max(1, args.images // args.batch_size)
    print(f"time per training step on {args.threads} CPU threads, {steps} steps after {WARMUP_STEPS}")
    for model in args.models.split(","):
        workers = {pipeline: [*worker_arguments(model, pipeline, args), "--profile"] for pipeline in args.pipelines}
        row = {"model": model, **alternating_medians(workers, args.repeats, "step_ms")}
        for pipeline in args.pipelines:
            print(f"\n{model} ({pipeline}) {PIPELINES[pipeline]}: {row[pipeline]['step_ms']:.1f} ms per step")
            print(f"  {'operator':<58} {'calls':>6} {'ms':>7} {'share':>6}")
            for name, calls, ms in row[pipeline]["operators"]:
                print(f"  {name[:58]:<58} {calls:>6.0f} {ms:>7.2f} {ms / row[pipeline]['step_ms']:>6.1%}")
        results.append(row)
    return results


def profile(model_name: str, pipeline: str, batch_size: int, root: str | None, images: int, threads: int) -> dict:
    """``{"step_ms": ..., "operators": [[name, calls per step, ms per step], ...]}``, slowest first, for
    ``images // batch_size`` steps after ``WARMUP_STEPS``."""
    steps, warmup = max(1, images // batch_size), WARMUP_STEPS
    available = len(read_train_split(root)[0][1])
    if available < (warmup + steps) * batch_size:
        raise ValueError(f"--profile needs {(warmup + steps) * batch_size} training images, the data has {available}")
    if pipeline == "c":
        seconds, calls, total_us = _torch_operators(model_name, batch_size, root, steps, warmup)
    elif pipeline == "d":
        seconds, calls, total_us = _keras_operators(model_name, batch_size, root, steps, warmup, threads)
    else:
        raise ValueError(f"--profile covers pipelines c and d, not {pipeline!r}")
    step_ms = seconds * 1e3 / steps
    ranked = [[name, calls[name] / steps, us / 1e3 / steps] for name, us in total_us.most_common()]
    inside = sum(ms for _, _, ms in ranked)
    top = ranked[:TOP] + [[OTHERS, sum(c for _, c, _ in ranked[TOP:]), sum(ms for _, _, ms in ranked[TOP:])]]
    return {"step_ms": step_ms, "operators": [*top, [OUTSIDE, 0, step_ms - inside]]}


def _torch_operators(model_name: str, batch_size: int, root: str | None, steps: int, warmup: int):
    import lightning as L
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    class Profiled(L.Callback):
        profiler = torch_profile(activities=[ProfilerActivity.CPU])

        def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, index: int) -> None:
            if index == warmup:
                self.profiler.start()
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
            if args[-1] == warmup + steps - 1:
                self.seconds = time.perf_counter() - self.start
                self.profiler.stop()

    profiled = Profiled()
    project_epoch(model_name, "cpu", batch_size, root, (warmup + steps) * batch_size, False, [profiled])
    calls, total_us = Counter(), Counter()
    for event in profiled.profiler.key_averages():
        calls[event.key] += event.count
        total_us[event.key] += event.self_cpu_time_total
    return profiled.seconds, calls, total_us


def _keras_operators(model_name: str, batch_size: int, root: str | None, steps: int, warmup: int, threads: int):
    from benchmarks.keras import compiled_model, training_arrays

    model = compiled_model(model_name, threads)  # imports TensorFlow
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    x, y = training_arrays(root, (warmup + steps) * batch_size)
    split = warmup * batch_size
    model.fit(x[:split], y[:split], batch_size=batch_size, verbose=0)
    with tempfile.TemporaryDirectory() as logs:
        tf.profiler.experimental.start(logs)
        start = time.perf_counter()
        model.fit(x[split:], y[split:], batch_size=batch_size, verbose=0)
        seconds = time.perf_counter() - start
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        (trace,) = glob.glob(f"{logs}/plugins/profile/*/*.xplane.pb")
        with open(trace, "rb") as file:
            space.ParseFromString(file.read())
    calls, total_us = Counter(), Counter()
    for plane in space.planes:
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):  # the threads that run the graph's operators
                _add_operators(line.events, plane.event_metadata, calls, total_us)
    return seconds, calls, total_us


def _add_operators(events: Any, metadata: Any, calls: Counter, total_us: Counter) -> None:
    """Count each operator event ("scope/name:OpType") of one trace line with its self time: its duration less
    that of the events nested in it ("A::B" events are the executor's own)."""
    stack: list[list[Any]] = []  # [end, op type or None, self time in ps] of the enclosing events
    finished = []
    for event in sorted(events, key=lambda event: event.offset_ps):
        while stack and stack[-1][0] <= event.offset_ps:
            finished.append(stack.pop())
        if stack:
            stack[-1][2] -= event.duration_ps
        name = metadata[event.metadata_id].name
        op = name.rpartition(":")[2] if ":" in name and "::" not in name else None
        stack.append([event.offset_ps + event.duration_ps, op, event.duration_ps])
    for _, op, self_ps in finished + stack:
        if op is not None:
            calls[op] += 1
            total_us[op] += self_ps / 1e6

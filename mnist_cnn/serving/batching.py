"""Dynamic batching: concurrent requests share one forward pass.

A request's images wait in a queue. The worker takes the oldest request, lets it wait up to ``wait_s`` (counted
from its arrival) for others, then runs every waiting request's images in one forward pass of at most
``max_batch`` images. Requests that arrive while a pass runs are already past their wait when it ends, so
under load batches form without any added delay; ``max_batch=1`` gives each request its own pass.

Written here because the serving libraries that batch (LitServe) run the model in other processes, behind
queues that cost more than the forward pass of a small CNN; the forward pass runs in one thread of this
process, so the event loop keeps reading and parsing requests meanwhile.

That thread needs the GIL back after each native call (onnxruntime's run, each PyTorch operation). Python makes a
thread that wants it wait for the switch interval, 5 ms by default, while another (the busy event loop) holds it:
a pass of a few milliseconds then took twice its time, and passes ran mostly while the event loop had nothing
to do. While the batcher runs, the interval is ``SWITCH_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mnist_cnn.inference.backends import Classifier

SWITCH_INTERVAL_S = 0.0002  # the GIL's switch interval while serving: 200 µs, against Python's 5 ms


@dataclass
class _Request:
    pixels: np.ndarray  # uint8 (N, 28, 28)
    answer: asyncio.Future[np.ndarray]
    arrived: float  # loop.time()


class DynamicBatcher:
    """``await batcher.probabilities(pixels)`` from any number of concurrent tasks; ``start`` and ``stop`` it
    inside the event loop that serves them."""

    def __init__(self, classifier: Classifier, max_batch: int, wait_s: float) -> None:
        self.classifier, self.max_batch, self.wait_s = classifier, max_batch, wait_s
        self._waiting: collections.deque[_Request] = collections.deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._worker: asyncio.Task[None] | None = None
        self._switch_interval = sys.getswitchinterval()  # the process's own, given back by ``stop``
        self.requests = self.passes = 0  # requests answered and forward passes run, as /health reports them

    def start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown()
        sys.setswitchinterval(self._switch_interval)

    async def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 10) probabilities of uint8 (N, 28, 28) ``pixels``, computed in a pass shared with other requests."""
        loop = asyncio.get_running_loop()
        request = _Request(pixels, loop.create_future(), loop.time())
        self._waiting.append(request)
        self._arrived.set()
        return await request.answer

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            delay = self._waiting[0].arrived + self.wait_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = self._take_batch()
            if not self._waiting:
                self._arrived.clear()
            pixels = batch[0].pixels if len(batch) == 1 else np.concatenate([request.pixels for request in batch])
            try:
                probabilities = await loop.run_in_executor(self._executor, self.classifier, pixels)
            except Exception as error:  # the model failed: each waiting request learns it, the worker goes on
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(error)
                continue
            self.passes += 1
            self.requests += len(batch)
            start = 0
            for request in batch:
                end = start + len(request.pixels)
                if not request.answer.done():  # a client that went away has cancelled its future
                    request.answer.set_result(probabilities[start:end])
                start = end

    def _take_batch(self) -> list[_Request]:
        """The oldest waiting requests whose images fit in one pass (always at least one request)."""
        batch = [self._waiting.popleft()]
        count = len(batch[0].pixels)
        while self._waiting and count + len(self._waiting[0].pixels) <= self.max_batch:
            count += len(self._waiting[0].pixels)
            batch.append(self._waiting.popleft())
        return batch

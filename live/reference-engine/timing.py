"""When did a step's forward+sample finish? Two clocks, and the recorder that turns launched steps into
step-log rows once their end is known.

- `WallClock` (CPU, or `--step-timing sync` on CUDA): the step's end is `time.time()` right after the
  compute (on CUDA after synchronising the compute stream, which stalls async batching's overlap).
- `EventClock` (CUDA default): a CUDA event is recorded on the compute stream after the step; once
  it has completed (a later loop iteration), its wall-clock time is recovered by recording a
  reference event on an idle side stream, waiting for it and reading `time.time()`:
  end = now - elapsed(step event -> reference). Nothing blocks the generation loop, so async
  batching keeps overlapping the CPU work of step N+1 with the GPU work of step N. The error is
  the reference event's wake-up latency (microseconds).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from graphs import StepGraphUse
from steplog import BatchShape, StepRow


class StepClock(Protocol):
    """Stamps the end of a step's device work."""

    def mark_end(self, stream: Any) -> Any:
        """Called right after the step's work was queued on `stream`; returns an end marker."""
        ...

    def is_done(self, marker: Any) -> bool:
        """Whether the step behind `marker` has finished."""
        ...

    def wall_times(self, markers: list[Any]) -> list[float]:
        """Unix times at which the (finished) steps behind `markers` ended."""
        ...


class WallClock:
    """End = time.time() after the compute, synchronising the compute stream first on CUDA."""

    def mark_end(self, stream: Any) -> float:
        """Waits for `stream` (if any) and returns the wall time."""
        if stream is not None:
            stream.synchronize()
        return time.time()

    def is_done(self, marker: float) -> bool:
        """Always done: the wall time was taken after the work finished."""
        return True

    def wall_times(self, markers: list[float]) -> list[float]:
        """The markers are wall times already."""
        return markers


class EventClock:
    """End = the wall time of a CUDA event recorded after the step (see module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self._side = torch.cuda.Stream(device=device)

    def mark_end(self, stream: Any) -> torch.cuda.Event:
        """Records a timing event on `stream` (the current stream when None)."""
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    def is_done(self, marker: torch.cuda.Event) -> bool:
        """Whether the event has completed (non-blocking)."""
        return bool(marker.query())

    def wall_times(self, markers: list[torch.cuda.Event]) -> list[float]:
        """Converts completed events to unix times against one fresh reference event."""
        reference = torch.cuda.Event(enable_timing=True)
        reference.record(self._side)
        reference.synchronize()
        now = time.time()
        return [now - marker.elapsed_time(reference) / 1000.0 for marker in markers]


@dataclass(frozen=True)
class LaunchedStep:
    """A step whose end is not known yet."""

    shape: BatchShape
    start_unix_s: float
    end_marker: Any
    graph: StepGraphUse


class StepRecorder:
    """Numbers steps in launch order and emits a `StepRow` to `on_row` once a step's end is known.

    Called from the generation thread only.
    """

    def __init__(self, clock: StepClock, on_row: Callable[[StepRow], None]) -> None:
        self._clock = clock
        self._on_row = on_row
        self._pending: deque[LaunchedStep] = deque()
        self._next_step = 0
        self._last_end = 0.0

    def launched(self, shape: BatchShape, start_unix_s: float, stream: Any, graph: StepGraphUse) -> None:
        """Records a step right after its work was queued on `stream`."""
        self._pending.append(LaunchedStep(shape, start_unix_s, self._clock.mark_end(stream), graph))

    def poll(self) -> None:
        """Emits the rows of every finished step, oldest first (stops at the first unfinished one).

        A step starts when its scheduling began or, if later, when the previous step ended: with async
        batching step N is scheduled while step N-1 still runs, and only occupies the engine from
        N-1's end. Rows then tile the engine's busy time, and duration = end - start is the step's
        occupancy (the GPU time when the GPU is the bottleneck, scheduling + GPU time when the CPU is).
        """
        done: list[LaunchedStep] = []
        while self._pending and self._clock.is_done(self._pending[0].end_marker):
            done.append(self._pending.popleft())
        if not done:
            return
        ends = self._clock.wall_times([step.end_marker for step in done])
        for step, end in zip(done, ends):
            start = max(step.start_unix_s, self._last_end)
            row = StepRow(
                step=self._next_step,
                start_unix_s=start,
                duration_s=max(0.0, end - start),
                shape=step.shape,
                cuda_graph=step.graph.graph,
                captured=step.graph.captured,
            )
            self._next_step += 1
            self._last_end = max(self._last_end, end)
            self._on_row(row)

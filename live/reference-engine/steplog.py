"""The per-step log (/work/spec-stepmodel.md "Reference engine per-step log"): one row per engine
step, served as CSV at GET /steps and appended to `--step-log PATH`.

Columns: step, start_unix_s (time.time() when the step began to occupy the engine: when its scheduling
began or, with async batching, when the previous step ended if that is later), duration_s (from then
until the step's forward+sample finished on the device), num_scheduled_requests, num_prefill_tokens
(prompt or recompute tokens), num_decode_seqs, num_kv_tokens_read (sum over the step's sequences of
their context length including the step's new tokens), num_padded_tokens (query tokens after
CUDA-graph padding; == prefill + decode when eager), cuda_graph (1/0), captured (1 when the step
captured a graph). Rows tile the engine's busy time: no two steps overlap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

COLUMNS = (
    "step",
    "start_unix_s",
    "duration_s",
    "num_scheduled_requests",
    "num_prefill_tokens",
    "num_decode_seqs",
    "num_kv_tokens_read",
    "num_padded_tokens",
    "cuda_graph",
    "captured",
)
HEADER = ",".join(COLUMNS) + "\n"


@dataclass(frozen=True)
class BatchShape:
    """What a step computes, read from the prepared batch before it runs."""

    num_scheduled_requests: int
    num_prefill_tokens: int
    num_decode_seqs: int
    num_kv_tokens_read: int
    num_padded_tokens: int

    @property
    def num_tokens(self) -> int:
        """Query tokens before padding (P + D)."""
        return self.num_prefill_tokens + self.num_decode_seqs


@dataclass(frozen=True)
class StepRow:
    """One row of the step log."""

    step: int
    start_unix_s: float
    duration_s: float
    shape: BatchShape
    cuda_graph: bool
    captured: bool

    def to_csv(self) -> str:
        """The row as one CSV line (with its newline)."""
        s = self.shape
        fields = (
            str(self.step),
            f"{self.start_unix_s:.6f}",
            f"{self.duration_s:.6f}",
            str(s.num_scheduled_requests),
            str(s.num_prefill_tokens),
            str(s.num_decode_seqs),
            str(s.num_kv_tokens_read),
            str(s.num_padded_tokens),
            str(int(self.cuda_graph)),
            str(int(self.captured)),
        )
        return ",".join(fields) + "\n"


def describe_batch(io: Any) -> BatchShape:
    """The shape of the batch `io` (a transformers `ContinuousBatchingIOs`) holds after
    `prepare_batch_tensors`, which has already advanced each request's `position_offset` by its query.

    A sequence is decoding when it computes one token that is not part of its (possibly recomputed)
    prompt, i.e. the token it generated last; every other query token is a prefill token.
    """
    prefill = decode = kv_read = 0
    for future in io.requests_in_batch:
        state = future.state
        context = state.position_offset  # past + this step's query
        past = context - future.query_length
        if future.query_length == 1 and past >= len(state.initial_tokens):
            decode += 1
        else:
            prefill += future.query_length
        kv_read += context
    return BatchShape(
        num_scheduled_requests=len(io.requests_in_batch),
        num_prefill_tokens=prefill,
        num_decode_seqs=decode,
        num_kv_tokens_read=kv_read,
        num_padded_tokens=int(io.num_q_tokens),
    )


class StepLog:
    """Thread-safe in-memory step log, optionally mirrored to a CSV file (header first)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._rows: list[str] = []
        self._file: TextIO | None = None
        if path is not None:
            self._file = path.open("w", encoding="utf-8")
            self._file.write(HEADER)
            self._file.flush()

    def append(self, row: StepRow) -> None:
        """Adds one row (the file is flushed by `flush`, `csv` and `close`, not per row)."""
        line = row.to_csv()
        with self._lock:
            self._rows.append(line)
            if self._file is not None:
                self._file.write(line)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def csv(self) -> str:
        """The whole log as CSV text, header first."""
        self.flush()
        with self._lock:
            return HEADER + "".join(self._rows)

    def flush(self) -> None:
        """Pushes buffered rows to the file."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

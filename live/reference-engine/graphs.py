"""CUDA-graph policy of the reference engine: which steps replay a graph, how they are padded, and
which graphs are captured before serving.

transformers 5.17 (generation/continuous_batching/model_runner.py `ModelRunner.maybe_pad_inputs`,
`compute_batch`, `_capture_graph`) pads every varlen step's query tokens to a multiple of 64 and its
KV read to a multiple of 16384 tokens, and captures a graph lazily the first time a key
`(padded query tokens, padded KV tokens, padded max_seqlen_k)` is met, during serving. Here, as in
vLLM, graphs exist only for a fixed list of capture sizes:

- a step with T query tokens <= the largest capture size is padded to the smallest size >= T and
  replays the graph of `(size, KV bucket)`; larger steps run eagerly without padding;
- the KV read is padded to a multiple of `kv_bucket_tokens` (capped at the cache size), because the
  paged attention gathers that many KV slots per layer inside the graph;
- `max_seqlen_k` (a kernel launch constant baked into the graph) is derived from the key itself
  (`min(padded q + padded KV, max_model_len)`, an upper bound of every sequence's key length), so it
  adds no key dimension;
- every reachable key is captured up front (`capture_plan`, driven by synthetic batches that respect
  max_model_len, max_num_seqs and the cache size); a capture while serving is counted and logged.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.continuous_batching.model_runner import ModelRunner
from transformers.generation.continuous_batching.requests import (
    FutureRequestState,
    RequestState,
    RequestStatus,
)
from transformers.generation.continuous_batching.utils import pad_to_interval

log = logging.getLogger("refengine")

DEFAULT_CAPTURE_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
DEFAULT_KV_BUCKET_TOKENS = 16384  # transformers 5.17 FALLBACK_DEFAULTS["kv_padding_interval_size"]


@dataclass(frozen=True)
class GraphPolicy:
    """Which steps use CUDA graphs and how they are padded."""

    capture_sizes: tuple[int, ...]  # ascending query-token counts; empty = no graphs
    kv_bucket_tokens: int
    max_model_len: int

    def padded_query(self, num_tokens: int) -> int | None:
        """The capture size a step of `num_tokens` query tokens is padded to; None = run eagerly."""
        return next((s for s in self.capture_sizes if s >= num_tokens), None)

    def padded_kv(self, kv_tokens: int, num_pages: int) -> int:
        """The KV read of a graph step, padded to the bucket (at least one bucket, at most the cache)."""
        return pad_to_interval(kv_tokens, self.kv_bucket_tokens, num_pages)

    def max_seqlen_k(self, padded_query: int, padded_kv: int) -> int:
        """The `max_seqlen_k` a graph of this key is launched with: >= every sequence's key length."""
        return max(1, min(padded_query + padded_kv, self.max_model_len))


@dataclass(frozen=True)
class CacheLimits:
    """What bounds the batches an engine can form."""

    num_blocks: int
    block_size: int
    max_batch_tokens: int
    max_num_seqs: int

    @property
    def num_pages(self) -> int:
        """KV-cache slots (tokens)."""
        return self.num_blocks * self.block_size


@dataclass(frozen=True)
class WarmupSequence:
    """One synthetic sequence: `past` tokens already cached, `query` tokens computed in the step."""

    past: int
    query: int


@dataclass(frozen=True)
class WarmupBatch:
    """A synthetic step; `key` is the graph `(padded query, padded KV)` it captures, None = an eager step."""

    key: tuple[int, int] | None
    sequences: tuple[WarmupSequence, ...]


def kv_buckets(bucket_tokens: int, num_pages: int) -> list[int]:
    """The padded KV sizes a graph step can have: multiples of the bucket, the last capped at the cache."""
    return [min(b, num_pages) for b in range(bucket_tokens, num_pages + bucket_tokens, bucket_tokens)]


def capture_plan(policy: GraphPolicy, limits: CacheLimits) -> list[WarmupBatch]:
    """Synthetic steps that capture every graph key a real step can hit, largest KV first (so later
    captures fit in the memory pool the first one sized), then one eager step of the largest chunk.
    """
    batches: list[WarmupBatch] = []
    buckets = kv_buckets(policy.kv_bucket_tokens, limits.num_pages)
    for size in policy.capture_sizes:
        for i, bucket in enumerate(buckets):
            smallest_kv = buckets[i - 1] + 1 if i else 0
            sequences = _sequences_for(size, smallest_kv, limits, policy.max_model_len)
            if sequences is None:
                break  # more KV needs more sequences or memory: larger buckets are unreachable too
            batches.append(WarmupBatch(key=(size, bucket), sequences=sequences))
    batches.sort(key=lambda b: (b.key[1], b.key[0]) if b.key else (0, 0), reverse=True)
    largest = policy.capture_sizes[-1] if policy.capture_sizes else 0
    eager_tokens = min(limits.max_batch_tokens, policy.max_model_len - 1)
    if eager_tokens > largest:
        batches.append(WarmupBatch(key=None, sequences=(WarmupSequence(past=0, query=eager_tokens),)))
    return batches


def _sequences_for(
    tokens: int, kv_tokens: int, limits: CacheLimits, max_model_len: int
) -> tuple[WarmupSequence, ...] | None:
    """The fewest sequences that together compute `tokens` query tokens over `kv_tokens` cached ones,
    each no longer than max_model_len - 1 and all fitting in the cache; None if impossible."""
    longest = max_model_len - 1
    for n in range(1, min(tokens, limits.max_num_seqs) + 1):
        queries = [tokens // n + (1 if i < tokens % n else 0) for i in range(n)]
        caps = [longest - q for q in queries]
        if min(caps) < 0 or sum(caps) < kv_tokens:
            continue
        pasts, remaining = [], kv_tokens
        for i, cap in enumerate(caps):  # caps ascend (queries descend): water-filling succeeds
            share = min(cap, math.ceil(remaining / (n - i)))
            pasts.append(share)
            remaining -= share
        blocks = sum(math.ceil((p + q) / limits.block_size) for p, q in zip(pasts, queries))
        if blocks > limits.num_blocks:
            return None
        return tuple(WarmupSequence(past=p, query=q) for p, q in zip(pasts, queries))
    return None


@dataclass(frozen=True)
class StepGraphUse:
    """How the last step ran: replayed (or captured) a graph, and whether it captured one."""

    graph: bool = False
    captured: bool = False


def host_io(ios: Any) -> Any:
    """The host-side IO object holding the batch being prepared (sync and async batching)."""
    pairs = getattr(ios, "io_pairs", None)
    return ios if pairs is None else pairs[ios.current_pair].host_io


def device_io(ios: Any) -> Any:
    """The device-side IO object whose tensors (and graph keys) the next forward uses."""
    pairs = getattr(ios, "io_pairs", None)
    return ios if pairs is None else pairs[ios.current_pair].device_io


class PolicyModelRunner(ModelRunner):
    """transformers' ModelRunner with the capture-size policy above, capture counting and an up-front
    warm-up of every reachable graph key."""

    policy: GraphPolicy
    limits: CacheLimits
    last_step: StepGraphUse
    captures: int
    serving: bool

    @classmethod
    def replacing(cls, runner: ModelRunner, policy: GraphPolicy, limits: CacheLimits) -> PolicyModelRunner:
        """A runner built from the same parts as `runner` (which transformers created), using `policy`."""
        new = cls(
            logit_processor=runner.logit_processor,
            cb_config=runner.cb_config,
            inputs_and_outputs=runner.inputs_and_outputs,
            cache=runner.cache,
            do_sample=runner.do_sample,
            return_logprobs=runner.return_logprobs,
        )
        new.policy, new.limits = policy, limits
        new.last_step, new.captures, new.serving = StepGraphUse(), 0, False
        new._captured_now = False
        return new

    def maybe_pad_inputs(
        self, num_q_tokens: int, max_kv_read: int, use_decode_fast_path: bool
    ) -> tuple[int, int]:
        """Pads a graph step to its capture size and KV bucket; leaves an eager step as it is.

        Also sets `pad_inputs`, which transformers reads for this step's tensor preparation.
        """
        del use_decode_fast_path  # the decode fast path is off (max_blocks_per_request = 0)
        padded = self.policy.padded_query(num_q_tokens) if self.use_cuda_graph_varlen else None
        self.pad_inputs = padded is not None
        if padded is None:
            return num_q_tokens, max_kv_read
        return padded, self.policy.padded_kv(max_kv_read, self.cache.num_pages)

    def _get_forward_fn(self, use_block_table: bool) -> tuple[Any, bool]:
        forward_fn, _ = super()._get_forward_fn(use_block_table)
        return forward_fn, self.use_cuda_graph_varlen and self.pad_inputs

    def compute_batch(self, model: torch.nn.Module, batch_data: dict) -> None:
        """Runs the step (replaying, capturing or eager) and records how it ran in `last_step`."""
        graph = self.use_cuda_graph_varlen and self.pad_inputs
        if graph:
            io = device_io(self.inputs_and_outputs)
            bound = self.policy.max_seqlen_k(io.num_q_tokens, io.max_kv_read)
            io.max_seqlen_k = dict.fromkeys(io.max_seqlen_k, bound)
            if isinstance(batch_data["max_seqlen_k"], dict):
                batch_data["max_seqlen_k"] = dict.fromkeys(batch_data["max_seqlen_k"], bound)
            else:
                batch_data["max_seqlen_k"] = bound
        self._captured_now = False
        super().compute_batch(model, batch_data)
        self.last_step = StepGraphUse(graph=graph, captured=self._captured_now)

    def _capture_graph(self, forward_fn: Any, compute_stream: Any, *args: Any) -> None:
        super()._capture_graph(forward_fn, compute_stream, *args)
        self.captures += 1
        self._captured_now = True
        if self.serving:
            key = device_io(self.inputs_and_outputs)._get_graph_key()
            log.warning(
                "captured a CUDA graph while serving at %.6f (unix s): key %s was not warmed up",
                time.time(),
                key,
            )

    @torch.no_grad()
    def warmup(self, model: torch.nn.Module) -> None:
        """Captures every graph of `capture_plan` (on both IO pairs with async batching) and runs one
        eager step of the largest chunk, so no step while serving meets a cold path."""
        pairs = 2 if hasattr(self.inputs_and_outputs, "io_pairs") else 1
        plan = capture_plan(self.policy, self.limits) if self.use_cuda_graph_varlen else []
        if not plan:
            plan = [WarmupBatch(key=None, sequences=(WarmupSequence(past=0, query=1),))]
        log.info("warm-up: %d synthetic steps per IO pair (%d IO pairs)", len(plan), pairs)
        for _ in range(pairs):
            for batch in plan:
                self._run_warmup_batch(model, batch)
            if pairs == 2:
                self.inputs_and_outputs.swap_io_pairs()

    def _run_warmup_batch(self, model: torch.nn.Module, batch: WarmupBatch) -> None:
        """Prepares and runs one synthetic step the way transformers' `run_one_warmup` does."""
        states = self._allocate_synthetic(batch)
        try:
            num_q = sum(s.query for s in batch.sequences)
            kv = sum(s.past for s in batch.sequences)
            padded_q, padded_kv = self.maybe_pad_inputs(num_q, kv, False)
            key = (padded_q, padded_kv) if self.pad_inputs else None
            if key != batch.key:
                raise RuntimeError(
                    f"warm-up step {batch} would run as key {key}: the capture plan is inconsistent"
                )
            ios = self.inputs_and_outputs
            ios.prepare_batch_tensors(
                states, self.logit_processor, False, padded_q, padded_kv, self.pad_inputs
            )
            self.compute_batch(model, ios.get_model_kwargs(use_padding=self.pad_inputs))
            if self.cache.device.type == "cuda":
                torch.cuda.synchronize()  # the next synthetic step rewrites the same pinned host buffers
        finally:
            for future in states:
                self.cache.free_blocks(future.state.request_id)

    def _allocate_synthetic(self, batch: WarmupBatch) -> list[FutureRequestState]:
        """Synthetic request states with cache blocks for `batch` (freed by the caller)."""
        states: list[FutureRequestState] = []
        for i, seq in enumerate(batch.sequences):
            state = RequestState(
                request_id=f"__refengine_warmup_{i}__", initial_tokens=[0] * (seq.past + seq.query)
            )
            state._status = RequestStatus.PREFILLING  # bypass the setter's lifespan bookkeeping
            state.tokens_to_process = [0] * seq.query
            state.position_offset = seq.past
            blocks = math.ceil((seq.past + seq.query) / self.cache.block_size)
            if self.cache.allocate_blocks(blocks, state.request_id, 0) is None:
                for future in states:
                    self.cache.free_blocks(future.state.request_id)
                raise RuntimeError(f"warm-up step {batch} does not fit in {self.cache.num_blocks} KV blocks")
            states.append(
                FutureRequestState(state, has_new_token=True, complete_blocks=0, query_length=seq.query)
            )
        return states

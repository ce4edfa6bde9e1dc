"""The engine: a random-weight model behind transformers 5.17 continuous batching, with the step loop
instrumented (per-step timing and log, graph-capture counting, eviction counting) and a warm-up that
captures every CUDA graph before serving.

What is transformers' and what is ours:
- scheduling, KV blocks, chunked prefill, eviction (transformers generation/continuous_batching:
  `FIFOScheduler.schedule_batch`, `PagedAttentionCache`, `OffloadingManager.offload_requests`);
- the step loop is transformers' `ContinuousBatchingManager._generation_loop_body` (5.17), copied in
  `InstrumentedManager` with a timestamp before scheduling, a batch description before the forward,
  an end marker after it, and polling of finished steps;
- graph padding and warm-up are ours (graphs.py); the "flash" attention is ours (attention.py).
Greedy sampling, EOS disabled: every request generates exactly its max_new_tokens.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from transformers import GenerationConfig, PreTrainedModel
from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.continuous_batching import ContinuousBatchingManager
from transformers.generation.continuous_batching.continuous_api import (
    BackgroundThreadStatus,
    ContinuousBatchProcessor,
)
from transformers.generation.continuous_batching.requests import GenerationOutput
from transformers.utils import is_psutil_available

from attention import SDPA_ATTN_NAME, check_flash_available, register_flash_attention
from graphs import CacheLimits, GraphPolicy, PolicyModelRunner, host_io
from shapes import ModelShape, build_model
from steplog import StepLog, StepRow, describe_batch
from timing import EventClock, StepClock, StepRecorder, WallClock

log = logging.getLogger("refengine")

# Memory a CUDA process holds outside torch's allocator (context, cuBLAS workspace) plus graph-pool
# slack, kept out of the KV budget when sizing from --gpu-memory-fraction. A guess, not measured.
CUDA_SLACK_BYTES = 1 << 30


@dataclass(frozen=True)
class KvSize:
    """How big the KV cache is: exactly `num_blocks`, `memory_gib` of it, or (both None) what the
    memory fraction leaves after the weights (CUDA) / 4 x max_model_len tokens (CPU)."""

    num_blocks: int | None = None
    memory_gib: float | None = None
    gpu_memory_fraction: float | None = None


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine is built from."""

    shape: ModelShape
    device: torch.device
    dtype: torch.dtype
    attn: str  # "flash" or "sdpa"
    block_size: int
    max_batch_tokens: int
    max_num_seqs: int
    max_model_len: int
    kv: KvSize
    cuda_graph_sizes: tuple[int, ...]  # empty: no CUDA graphs
    kv_bucket_tokens: int
    async_batching: bool
    step_timing: str  # "event" or "sync" (CUDA); CPU always times with the wall clock
    seed: int
    inject_attention_bug: bool = False
    return_logprobs: bool = False

    @property
    def uses_cuda_graphs(self) -> bool:
        """Graphs only exist on CUDA, when capture sizes are given."""
        return self.device.type == "cuda" and bool(self.cuda_graph_sizes)


def validate_config(cfg: EngineConfig) -> None:
    """Raises ValueError naming the flag to change when `cfg` cannot run here."""
    if cfg.device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: no CUDA device is visible (check CUDA_VISIBLE_DEVICES) or use --device cpu"
        )
    if cfg.device.type == "cpu" and cfg.async_batching:
        raise ValueError("async batching needs CUDA streams: pass --no-async-batching with --device cpu")
    if cfg.device.type == "cpu" and not is_psutil_available():
        raise ValueError(
            "--device cpu needs psutil (transformers reads the free CPU memory with it): pip install psutil"
        )
    if cfg.attn not in ("flash", "sdpa"):
        raise ValueError(f"--attn must be flash or sdpa, got {cfg.attn!r}")
    if cfg.attn == "flash":
        check_flash_available(cfg.device, cfg.dtype)
    if cfg.max_model_len > cfg.shape.max_position_embeddings:
        raise ValueError(
            f"--max-model-len {cfg.max_model_len} exceeds {cfg.shape.name}'s max_position_embeddings "
            f"{cfg.shape.max_position_embeddings}"
        )
    for name, value in [
        ("--block-size", cfg.block_size),
        ("--max-batch-tokens", cfg.max_batch_tokens),
        ("--max-num-seqs", cfg.max_num_seqs),
        ("--max-model-len", cfg.max_model_len),
        ("--kv-bucket-tokens", cfg.kv_bucket_tokens),
    ]:
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if list(cfg.cuda_graph_sizes) != sorted(set(cfg.cuda_graph_sizes)) or any(
        s < 1 for s in cfg.cuda_graph_sizes
    ):
        raise ValueError(
            f"--cuda-graph-sizes must be distinct positive integers, ascending; got {cfg.cuda_graph_sizes}"
        )


class EngineListener(Protocol):
    """Receives engine events (called from the generation thread)."""

    def step(self, row: StepRow) -> None:
        """A step finished."""
        ...

    def preempted(self, num_requests: int) -> None:
        """Requests were evicted from the KV cache (to be recomputed later)."""
        ...


@dataclass(frozen=True)
class EngineSnapshot:
    """Scheduler gauges, as of the last loop iteration."""

    running: int = 0
    waiting: int = 0
    free_blocks: int = 0


class EngineUnavailable(RuntimeError):
    """The engine is warming up, stopping or dead."""


class InstrumentedManager(ContinuousBatchingManager):
    """transformers' manager with our model runner, eviction counting and an instrumented step loop."""

    def __init__(
        self,
        model: PreTrainedModel,
        generation_config: GenerationConfig,
        cb_config: ContinuousBatchingConfig,
        policy: GraphPolicy,
        clock: StepClock,
        on_row: Callable[[StepRow], None],
        on_preempted: Callable[[int], None],
    ) -> None:
        self._policy = policy
        self._recorder = StepRecorder(clock, on_row)
        self._on_preempted = on_preempted
        self.snapshot = EngineSnapshot()
        super().__init__(model, generation_config, cb_config)

    def _create_batch_processor(self) -> ContinuousBatchProcessor:
        """transformers' processor (reset if it exists), with our runner and eviction counter installed."""
        processor = super()._create_batch_processor()
        if not isinstance(processor.model_runner, PolicyModelRunner):
            cache = processor.cache
            sizes = tuple(s for s in self._policy.capture_sizes if s <= cache.max_batch_tokens)
            limits = CacheLimits(
                num_blocks=cache.num_blocks,
                block_size=cache.block_size,
                max_batch_tokens=cache.max_batch_tokens,
                max_num_seqs=processor.scheduler.max_requests_per_batch,
            )
            policy = replace(self._policy, capture_sizes=sizes)
            processor.model_runner = PolicyModelRunner.replacing(processor.model_runner, policy, limits)
            processor.offloading_manager.offload_requests = _counting(
                processor.offloading_manager.offload_requests, self._on_preempted
            )
        return processor

    def _generation_loop_body(self, batch_processor: ContinuousBatchProcessor, bootstrapping: bool) -> bool:
        """transformers 5.17 `ContinuousBatchingManager._generation_loop_body` with the step recorded."""
        start = time.time()
        if batch_processor.prepare_next_batch():
            shape = describe_batch(host_io(batch_processor.inputs_and_outputs))
            self._generation_step()
            stream = batch_processor.inputs_and_outputs.compute_stream
            self._recorder.launched(shape, start, stream, batch_processor.model_runner.last_step)
            self.current_batch += 1
            if bootstrapping:  # no update when bootstrapping an async batching generation
                return False
            batch_processor.update_batch()
            self._after_iteration(batch_processor)
            return True
        self._after_iteration(batch_processor)
        status = self.background_thread_status.tp_status
        if status == BackgroundThreadStatus.HARD_STOP:
            return False
        if status == BackgroundThreadStatus.FLUSH_AND_STOP and not batch_processor.has_pending_requests():
            return False
        self._has_new_requests.wait(timeout=0.1)
        self._has_new_requests.clear()
        return True

    def _after_iteration(self, batch_processor: ContinuousBatchProcessor) -> None:
        """Emits finished steps and refreshes the gauges."""
        self._recorder.poll()
        scheduler = batch_processor.scheduler
        self.snapshot = EngineSnapshot(
            running=len(scheduler.active_requests),
            waiting=len(scheduler.waiting_requests),
            free_blocks=batch_processor.cache.get_num_free_blocks(),
        )

    def drop_handler(self, request_id: str) -> None:
        """Forgets a request's result handler (transformers removes it only when the request finishes)."""
        router = self.output_router
        with router._lock:
            router.result_handlers.pop(request_id, None)


def _counting(offload: Callable[[], int], on_evicted: Callable[[int], None]) -> Callable[[], int]:
    """Wraps `OffloadingManager.offload_requests` (which returns how many requests it evicted)."""

    def offload_and_count() -> int:
        evicted = offload()
        if evicted:
            on_evicted(evicted)
        return evicted

    return offload_and_count


@dataclass(frozen=True)
class WarmupReport:
    """What warm-up did."""

    graphs: int
    seconds: float
    num_blocks: int
    max_batch_tokens: int


class ReferenceEngine:
    """A served model: build it (blocking, in any thread), start it, submit and cancel requests."""

    def __init__(self, cfg: EngineConfig, listener: EngineListener, step_log: StepLog) -> None:
        validate_config(cfg)
        self.cfg = cfg
        self._listener = listener
        self._step_log = step_log
        self._manager: InstrumentedManager | None = None
        self._ids = itertools.count()
        self._started = False
        self.num_blocks = 0

    def build(self) -> WarmupReport:
        """Creates the model and the KV cache and captures the CUDA graphs (seconds to minutes)."""
        cfg = self.cfg
        if cfg.device.type == "cuda" and cfg.kv.gpu_memory_fraction is not None:
            torch.cuda.set_per_process_memory_fraction(cfg.kv.gpu_memory_fraction, torch.device(cfg.device).index or 0)
        started = time.perf_counter()
        model = build_model(cfg.shape, cfg.device, cfg.dtype, cfg.seed)
        model.config._attn_implementation = (
            register_flash_attention(cfg.inject_attention_bug) if cfg.attn == "flash" else SDPA_ATTN_NAME
        )
        log.info("model %s built on %s in %.1f s", cfg.shape.name, cfg.device, time.perf_counter() - started)
        policy = GraphPolicy(
            cfg.cuda_graph_sizes if cfg.uses_cuda_graphs else (), cfg.kv_bucket_tokens, cfg.max_model_len
        )
        clock: StepClock = (
            EventClock(cfg.device)
            if cfg.device.type == "cuda" and cfg.step_timing == "event"
            else WallClock()
        )
        self._manager = InstrumentedManager(
            model,
            GenerationConfig(do_sample=False, eos_token_id=-1, max_new_tokens=16),
            self._cb_config(),
            policy,
            clock,
            self._on_row,
            self._listener.preempted,
        )
        started = time.perf_counter()
        try:
            self._manager.warmup()
        except MemoryError as e:
            raise ValueError(
                f"the KV cache does not fit: {e}; lower --kv-memory-gib/--num-blocks/--max-batch-tokens"
            ) from e
        processor = self._manager.batch_processor
        if processor is None or not isinstance(processor.model_runner, PolicyModelRunner):
            raise RuntimeError("transformers did not create the batch processor during warm-up")
        self.num_blocks = processor.cache.num_blocks
        capacity = self.num_blocks * processor.cache.block_size
        if capacity < cfg.max_model_len:
            raise ValueError(
                f"the KV cache holds {capacity} tokens, less than --max-model-len {cfg.max_model_len}: "
                "raise --kv-memory-gib/--num-blocks or lower --max-model-len"
            )
        return WarmupReport(
            graphs=processor.model_runner.captures,
            seconds=time.perf_counter() - started,
            num_blocks=self.num_blocks,
            max_batch_tokens=processor.cache.max_batch_tokens,
        )

    def _cb_config(self) -> ContinuousBatchingConfig:
        cfg = self.cfg
        num_blocks, memory_percent = kv_plan(cfg)
        return ContinuousBatchingConfig(
            block_size=cfg.block_size,
            num_blocks=num_blocks,
            max_batch_tokens=cfg.max_batch_tokens,
            max_memory_percent=memory_percent,
            max_requests_per_batch=cfg.max_num_seqs,
            max_blocks_per_request=0,  # no flash_attn_with_kvcache decode path
            allow_block_sharing=False,  # no prefix caching
            use_async_batching=cfg.async_batching,
            use_cuda_graph=cfg.uses_cuda_graphs,
            scheduler_type="fifo",
            seed=cfg.seed,
            return_logprobs=cfg.return_logprobs,
        )

    def _on_row(self, row: StepRow) -> None:
        self._step_log.append(row)
        self._listener.step(row)

    def start(self) -> None:
        """Starts the generation thread; from now on a graph capture is a logged anomaly."""
        manager = self._require_manager()
        processor = manager.batch_processor
        if processor is not None and isinstance(processor.model_runner, PolicyModelRunner):
            processor.model_runner.serving = True
        manager.start()
        self._started = True

    def stop(self) -> None:
        """Stops the generation thread (pending requests fail) and flushes the step log."""
        if self._manager is not None and self._started:
            self._manager.stop(block=True, timeout=30, hard_stop=True)
        self._step_log.close()

    def health_problem(self) -> str | None:
        """None when serving; else why not (the LB should eject this engine)."""
        if self._manager is None or not self._started:
            return "warming up"
        error = self._manager.background_thread_status.fatal_error
        if error is not None:
            return f"the engine loop died: {error}"
        if not self._manager.is_running():
            return "the engine loop is not running"
        return None

    def submit(
        self, token_ids: list[int], max_tokens: int, on_output: Callable[[GenerationOutput], None]
    ) -> str:
        """Queues a request; `on_output` gets every cumulative output on the caller's event loop.

        Must be called from a coroutine (transformers binds the handler to the running loop).
        """
        manager = self._require_manager()
        problem = self.health_problem()
        if problem is not None:
            raise EngineUnavailable(problem)
        request_id = f"req-{next(self._ids)}"
        manager.register_result_handler(request_id, on_output)
        accepted = manager.add_request(
            token_ids, request_id=request_id, max_new_tokens=max_tokens, streaming=True, eos_token_id=-1
        )
        if accepted is None:
            manager.drop_handler(request_id)
            raise EngineUnavailable("the engine is not accepting requests")
        return request_id

    def cancel(self, request_id: str) -> None:
        """Cancels a request (its blocks are freed at the next step) and drops its handler."""
        manager = self._require_manager()
        manager.cancel_request(request_id)
        manager.drop_handler(request_id)

    def snapshot(self) -> EngineSnapshot:
        """Scheduler gauges; requests not yet picked up by the loop count as waiting."""
        if self._manager is None:
            return EngineSnapshot()
        snap = self._manager.snapshot
        return replace(snap, waiting=snap.waiting + self._manager.input_queue.qsize())

    def _require_manager(self) -> InstrumentedManager:
        if self._manager is None:
            raise EngineUnavailable("the engine is still warming up")
        return self._manager


def kv_plan(cfg: EngineConfig) -> tuple[int | None, float]:
    """(num_blocks, max_memory_percent) for transformers' cache sizing.

    Explicit sizes give the block count (the memory percent then only bounds transformers' footprint
    check). Otherwise, on CUDA, transformers solves the block count from the memory it is offered:
    the fraction of the device's total memory this engine may hold, less what it holds already
    (the weights) and `CUDA_SLACK_BYTES`, offered as a share of the free memory. On CPU the default
    is 4 x max_model_len tokens.
    """
    bytes_per_block = cfg.block_size * cfg.shape.kv_bytes_per_token(cfg.dtype)
    if cfg.kv.num_blocks is not None:
        return cfg.kv.num_blocks, 1.0
    if cfg.kv.memory_gib is not None:
        return max(1, int(cfg.kv.memory_gib * (1 << 30) // bytes_per_block)), 1.0
    if cfg.device.type != "cuda":
        return math.ceil(4 * cfg.max_model_len / cfg.block_size), 1.0
    fraction = cfg.kv.gpu_memory_fraction if cfg.kv.gpu_memory_fraction is not None else 0.9
    free, total = torch.cuda.mem_get_info(torch.device(cfg.device).index or 0)
    budget = fraction * total - torch.cuda.memory_reserved(cfg.device) - CUDA_SLACK_BYTES
    if budget <= bytes_per_block:
        raise ValueError(
            f"--gpu-memory-fraction {fraction} leaves no room for a KV cache after the weights "
            f"({torch.cuda.memory_reserved(cfg.device) / 2**30:.1f} GiB held); "
            "raise it or pass --kv-memory-gib"
        )
    return None, min(1.0, budget / max(free, 1))

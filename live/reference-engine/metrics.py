"""GET /metrics: vLLM's metric names and labels (`{model_name, engine="0"}`, as vLLM V1), so our scraper
(live/src/prom.rs), our LB and vLLM-aware routers read this engine like a vLLM server.

Where the numbers come from:
- num_requests_running / num_requests_waiting: the scheduler's active and waiting requests (plus
  requests not yet picked up by the loop), refreshed every loop iteration;
- kv_cache_usage_perc (and its pre-0.11 alias gpu_cache_usage_perc): used / total KV blocks;
- num_preemptions_total: requests evicted from the KV cache by transformers'
  `OffloadingManager.offload_requests` (recomputed later: vLLM's preemption by recompute);
- prompt_tokens_total: prompt tokens of requests once their first token is out; generation_tokens_total:
  tokens delivered;
- time_to_first_token, inter_token_latency (and the pre-0.11 name time_per_output_token, the same
  per-gap observations), e2e_request_latency, request_queue_time: per request, measured by the HTTP
  server from the request's arrival (after validation) to the token callbacks on its event loop;
  queue time from transformers' request lifespan (added -> first scheduled);
- iteration_tokens_total: query tokens (before padding) per step;
- cache_config_info: block_size and num_gpu_blocks labels, value 1.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine import EngineSnapshot
from steplog import StepRow

# vLLM V1 v1/metrics/loggers.py buckets (seconds).
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
REQUEST_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

LABELS = ("model_name", "engine")


class EngineMetrics:
    """The engine's Prometheus registry; also the engine's `EngineListener`."""

    def __init__(self, model_name: str, snapshot: Callable[[], EngineSnapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = {"model_name": model_name, "engine": "0"}
        self._snapshot = snapshot
        self._num_blocks = 0
        r = self.registry
        running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", LABELS, registry=r
        )
        waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", LABELS, registry=r
        )
        kv = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", LABELS, registry=r
        )
        gpu = Gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage (pre-0.11 name).", LABELS, registry=r)
        running.labels(**self._labels).set_function(lambda: self._snapshot().running)
        waiting.labels(**self._labels).set_function(lambda: self._snapshot().waiting)
        kv.labels(**self._labels).set_function(self._kv_usage)
        gpu.labels(**self._labels).set_function(self._kv_usage)
        self._preemptions = self._counter(
            "vllm:num_preemptions", "Cumulative number of preemptions (evictions)."
        )
        self._prompt_tokens = self._counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self._generation_tokens = self._counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        self._success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*LABELS, "finished_reason"),
            registry=r,
        ).labels(**self._labels, finished_reason="length")
        self._ttft = self._histogram("vllm:time_to_first_token_seconds", "Time to first token.", TTFT_BUCKETS)
        self._itl = self._histogram("vllm:inter_token_latency_seconds", "Inter-token latency.", ITL_BUCKETS)
        self._tpot = self._histogram(
            "vllm:time_per_output_token_seconds", "Inter-token latency (pre-0.11 name).", ITL_BUCKETS
        )
        self._e2e = self._histogram(
            "vllm:e2e_request_latency_seconds", "End-to-end request latency.", REQUEST_BUCKETS
        )
        self._queue = self._histogram(
            "vllm:request_queue_time_seconds", "Time spent waiting before the first step.", REQUEST_BUCKETS
        )
        self._iteration = self._histogram(
            "vllm:iteration_tokens_total", "Query tokens per engine step.", ITERATION_BUCKETS
        )
        self._cache_info = Gauge(
            "vllm:cache_config_info",
            "Information of the cache config.",
            (*LABELS, "block_size", "num_gpu_blocks"),
            registry=r,
        )

    def _counter(self, name: str, doc: str) -> Counter:
        return Counter(name, doc, LABELS, registry=self.registry).labels(**self._labels)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, LABELS, buckets=buckets, registry=self.registry).labels(**self._labels)

    def _kv_usage(self) -> float:
        if self._num_blocks <= 0:
            return 0.0
        return 1.0 - self._snapshot().free_blocks / self._num_blocks

    def set_cache_config(self, block_size: int, num_blocks: int) -> None:
        """Publishes the KV cache's shape (once it exists)."""
        self._num_blocks = num_blocks
        self._cache_info.labels(
            **self._labels, block_size=str(block_size), num_gpu_blocks=str(num_blocks)
        ).set(1)

    # EngineListener (generation thread)
    def step(self, row: StepRow) -> None:
        """One engine step finished."""
        self._iteration.observe(row.shape.num_tokens)

    def preempted(self, num_requests: int) -> None:
        """Requests were evicted."""
        self._preemptions.inc(num_requests)

    # Request events (HTTP event loop)
    def first_token(self, ttft_s: float, queue_s: float, prompt_tokens: int) -> None:
        """A request's first token reached the server."""
        self._ttft.observe(ttft_s)
        self._queue.observe(queue_s)
        self._prompt_tokens.inc(prompt_tokens)

    def tokens(self, count: int, gaps_s: list[float]) -> None:
        """`count` more tokens, with the gaps since each one's predecessor (none for the first)."""
        self._generation_tokens.inc(count)
        for gap in gaps_s:
            self._itl.observe(gap)
            self._tpot.observe(gap)

    def finished(self, e2e_s: float) -> None:
        """A request completed all its tokens."""
        self._e2e.observe(e2e_s)
        self._success.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

#!/usr/bin/env python3
"""ModelsGuard reference engine: an OpenAI/vLLM-compatible HTTP server over transformers continuous
batching with random weights. A stand-in where vLLM cannot be installed; it is NOT vLLM.

    python3 server.py --model llama-3.1-8b --port 8001             # CUDA, bf16, varlen flash, graphs
    python3 server.py --model tiny --device cpu --dtype float32     # anywhere, for tests

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /health (503 until warm or when
the engine loop died), GET /v1/models, GET /metrics (vLLM names), GET /steps (per-step CSV).
See README.md for every flag.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from transformers.generation.continuous_batching.requests import GenerationOutput, RequestStatus

from engine import EngineConfig, EngineUnavailable, KvSize, ReferenceEngine, validate_config
from graphs import DEFAULT_CAPTURE_SIZES, DEFAULT_KV_BUCKET_TOKENS
from metrics import EngineMetrics
from protocol import (
    DONE,
    BadRequest,
    GenerateRequest,
    ResponseMeta,
    error_body,
    models_list,
    parse_request,
    stream_error_event,
)
from shapes import SHAPES
from steplog import StepLog

log = logging.getLogger("refengine")
T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see README.md)."""
    p = argparse.ArgumentParser(description="ModelsGuard reference engine (a stand-in for vLLM, not vLLM)")
    p.add_argument("--model", required=True, choices=sorted(SHAPES), help="model shape (random weights)")
    p.add_argument("--served-model-name", help="name clients send as `model` (default: --model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument(
        "--attn",
        choices=("flash", "sdpa"),
        default="flash",
        help="flash = torch varlen_attn; sdpa = transformers paged|sdpa",
    )
    p.add_argument("--block-size", type=int, default=256, help="tokens per KV block")
    p.add_argument(
        "--max-batch-tokens", "--max-num-batched-tokens", dest="max_batch_tokens", type=int, default=8192
    )
    p.add_argument("--max-num-seqs", type=int, default=1024)
    p.add_argument(
        "--max-model-len", type=int, help="longest prompt + output (default: the shape's max positions)"
    )
    kv = p.add_mutually_exclusive_group()
    kv.add_argument(
        "--num-blocks",
        "--num-gpu-blocks-override",
        dest="num_blocks",
        type=int,
        help="KV cache size in blocks",
    )
    kv.add_argument("--kv-memory-gib", type=float, help="KV cache size in GiB")
    p.add_argument(
        "--gpu-memory-fraction",
        "--gpu-memory-utilization",
        dest="gpu_memory_fraction",
        type=float,
        help="cap this process at this fraction of the GPU (torch.cuda.set_per_process_memory_fraction); "
        "without a KV size, the KV cache takes what the fraction leaves (default 0.9)",
    )
    p.add_argument(
        "--cuda-graph-sizes",
        default=",".join(map(str, DEFAULT_CAPTURE_SIZES)),
        help="padded query-token sizes with a graph",
    )
    p.add_argument("--no-cuda-graphs", action="store_true", help="run every step eagerly")
    p.add_argument(
        "--kv-bucket-tokens",
        type=int,
        default=DEFAULT_KV_BUCKET_TOKENS,
        help="KV read padding of graph steps",
    )
    p.add_argument(
        "--no-async-batching", action="store_true", help="schedule step N+1 only after step N finished"
    )
    p.add_argument(
        "--step-timing",
        choices=("event", "sync"),
        default="event",
        help="CUDA step end: event (no stall) or sync",
    )
    p.add_argument("--step-log", type=Path, help="also write the per-step CSV here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine configuration the arguments describe; ValueError names a bad flag."""
    shape = SHAPES[args.model]
    try:
        sizes = tuple(int(s) for s in args.cuda_graph_sizes.split(",") if s.strip())
    except ValueError as e:
        raise ValueError(
            f"--cuda-graph-sizes must be comma-separated integers, got {args.cuda_graph_sizes!r}"
        ) from e
    device = torch.device(args.device)
    return EngineConfig(
        shape=shape,
        device=device,
        dtype=getattr(torch, args.dtype),
        attn=args.attn,
        block_size=args.block_size,
        max_batch_tokens=args.max_batch_tokens,
        max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len or shape.max_position_embeddings,
        kv=KvSize(
            num_blocks=args.num_blocks,
            memory_gib=args.kv_memory_gib,
            gpu_memory_fraction=args.gpu_memory_fraction,
        ),
        cuda_graph_sizes=() if args.no_cuda_graphs else sizes,
        kv_bucket_tokens=args.kv_bucket_tokens,
        async_batching=device.type == "cuda" and not args.no_async_batching,
        step_timing=args.step_timing,
        seed=args.seed,
    )


@dataclass
class ServerState:
    """What the handlers share."""

    engine: ReferenceEngine
    metrics: EngineMetrics
    step_log: StepLog
    served_name: str
    response_ids: Iterator[int] = field(default_factory=itertools.count)


class GenerationFailed(RuntimeError):
    """The engine failed a request after it was accepted."""


@dataclass
class RequestTracker:
    """Per-request latency bookkeeping for /metrics."""

    metrics: EngineMetrics
    arrival: float
    prompt_tokens: int
    last_token: float | None = None
    finished: bool = False

    def on_tokens(self, output: GenerationOutput, count: int, at: float) -> None:
        """`count` new tokens arrived at monotonic time `at`."""
        if count <= 0:
            return
        if self.last_token is None:
            queue_s = output.lifespan[0] - output.created_time if output.lifespan[0] > 0 else 0.0
            self.metrics.first_token(at - self.arrival, max(0.0, queue_s), self.prompt_tokens)
            gaps = [0.0] * (count - 1)
        else:
            gaps = [at - self.last_token] + [0.0] * (count - 1)
        self.metrics.tokens(count, gaps)
        self.last_token = at
        if output.is_finished():
            self.finished = True
            self.metrics.finished(at - self.arrival)


def error_response(status: int, message: str) -> web.Response:
    """A vLLM-shaped JSON error."""
    return web.json_response(error_body(status, message), status=status)


async def token_stream(queue: asyncio.Queue, tracker: RequestTracker) -> AsyncIterator[list[int]]:
    """The new tokens of each engine output, until the request finishes; raises GenerationFailed."""
    sent = 0
    while True:
        output, at = await queue.get()
        if output.error is not None or output.status == RequestStatus.FAILED:
            raise GenerationFailed(output.error or "the engine failed the request")
        new = output.generated_tokens[sent:]
        tracker.on_tokens(output, len(new), at)
        sent += len(new)
        if new:
            yield new
        if output.is_finished():
            return


async def handle_generate(request: web.Request, chat: bool) -> web.StreamResponse:
    """POST /v1/completions and /v1/chat/completions."""
    state: ServerState = request.app["state"]
    engine = state.engine
    try:
        req = parse_request(
            await request.read(),
            chat,
            state.served_name,
            engine.cfg.shape.vocab_size,
            engine.cfg.max_model_len,
        )
    except BadRequest as e:
        return error_response(e.status, str(e))
    arrival = time.monotonic()
    queue: asyncio.Queue = asyncio.Queue()
    try:
        request_id = engine.submit(
            req.prompt_ids, req.max_tokens, lambda out: queue.put_nowait((out, time.monotonic()))
        )
    except EngineUnavailable as e:
        return error_response(503, str(e))
    tracker = RequestTracker(state.metrics, arrival, len(req.prompt_ids))
    meta = ResponseMeta(
        chat=chat,
        id=f"{'chatcmpl' if chat else 'cmpl'}-{next(state.response_ids)}",
        created=int(time.time()),
        model=state.served_name,
    )
    try:
        if req.stream:
            return await stream_response(request, req, meta, token_stream(queue, tracker))
        return await whole_response(req, meta, token_stream(queue, tracker))
    finally:
        if not tracker.finished:
            engine.cancel(request_id)  # client gone, engine failure or server shutdown


async def handle_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions."""
    return await handle_generate(request, chat=False)


async def handle_chat(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions (messages' text joined into one prompt)."""
    return await handle_generate(request, chat=True)


async def stream_response(
    request: web.Request, req: GenerateRequest, meta: ResponseMeta, tokens: AsyncIterator[list[int]]
) -> web.StreamResponse:
    """SSE: one chunk per token (finish_reason on the last), then usage when asked, then [DONE]."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    sent = 0
    try:
        if meta.chat:
            await resp.write(meta.role_chunk().encode())
        async for new in tokens:
            chunks = []
            for token in new:
                sent += 1
                chunks.append(meta.token_chunk(token, last=sent >= req.max_tokens))
            await resp.write("".join(chunks).encode())
        tail = meta.usage_chunk(len(req.prompt_ids), sent) if req.include_usage else ""
        await resp.write((tail + DONE).encode())
    except GenerationFailed as e:
        await resp.write((stream_error_event(str(e)) + DONE).encode())
    except ConnectionResetError:
        log.info("client of %s disconnected after %d tokens; request cancelled", meta.id, sent)
        return resp
    await resp.write_eof()
    return resp


async def whole_response(
    req: GenerateRequest, meta: ResponseMeta, tokens: AsyncIterator[list[int]]
) -> web.Response:
    """The non-streaming answer, once every token is out."""
    generated: list[int] = []
    try:
        async for new in tokens:
            generated.extend(new)
    except GenerationFailed as e:
        return error_response(500, str(e))
    return web.json_response(meta.full_response(len(req.prompt_ids), generated))


async def handle_health(request: web.Request) -> web.Response:
    """200 when serving; 503 while warming up or after the engine loop died."""
    state: ServerState = request.app["state"]
    problem = state.engine.health_problem()
    return web.Response(status=200) if problem is None else error_response(503, problem)


async def handle_models(request: web.Request) -> web.Response:
    """GET /v1/models."""
    state: ServerState = request.app["state"]
    return web.json_response(models_list(state.served_name, int(time.time()), state.engine.cfg.max_model_len))


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics (Prometheus text)."""
    state: ServerState = request.app["state"]
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_steps(request: web.Request) -> web.Response:
    """GET /steps: the per-step log as CSV."""
    state: ServerState = request.app["state"]
    return web.Response(text=state.step_log.csv(), content_type="text/csv")


def build_app(state: ServerState) -> web.Application:
    """The routes."""
    app = web.Application(client_max_size=64 << 20)
    app["state"] = state
    app.router.add_post("/v1/completions", handle_completions)
    app.router.add_post("/v1/chat/completions", handle_chat)
    app.router.add_get("/health", handle_health)
    app.router.add_get("/v1/models", handle_models)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/steps", handle_steps)
    return app


def in_daemon_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Runs `fn` in a daemon thread (so a shutdown never waits for it); its result as a future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the event loop
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="refengine-warmup", daemon=True).start()
    return future


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listens on host:port; handlers are cancelled when their client disconnects (aiohttp >= 3.9)."""
    try:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    except TypeError:
        runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def serve(args: argparse.Namespace, cfg: EngineConfig) -> int:
    """Serves until SIGINT/SIGTERM; returns the exit status."""
    step_log = StepLog(args.step_log)
    served_name = args.served_model_name or args.model
    metrics = EngineMetrics(served_name, lambda: engine.snapshot())
    engine = ReferenceEngine(cfg, metrics, step_log)
    state = ServerState(engine=engine, metrics=metrics, step_log=step_log, served_name=served_name)
    runner = await start_site(build_app(state), args.host, args.port)
    log.info("listening on http://%s:%d (/health is 503 until warm)", args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    warm = in_daemon_thread(engine.build)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({warm, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not warm.done():
        log.info("stopped during warm-up")
        await runner.cleanup()
        return 0
    try:
        report = warm.result()
    except Exception:
        log.exception("engine start failed")
        await runner.cleanup()
        return 1
    metrics.set_cache_config(cfg.block_size, report.num_blocks)
    engine.start()
    log.info("warm: %d graphs captured in %.1f s", report.graphs, report.seconds)
    log.info(
        "serving %s as %r: %d KV blocks x %d tokens, max_batch_tokens %d, attention %s, graphs %s, async %s",
        cfg.shape.name,
        served_name,
        report.num_blocks,
        cfg.block_size,
        report.max_batch_tokens,
        cfg.attn,
        "on" if cfg.uses_cuda_graphs else "off",
        "on" if cfg.async_batching else "off",
    )
    await stopped
    log.info("shutting down")
    await runner.cleanup()
    engine.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = engine_config(args)
        validate_config(cfg)
    except ValueError as e:
        log.error("%s", e)
        return 2
    try:
        import uvloop  # type: ignore[import-not-found]

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    return asyncio.run(serve(args, cfg))


if __name__ == "__main__":
    sys.exit(main())

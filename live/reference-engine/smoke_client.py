#!/usr/bin/env python3
"""A quick closed-loop load probe of a running engine (the reference engine or any vLLM-compatible
server): for each concurrency level, every stream sends fixed-length streamed completions back to
back; prints TTFT, ITL, E2E percentiles and throughput, and checks each response is exactly
max_tokens text chunks + usage + [DONE].

    python3 smoke_client.py http://127.0.0.1:8001 --model llama-3.1-8b

It is a smoke test, not the benchmark: `modelsguard live run` is the measuring tool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Timing:
    """One request's latencies (seconds)."""

    ttft: float
    gaps: list[float]
    e2e: float


async def one_request(
    session: aiohttp.ClientSession, url: str, model: str, prompt_len: int, out_len: int, seed: int
) -> Timing:
    """Sends one streamed completion and checks its shape."""
    rng = random.Random(seed)
    body = {
        "model": model,
        "prompt": [rng.randrange(100, 30000) for _ in range(prompt_len)],
        "max_tokens": out_len,
        "min_tokens": out_len,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.monotonic()
    stamps: list[float] = []
    usage, done, finish = None, False, None
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
        buffer = b""
        async for piece in resp.content.iter_any():
            buffer += piece
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                data = event.decode().removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                usage = chunk.get("usage") or usage
                if chunk["choices"]:
                    stamps.append(time.monotonic())
                    finish = chunk["choices"][0]["finish_reason"] or finish
    if not (
        done
        and len(stamps) == out_len
        and usage
        and usage["completion_tokens"] == out_len
        and finish == "length"
    ):
        raise RuntimeError(
            f"bad stream: done={done} chunks={len(stamps)}/{out_len} usage={usage} finish={finish}"
        )
    return Timing(stamps[0] - start, [b - a for a, b in zip(stamps, stamps[1:])], stamps[-1] - start)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def closed_loop(
    url: str, model: str, streams: int, prompt_len: int, out_len: int, per_stream: int
) -> None:
    """`streams` concurrent workers, each sending `per_stream` requests one after another."""
    async with aiohttp.ClientSession() as session:

        async def worker(w: int) -> list[Timing]:
            return [
                await one_request(session, url, model, prompt_len, out_len, w * 1000 + i)
                for i in range(per_stream)
            ]

        start = time.monotonic()
        results = [t for ts in await asyncio.gather(*(worker(w) for w in range(streams))) for t in ts]
        wall = time.monotonic() - start
    ttft = [t.ttft for t in results]
    gaps = [g for t in results for g in t.gaps]
    e2e = [t.e2e for t in results]
    print(
        f"{streams:4d} streams, {prompt_len} in / {out_len} out x {per_stream}: "
        f"TTFT p50 {percentile(ttft, 50) * 1e3:7.1f} ms p99 {percentile(ttft, 99) * 1e3:7.1f} | "
        f"ITL p50 {percentile(gaps, 50) * 1e3:6.1f} ms p99 {percentile(gaps, 99) * 1e3:6.1f} | "
        f"E2E p50 {percentile(e2e, 50):6.2f} s | {len(results) * out_len / wall:7.0f} tok/s",
        flush=True,
    )


async def run(args: argparse.Namespace) -> None:
    for streams in args.streams:
        await closed_loop(args.url, args.model, streams, args.prompt_len, args.out_len, args.per_stream)
    await closed_loop(args.url, args.model, 4, args.long_prompt_len, 16, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--model", required=True, help="the served model name")
    p.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--out-len", type=int, default=64)
    p.add_argument("--per-stream", type=int, default=2)
    p.add_argument(
        "--long-prompt-len", type=int, default=3000, help="a last round of long prompts (chunked prefill)"
    )
    asyncio.run(run(p.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Unit tests of the reference engine's pure parts (wire format, capture plan, step log and its
timing) plus one CPU engine run. Plain asserts: `python3 test_server.py` or `pytest test_server.py`.
The HTTP server as a whole is tested from Rust (live/tests/it/reference_engine.rs).
"""

from __future__ import annotations

import asyncio
import json
import sys

import torch

from engine import EngineConfig, KvSize, ReferenceEngine
from graphs import CacheLimits, GraphPolicy, StepGraphUse, WarmupSequence, capture_plan, kv_buckets
from protocol import BadRequest, ResponseMeta, encode_text, parse_request
from shapes import SHAPES
from steplog import HEADER, BatchShape, StepLog, StepRow
from timing import StepRecorder, WallClock


def parse(body: object, chat: bool = False) -> object:
    """parse_request over a JSON body, for a 1000-token vocabulary and max_model_len 100."""
    return parse_request(json.dumps(body).encode(), chat, "m", 1000, 100)


def refused(body: object, status: int = 400) -> str:
    """The message of the BadRequest `body` raises (asserting its status)."""
    try:
        parse(body)
    except BadRequest as e:
        assert e.status == status, (e.status, status)
        return str(e)
    raise AssertionError(f"{body} was accepted")


def test_words_are_tokens_and_wn_is_token_n() -> None:
    ids = encode_text("w5 hello  w999 w1000", 1000)
    assert ids[0] == 5 and ids[2] == 999 and len(ids) == 4
    assert ids[1] == encode_text("hello", 1000)[0], "hashing is stable"
    assert 0 <= ids[3] < 1000


def test_requests_are_validated_like_vllm() -> None:
    req = parse(
        {
            "prompt": [1, 2, 3],
            "max_tokens": 4,
            "min_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert (req.prompt_ids, req.max_tokens, req.stream, req.include_usage) == ([1, 2, 3], 4, True, True)
    assert parse({"prompt": "a b"}).max_tokens == 16
    assert parse({"messages": [{"role": "user", "content": "a b c"}]}, chat=True).max_tokens == 97
    assert "min_tokens must be less than or equal to max_tokens=3" in refused(
        {"prompt": [1], "max_tokens": 3, "min_tokens": 4}
    )
    assert "maximum context length is 100" in refused({"prompt": [1, 2], "max_tokens": 99})
    assert "out of vocabulary" in refused({"prompt": [1, 1000]})
    assert "empty" in refused({"prompt": []})
    assert "empty" in refused({"prompt": "   "})
    assert "at least 1" in refused({"prompt": [1], "max_tokens": 0})
    assert "integer" in refused({"prompt": [1], "max_tokens": True})
    assert "batched" in refused({"prompt": ["a", "b"]})
    assert "does not exist" in refused({"model": "other", "prompt": [1]}, status=404)
    try:
        parse_request(b"{bad", False, "m", 1000, 100)
    except BadRequest as e:
        assert "not valid JSON" in str(e)
    else:
        raise AssertionError("malformed JSON was accepted")


def test_chunks_carry_one_token_and_the_last_says_length() -> None:
    meta = ResponseMeta(chat=False, id="cmpl-1", created=0, model="m")
    last = json.loads(meta.token_chunk(7, last=True).removeprefix("data: "))
    assert last["choices"][0]["text"] == " w7" and last["choices"][0]["finish_reason"] == "length"
    usage = json.loads(meta.usage_chunk(3, 2).removeprefix("data: "))
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 5


def test_kv_buckets_end_at_the_cache_size() -> None:
    assert kv_buckets(16384, 40000) == [16384, 32768, 40000]
    assert kv_buckets(16384, 16384) == [16384]


def test_the_capture_plan_covers_reachable_keys_only_and_every_batch_is_valid() -> None:
    policy = GraphPolicy(capture_sizes=(1, 2, 4, 8), kv_bucket_tokens=1000, max_model_len=1500)
    limits = CacheLimits(num_blocks=40, block_size=100, max_batch_tokens=64, max_num_seqs=4)
    plan = capture_plan(policy, limits)
    keys = [b.key for b in plan if b.key is not None]
    # One sequence holds at most 1499 tokens: size 1 reaches the 1000 and 2000 buckets only.
    assert (1, 1000) in keys and (1, 2000) in keys and (1, 3000) not in keys
    assert (8, 4000) in keys, "4 sequences of up to ~1497 cached tokens reach the 4000 bucket"
    assert len(keys) == len(set(keys))
    for batch in plan:
        if batch.key is None:
            continue
        size, bucket = batch.key
        tokens = sum(s.query for s in batch.sequences)
        kv = sum(s.past for s in batch.sequences)
        assert policy.padded_query(tokens) == size and policy.padded_kv(kv, limits.num_pages) == bucket, batch
        assert all(s.past + s.query <= 1499 for s in batch.sequences) and len(batch.sequences) <= 4
    assert plan[-1].key is None and plan[-1].sequences == (WarmupSequence(past=0, query=64),), (
        "an eager chunk last"
    )
    assert [b.key[1] for b in plan[:-1]] == sorted((b.key[1] for b in plan[:-1]), reverse=True), (
        "largest KV first"
    )


def test_graphs_pad_to_the_next_capture_size_and_larger_steps_run_eagerly() -> None:
    policy = GraphPolicy(capture_sizes=(1, 2, 4, 8, 16, 24), kv_bucket_tokens=16384, max_model_len=8192)
    assert [policy.padded_query(t) for t in (1, 3, 9, 17, 24, 25)] == [1, 4, 16, 24, 24, None]
    assert policy.padded_kv(0, 100000) == 16384 and policy.padded_kv(16385, 100000) == 32768
    assert policy.max_seqlen_k(8, 16384) == 8192, "capped at max_model_len"


def shape(p: int, d: int) -> BatchShape:
    return BatchShape(
        num_scheduled_requests=1,
        num_prefill_tokens=p,
        num_decode_seqs=d,
        num_kv_tokens_read=p + d,
        num_padded_tokens=p + d,
    )


class FixedClock(WallClock):
    """A clock whose markers are the wall times given in order."""

    def __init__(self, ends: list[float]) -> None:
        self._ends = iter(ends)

    def mark_end(self, stream: object) -> float:
        return next(self._ends)


def test_overlapping_async_steps_start_when_the_previous_one_ended() -> None:
    rows: list[StepRow] = []
    recorder = StepRecorder(FixedClock([10.0, 10.5, 11.0]), rows.append)
    recorder.launched(shape(5, 0), 9.9, None, StepGraphUse())  # scheduled at 9.9, ends 10.0
    recorder.launched(shape(0, 1), 9.95, None, StepGraphUse())  # scheduled while step 0 ran: starts at 10.0
    recorder.launched(shape(0, 1), 10.8, None, StepGraphUse())  # scheduled after step 1 ended: starts at 10.8
    recorder.poll()
    assert [(r.step, r.start_unix_s, round(r.duration_s, 6)) for r in rows] == [
        (0, 9.9, 0.1),
        (1, 10.0, 0.5),
        (2, 10.8, 0.2),
    ]


def test_the_step_log_is_csv_with_the_spec_header() -> None:
    log = StepLog(None)
    log.append(
        StepRow(step=0, start_unix_s=1.5, duration_s=0.25, shape=shape(3, 2), cuda_graph=True, captured=False)
    )
    assert log.csv() == HEADER + "0,1.500000,0.250000,1,3,2,5,5,1,0\n"
    assert HEADER.startswith(
        "step,start_unix_s,duration_s,num_scheduled_requests,num_prefill_tokens,num_decode_seqs,"
    )


class Events:
    """An EngineListener that remembers steps and evictions."""

    def __init__(self) -> None:
        self.rows: list[StepRow] = []
        self.evicted = 0

    def step(self, row: StepRow) -> None:
        self.rows.append(row)

    def preempted(self, num_requests: int) -> None:
        self.evicted += num_requests


def test_a_cpu_engine_generates_exactly_max_tokens_and_logs_and_counts_evictions() -> None:
    cfg = EngineConfig(
        shape=SHAPES["tiny"],
        device=torch.device("cpu"),
        dtype=torch.float32,
        attn="flash",
        block_size=32,
        max_batch_tokens=64,
        max_num_seqs=8,
        max_model_len=400,
        kv=KvSize(num_blocks=18),  # 576 tokens: two 250 + 100 requests cannot both finish without an eviction
        cuda_graph_sizes=(),
        kv_bucket_tokens=16384,
        async_batching=False,
        step_timing="event",
        seed=0,
    )
    events = Events()
    engine = ReferenceEngine(cfg, events, StepLog(None))
    assert engine.build().num_blocks == 18
    engine.start()

    async def generate(prompt: list[int], n: int) -> list[int]:
        queue: asyncio.Queue = asyncio.Queue()
        engine.submit(prompt, n, queue.put_nowait)
        while not (out := await queue.get()).is_finished():
            pass
        assert out.error is None, out.error
        return out.generated_tokens

    async def both() -> list[list[int]]:
        return await asyncio.gather(generate(list(range(1, 251)), 100), generate(list(range(1, 251)), 100))

    try:
        first, second = asyncio.run(both())
    finally:
        engine.stop()
    assert len(first) == len(second) == 100
    assert first == second, "same prompt, greedy, same weights: same tokens, evicted and recomputed or not"
    assert events.evicted >= 1
    # The recompute prefill of a request evicted while decoding samples one token a decode step would have.
    decodes = sum(r.shape.num_decode_seqs for r in events.rows)
    assert 2 * 99 - events.evicted <= decodes <= 2 * 99, (decodes, events.evicted)
    assert sum(r.shape.num_prefill_tokens for r in events.rows) >= 2 * 250, "plus the recomputed tokens"


def main() -> int:
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)]
    for name, fn in tests:
        fn()
        print(f"ok  {name}")
    print(f"{len(tests)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

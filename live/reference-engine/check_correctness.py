#!/usr/bin/env python3
"""Does the reference engine compute what the model computes?

Runs one random-weight model (fixed seed) through the engine's continuous-batching paths and through
plain `model.generate` (no continuous batching, transformers' own SDPA), on prompts of several lengths
submitted together (so steps mix prefills and decodes), one of them longer than --max-batch-tokens
(so its prefill is chunked), and compares the greedy tokens.

Paths: on CUDA, "flash" (torch varlen_attn) with CUDA graphs and async batching, "flash" eager and
synchronous, and transformers' `paged|sdpa`; on CPU, where varlen_attn does not exist, the flash
plumbing with the pure-torch reference kernel, and `paged|sdpa` (the varlen_attn kernel itself needs
CUDA).

For each prompt: the first position where the engine's tokens differ from generate's, and the
largest |logprob difference| of the engine's tokens against a teacher-forced plain forward over the
engine's own tokens (every position). A divergence passes only as a near-tie: the reference's best
logit beats the engine's token by at most --tie-tolerance (bf16 rounding flips such ties). Exit
status 1 on any failure; --inject-bug breaks the flash kernel's causal alignment to show
that the check catches a wrong kernel: queries aligned to the start of their cached keys (top-left)
instead of the end, the classic varlen alignment error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass, replace

import torch

from engine import EngineConfig, KvSize, ReferenceEngine
from graphs import DEFAULT_CAPTURE_SIZES
from shapes import SHAPES, ModelShape, build_model
from steplog import StepLog, StepRow

# A small model with the head geometry of the 8B shapes (head_dim 128, 4 query heads per KV head).
CHECK_SHAPE = ModelShape(
    name="check",
    family="llama",
    hidden_size=1024,
    num_layers=4,
    num_heads=8,
    num_kv_heads=2,
    intermediate_size=2048,
    vocab_size=4096,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
)
PROMPT_LENGTHS = (1, 9, 64, 200, 700)

# Tolerances per dtype: |logprob difference| and the near-tie logit margin. float32 runs the same
# math in another order (1e-4 level); bf16 rounds every activation (FlashAttention vs SDPA, a different
# batch composition): ~2e-3 relative per op, a few 1e-2 on a logprob after a few layers.
TOLERANCES = {torch.float32: (1e-3, 1e-3), torch.bfloat16: (0.15, 0.1)}


@dataclass(frozen=True)
class Path:
    """One engine configuration to check."""

    label: str
    attn: str
    graphs: bool
    async_batching: bool


@dataclass(frozen=True)
class Verdict:
    """The comparison of one prompt on one path."""

    prompt_len: int
    compared: int
    first_divergence: int | None
    max_logprob_diff: float
    tie_margin: float | None
    ok: bool


class NullListener:
    """The engine's listener (metrics are not needed here)."""

    def step(self, row: StepRow) -> None:
        """Ignored."""

    def preempted(self, num_requests: int) -> None:
        """Ignored."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument(
        "--dtype", choices=("bfloat16", "float32"), help="default: bfloat16 on CUDA, float32 on CPU"
    )
    p.add_argument(
        "--model",
        choices=("check", *sorted(SHAPES)),
        default="check",
        help="shape (default: a small 8B-like one)",
    )
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--max-batch-tokens", type=int, default=256)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument(
        "--kv-bucket-tokens", type=int, default=1024, help="small, so graph steps use several KV buckets"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logprob-tolerance", type=float)
    p.add_argument("--tie-tolerance", type=float)
    p.add_argument(
        "--inject-bug", action="store_true", help="align the flash kernel's queries top-left (must fail)"
    )
    return p.parse_args()


def prompts(vocab_size: int, seed: int) -> list[list[int]]:
    """Deterministic prompts of PROMPT_LENGTHS."""
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randint(0, vocab_size, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def paths(device: torch.device) -> list[Path]:
    """The engine configurations to compare with generate on `device`."""
    if device.type == "cuda":
        return [
            Path("flash: varlen_attn, CUDA graphs, async batching", "flash", True, True),
            Path("flash: varlen_attn, eager, synchronous", "flash", False, False),
            Path("sdpa: transformers paged|sdpa, eager, synchronous", "sdpa", False, False),
        ]
    return [
        Path("flash plumbing: CPU reference kernel (varlen_attn needs CUDA)", "flash", False, False),
        Path("sdpa: transformers paged|sdpa", "sdpa", False, False),
    ]


def generate_reference(
    shape: ModelShape,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
    prompt_list: list[list[int]],
    n: int,
) -> tuple[list[list[int]], torch.nn.Module]:
    """Greedy tokens of plain `model.generate` (no continuous batching), one prompt at a time."""
    model = build_model(shape, device, dtype, seed)
    model.config._attn_implementation = "sdpa"
    outputs = []
    with torch.no_grad():
        for prompt in prompt_list:
            ids = torch.tensor([prompt], device=device)
            out = model.generate(
                ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0
            )
            outputs.append(out[0, len(prompt) :].tolist())
    return outputs, model


def run_engine(
    cfg: EngineConfig, prompt_list: list[list[int]], n: int
) -> list[tuple[list[int], list[float]]]:
    """(tokens, logprobs) of every prompt, all submitted at once to one engine."""
    engine = ReferenceEngine(cfg, NullListener(), StepLog(None))
    report = engine.build()
    logging.getLogger("refengine").info("warm: %d graphs captured in %.1f s", report.graphs, report.seconds)
    engine.start()

    async def one(prompt: list[int]) -> tuple[list[int], list[float]]:
        queue: asyncio.Queue = asyncio.Queue()
        engine.submit(prompt, n, queue.put_nowait)
        while True:
            out = await queue.get()
            if out.error is not None:
                raise RuntimeError(f"the engine failed a request: {out.error}")
            if out.is_finished():
                return list(out.generated_tokens), list(out.logprobs)

    async def all_prompts() -> list[tuple[list[int], list[float]]]:
        return await asyncio.gather(*(one(p) for p in prompt_list))

    try:
        return asyncio.run(all_prompts())
    finally:
        engine.stop()


def compare(
    model: torch.nn.Module,
    prompt: list[int],
    expected: list[int],
    got: list[int],
    got_logprobs: list[float],
    logprob_tol: float,
    tie_tol: float,
) -> Verdict:
    """One prompt's engine tokens and logprobs against generate's tokens and a teacher-forced forward."""
    ids = torch.tensor([prompt + got], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(got)].float()
    ref_logprobs = torch.log_softmax(logits, dim=-1)
    divergence = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
    if divergence is None and len(expected) != len(got):
        divergence = min(len(expected), len(got))
    # Teacher-forced on the engine's own tokens, so every position compares, even after a divergence.
    diffs = [
        abs(got_logprobs[i] - ref_logprobs[i, got[i]].item()) for i in range(min(len(got), len(got_logprobs)))
    ]
    max_diff = max(diffs, default=0.0)
    margin = None
    ok = max_diff <= logprob_tol and len(got_logprobs) == len(got)
    if divergence is not None:
        if divergence >= len(got):
            ok = False
        else:
            margin = (logits[divergence].max() - logits[divergence, got[divergence]]).item()
            ok = ok and margin <= tie_tol
    return Verdict(len(prompt), len(expected), divergence, max_diff, margin, ok)


def print_table(label: str, verdicts: list[Verdict]) -> None:
    print(f"\n{label}")
    columns = (
        f"{'prompt':>6} {'tokens':>6} {'first divergence':>16} {'max |dlogprob|':>14} {'tie margin':>10}"
    )
    print(f"  {columns}  verdict")
    for v in verdicts:
        div = "-" if v.first_divergence is None else str(v.first_divergence)
        margin = "-" if v.tie_margin is None else f"{v.tie_margin:.4f}"
        verdict = "ok" if v.ok else "MISMATCH"
        if v.ok and v.first_divergence is not None:
            verdict = "ok (near-tie divergence)"
        numbers = f"{v.prompt_len:>6} {v.compared:>6} {div:>16} {v.max_logprob_diff:>14.2e} {margin:>10}"
        print(f"  {numbers}  {verdict}")


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    shape = CHECK_SHAPE if args.model == "check" else SHAPES[args.model]
    default_lp, default_tie = TOLERANCES.get(dtype, (0.15, 0.1))
    logprob_tol = args.logprob_tolerance if args.logprob_tolerance is not None else default_lp
    tie_tol = args.tie_tolerance if args.tie_tolerance is not None else default_tie
    prompt_list = prompts(shape.vocab_size, args.seed)
    n = args.max_new_tokens
    print(
        f"shape {shape.name}, {device}, {dtype}, seed {args.seed}, prompts of {list(PROMPT_LENGTHS)} tokens, "
        f"{n} new tokens each, max_batch_tokens {args.max_batch_tokens} (longer prompts are prefilled in "
        f"chunks); tolerances: |dlogprob| <= {logprob_tol}, near-tie margin <= {tie_tol}"
        + ("; INJECTED BUG: flash queries aligned top-left" if args.inject_bug else "")
    )
    expected, ref_model = generate_reference(shape, device, dtype, args.seed, prompt_list, n)
    base = EngineConfig(
        shape=shape,
        device=device,
        dtype=dtype,
        attn="flash",
        block_size=args.block_size,
        max_batch_tokens=args.max_batch_tokens,
        max_num_seqs=16,
        max_model_len=max(PROMPT_LENGTHS) + n + 1,
        kv=KvSize(num_blocks=-(-len(prompt_list) * (max(PROMPT_LENGTHS) + n) // args.block_size) + 1),
        cuda_graph_sizes=DEFAULT_CAPTURE_SIZES,
        kv_bucket_tokens=args.kv_bucket_tokens,
        async_batching=False,
        step_timing="event",
        seed=args.seed,
        inject_attention_bug=args.inject_bug,
        return_logprobs=True,
    )
    failed = False
    for path in paths(device):
        cfg = replace(
            base,
            attn=path.attn,
            cuda_graph_sizes=DEFAULT_CAPTURE_SIZES if path.graphs else (),
            async_batching=path.async_batching,
        )
        results = run_engine(cfg, prompt_list, n)
        verdicts = [
            compare(ref_model, p, e, tokens, logprobs, logprob_tol, tie_tol)
            for p, e, (tokens, logprobs) in zip(prompt_list, expected, results)
        ]
        print_table(f"{path.label} vs model.generate", verdicts)
        failed |= not all(v.ok for v in verdicts)
    print("\nFAIL: the engine's tokens differ from model.generate beyond near-ties" if failed else "\nPASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

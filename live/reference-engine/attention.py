"""The "flash" attention of the reference engine: paged KV cache + variable-length attention.

transformers 5.17 continuous batching calls the attention function registered under
`config._attn_implementation` with the packed queries of every scheduled sequence, the paged cache and
the cumulative sequence lengths (transformers/integrations/flash_paged.py `paged_attention_forward`
is the model followed here). This module registers one such function under `FLASH_ATTN_NAME`:

- it writes the step's new keys/values into the paged cache and reads back each sequence's whole
  context (`PagedAttentionCache.update`: an `index_copy_` then an `index_select` over the step's
  read index, i.e. a gather into contiguous buffers every step);
- on CUDA it runs `torch.nn.attention.varlen.varlen_attn` (FlashAttention-2 varlen, shipped with
  torch 2.11) with `window_size=(-1, 0)`, i.e. causal attention aligned bottom-right: a sequence's
  queries are the last positions of its keys, which is what chunked prefill and decode need;
- on CPU (where varlen_attn does not exist) it runs a slow per-sequence SDPA with the same
  bottom-right causal mask, so the CPU path exercises the same manager plumbing.

The name must contain "flash" (so transformers allocates no dense attention mask and allows CUDA
graphs and async batching) and must contain neither "2" nor "3" (those would enable
`flash_attn_with_kvcache` or a hub kernel download). The alternative `SDPA_ATTN_NAME` is
transformers' own `paged|sdpa`, which builds a dense additive mask over the whole cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import AttentionInterface

FLASH_ATTN_NAME = "paged|refengine_flash"
SDPA_ATTN_NAME = "paged|sdpa"

AttentionFn = Callable[..., tuple[torch.Tensor, None]]


def register_flash_attention(inject_bug: bool = False) -> str:
    """Registers the paged varlen attention under `FLASH_ATTN_NAME` and returns the name.

    `inject_bug` aligns each sequence's queries to the START of its keys (top-left) instead of their
    end: query r sees keys 0..r, not the whole cached context. It is the classic varlen alignment
    error (FlashAttention < 2.1 semantics), invisible on a prefill without cache, wrong for chunked
    prefill and decode; `check_correctness.py --inject-bug` must catch it.
    """
    AttentionInterface.register(FLASH_ATTN_NAME, _make_paged_forward(top_left=inject_bug))
    return FLASH_ATTN_NAME


def _make_paged_forward(top_left: bool) -> AttentionFn:
    """The attention function transformers calls for each layer (`top_left`: the injected bug)."""

    def paged_varlen_forward(
        module: torch.nn.Module,
        query: torch.Tensor,  # [1, num_heads, total_q, head_dim]
        key: torch.Tensor,  # [1, num_kv_heads, total_q, head_dim]
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,  # unused: causality comes from the sequence lengths
        cache: Any = None,
        cu_seq_lens_q: torch.Tensor | None = None,
        cu_seq_lens_k: torch.Tensor | dict[str, torch.Tensor] | None = None,
        max_seqlen_q: int = 0,
        max_seqlen_k: int | dict[str, int] = 0,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        if cache is None or cu_seq_lens_q is None or cu_seq_lens_k is None:
            raise ValueError(
                f"{FLASH_ATTN_NAME} only runs inside continuous batching (no paged cache or sequence lengths)"
            )
        if isinstance(cu_seq_lens_k, dict):
            cu_seq_lens_k = cu_seq_lens_k["full_attention"]
        if isinstance(max_seqlen_k, dict):
            max_seqlen_k = max_seqlen_k["full_attention"]
        keys, values = cache.update(
            key_states=key,
            value_states=value,
            layer_idx=module.layer_idx,
            read_index=kwargs["read_index"],
            write_index=kwargs["write_index"],
        )
        packed_q = query.transpose(1, 2).squeeze(0)  # [total_q, num_heads, head_dim]
        cu_q, cu_k = cu_seq_lens_q.to(torch.int32), cu_seq_lens_k.to(torch.int32)
        if top_left:
            keys, values = _first_keys(packed_q.shape[0], keys, values, cu_q, cu_k)
            cu_k, max_seqlen_k = cu_q, max_seqlen_q
        run = _cuda_varlen if packed_q.is_cuda else _reference_varlen
        out = run(
            packed_q.contiguous(),
            keys.contiguous(),
            values.contiguous(),
            cu_q,
            cu_k,
            int(max_seqlen_q),
            int(max_seqlen_k),
            float(module.scaling),
        )
        return out, None

    return paged_varlen_forward


def _first_keys(
    total_q: int, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For the injected bug: each sequence's first (query length) keys, packed like the queries, so a
    bottom-right causal kernel over them is top-left aligned. Tensor ops only (CUDA-graph safe)."""
    token = torch.arange(total_q, device=k.device, dtype=torch.int32)
    seq = torch.searchsorted(cu_q[1:], token, right=True).clamp(max=cu_q.numel() - 1)
    index = (cu_k[seq] + token - cu_q[seq]).clamp(0, k.shape[0] - 1).long()
    return k[index], v[index]


def _cuda_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
    scale: float,
) -> torch.Tensor:
    """FlashAttention-2 varlen through torch 2.11; GQA is native (fewer KV heads than query heads)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, scale=scale, window_size=(-1, 0))


def _reference_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
    scale: float,
) -> torch.Tensor:
    """Per-sequence SDPA with a bottom-right causal mask: what varlen_attn computes, slowly (CPU only).

    `max_q`/`max_k` are upper bounds the CUDA kernel needs for its launch grid; here the exact
    lengths come from the cumulative sequence lengths.
    """
    del max_q, max_k
    out = torch.zeros_like(q)
    group = q.shape[1] // k.shape[1]
    starts_q, starts_k = cu_q.tolist(), cu_k.tolist()
    for i in range(len(starts_q) - 1):
        q0, q1, k0, k1 = starts_q[i], starts_q[i + 1], starts_k[i], starts_k[i + 1]
        if q1 == q0:
            continue  # a padding sequence of length 0
        sq, sk = q1 - q0, k1 - k0
        qi = q[q0:q1].transpose(0, 1)  # [heads, sq, dim]
        ki = k[k0:k1].repeat_interleave(group, dim=1).transpose(0, 1)
        vi = v[k0:k1].repeat_interleave(group, dim=1).transpose(0, 1)
        # Query row r is absolute position sk - sq + r; it sees keys up to that position.
        visible = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - sq)
        attended = torch.nn.functional.scaled_dot_product_attention(
            qi, ki, vi, attn_mask=visible, scale=scale
        )
        out[q0:q1] = attended.transpose(0, 1)
    return out


def check_flash_available(device: torch.device, dtype: torch.dtype) -> None:
    """Raises a ValueError saying what to change when the flash path cannot run on `device` in `dtype`."""
    if device.type != "cuda":
        return
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError as e:
        raise ValueError(
            f"--attn flash needs torch.nn.attention.varlen.varlen_attn (torch >= 2.10), not found in torch "
            f"{torch.__version__}: {e}; use --attn sdpa"
        ) from e
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"--attn flash on CUDA needs --dtype bfloat16 (FlashAttention-2), got {dtype}; or use --attn sdpa"
        )

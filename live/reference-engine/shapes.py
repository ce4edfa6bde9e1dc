"""Model shapes the reference engine can serve, and random-weight models built from them.

Each shape copies the architecture numbers of a real checkpoint's config.json (layers, heads, widths,
vocabulary, RoPE), so a step costs what it would with the real weights. Weights are random (seeded),
created directly on the device in the requested dtype: nothing is read from or written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers of one model (as in its Hugging Face config.json)."""

    name: str
    family: str  # "llama" or "qwen2"
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    rope_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    def kv_bytes_per_token(self, dtype: torch.dtype) -> int:
        """KV-cache bytes one token takes over all layers (keys and values)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype.itemsize

    def to_config(self) -> LlamaConfig | Qwen2Config:
        """The transformers config of this shape, with EOS disabled (every request runs to max_tokens)."""
        common: dict[str, Any] = {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_parameters": dict(self.rope_parameters),
            "bos_token_id": None,
            "eos_token_id": None,
            "pad_token_id": None,
        }
        if self.family == "llama":
            return LlamaConfig(**common)
        if self.family == "qwen2":
            return Qwen2Config(use_sliding_window=False, **common)
        raise ValueError(f"shape {self.name}: unknown family {self.family!r} (expected llama or qwen2)")


LLAMA_31_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

SHAPES: dict[str, ModelShape] = {
    # meta-llama/Llama-3.1-8B-Instruct config.json
    "llama-3.1-8b": ModelShape(
        name="llama-3.1-8b",
        family="llama",
        hidden_size=4096,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters=LLAMA_31_ROPE,
    ),
    # Qwen/Qwen2.5-7B-Instruct config.json
    "qwen2.5-7b": ModelShape(
        name="qwen2.5-7b",
        family="qwen2",
        hidden_size=3584,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    # Qwen/Qwen2.5-32B-Instruct config.json
    "qwen2.5-32b": ModelShape(
        name="qwen2.5-32b",
        family="qwen2",
        hidden_size=5120,
        num_layers=64,
        num_heads=40,
        num_kv_heads=8,
        intermediate_size=27648,
        vocab_size=152064,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    # A Llama-like toy that runs in milliseconds on a CPU (tests, CI, protocol checks).
    "tiny": ModelShape(
        name="tiny",
        family="llama",
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=128,
        vocab_size=1024,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    ),
}


def build_model(shape: ModelShape, device: torch.device, dtype: torch.dtype, seed: int) -> PreTrainedModel:
    """A random model of `shape`, created on `device` in `dtype` (no fp32 copy first), in eval mode.

    The same seed on the same device gives the same weights.
    """
    config = shape.to_config()
    config.dtype = dtype
    model_class = LlamaForCausalLM if shape.family == "llama" else Qwen2ForCausalLM
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = model_class(config)
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False)
    model.generation_config.eos_token_id = None
    return model.eval()

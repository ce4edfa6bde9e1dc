"""The OpenAI/vLLM wire format: request validation and the JSON of responses, stream chunks and errors.

Mirrors live/src/emulator/wire.rs (our Rust emulator) and vLLM's entrypoints/openai (protocol.py,
serving_completion.py, serving_chat.py). Errors use current vLLM's nested shape
`{"error": {"message", "type", "param", "code"}}`.

Text is not modelled. A string prompt is split on whitespace; a word `wN` (N below the vocabulary
size) is token N, any other word hashes to a stable id. Every output token is the text " wN" of its
id, so N words are exactly N tokens and a client's word count matches the server's token count.
This file does no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

DEFAULT_COMPLETION_MAX_TOKENS = 16  # vLLM's CompletionRequest.max_tokens default


class BadRequest(ValueError):
    """A request the server refuses; `status` is the HTTP status (400 or 404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GenerateRequest:
    """A validated completions or chat request."""

    chat: bool
    prompt_ids: list[int]
    max_tokens: int
    stream: bool
    include_usage: bool


def word_to_id(word: str, vocab_size: int) -> int:
    """`wN` -> N when N < vocab_size; any other word -> a stable hash into the vocabulary."""
    if word.startswith("w") and word[1:].isdigit() and int(word[1:]) < vocab_size:
        return int(word[1:])
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % vocab_size


def encode_text(text: str, vocab_size: int) -> list[int]:
    """Whitespace-split words to token ids."""
    return [word_to_id(w, vocab_size) for w in text.split()]


def token_text(token_id: int) -> str:
    """The streamed text of one output token."""
    return f" w{token_id}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_request(
    body: bytes, chat: bool, served_name: str, vocab_size: int, max_model_len: int
) -> GenerateRequest:
    """Validates a `/v1/completions` (or, with `chat`, `/v1/chat/completions`) body; raises BadRequest."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("`model` must be a string")
    if model is not None and model != served_name:
        raise BadRequest(f"The model `{model}` does not exist.", status=404)
    n = data.get("n")
    if n is not None and n != 1:
        raise BadRequest(f"n={n} is not supported by the reference engine (only n=1)")
    prompt_ids = (
        _chat_prompt(data.get("messages"), vocab_size)
        if chat
        else _completion_prompt(data.get("prompt"), vocab_size)
    )
    if not prompt_ids:
        raise BadRequest("the prompt is empty: send at least one token")
    max_tokens = _max_tokens(data, chat, len(prompt_ids), max_model_len)
    min_tokens = data.get("min_tokens", 0)
    if min_tokens is None:
        min_tokens = 0
    if not _is_int(min_tokens) or min_tokens < 0:
        raise BadRequest(f"min_tokens must be a non-negative integer, got {min_tokens!r}")
    if min_tokens > max_tokens:
        raise BadRequest(
            f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
        )
    for flag in ("ignore_eos", "stream"):
        if data.get(flag) is not None and not isinstance(data[flag], bool):
            raise BadRequest(f"`{flag}` must be a boolean")
    if len(prompt_ids) + max_tokens > max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    stream_options = data.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise BadRequest("`stream_options` must be an object")
    include_usage = bool((stream_options or {}).get("include_usage", False))
    return GenerateRequest(
        chat=chat,
        prompt_ids=prompt_ids,
        max_tokens=max_tokens,
        stream=bool(data.get("stream", False)),
        include_usage=include_usage,
    )


def _max_tokens(data: dict[str, Any], chat: bool, prompt_len: int, max_model_len: int) -> int:
    keys = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    value = next((data[k] for k in keys if data.get(k) is not None), None)
    if value is None:
        return max(1, max_model_len - prompt_len) if chat else DEFAULT_COMPLETION_MAX_TOKENS
    if not _is_int(value):
        raise BadRequest(f"max_tokens must be an integer, got {value!r}")
    if value < 1:
        raise BadRequest(f"max_tokens must be at least 1, got {value}.")
    return value


def _completion_prompt(prompt: Any, vocab_size: int) -> list[int]:
    if prompt is None:
        raise BadRequest("the request has no `prompt`")
    if isinstance(prompt, str):
        return encode_text(prompt, vocab_size)
    if isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        bad = next((t for t in prompt if t < 0 or t >= vocab_size), None)
        if bad is not None:
            raise BadRequest(f"Token id {bad} is out of vocabulary (vocabulary size {vocab_size})")
        return list(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        return _completion_prompt(prompt[0], vocab_size)
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, (str, list)) for p in prompt):
        raise BadRequest(
            "batched prompts are not supported by the reference engine (send one prompt per request)"
        )
    if isinstance(prompt, list) and not prompt:
        return []
    raise BadRequest("`prompt` must be a string or a list of token ids")


def _chat_prompt(messages: Any, vocab_size: int) -> list[int]:
    if not isinstance(messages, list):
        raise BadRequest("the request has no `messages` list")
    words: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("every message must be an object with `role` and `content`")
        content = message.get("content")
        if isinstance(content, str):
            words.append(content)
        elif isinstance(content, list):
            words.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return encode_text(" ".join(words), vocab_size)


@dataclass(frozen=True)
class ResponseMeta:
    """Identity of one response."""

    chat: bool
    id: str
    created: int
    model: str

    def _envelope(self, chunk: bool, choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj = (
            "text_completion" if not self.chat else ("chat.completion.chunk" if chunk else "chat.completion")
        )
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def role_chunk(self) -> str:
        """The chat stream's first chunk: the assistant role, empty content."""
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return sse(self._envelope(True, [choice]))

    def token_chunk(self, token_id: int, last: bool) -> str:
        """One token's chunk; the last one carries finish_reason "length" (EOS is disabled)."""
        finish = "length" if last else None
        text = token_text(token_id)
        if self.chat:
            choice = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        return sse(self._envelope(True, [choice]))

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> str:
        """The usage chunk (`choices: []`), sent when `stream_options.include_usage` is true."""
        body = self._envelope(True, [])
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return sse(body)

    def full_response(self, prompt_tokens: int, token_ids: list[int]) -> dict[str, Any]:
        """The non-streaming response."""
        text = "".join(token_text(t) for t in token_ids)
        finish = "length" if token_ids else "stop"
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        body = self._envelope(False, [choice])
        body["usage"] = usage(prompt_tokens, len(token_ids))
        return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def sse(body: dict[str, Any]) -> str:
    """One SSE event carrying `body`."""
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


DONE = "data: [DONE]\n\n"

ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """vLLM's (current, nested) error object for `status`."""
    kind = ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def stream_error_event(message: str) -> str:
    """vLLM's in-stream error event (`data: {"error": {...}}`), sent before `[DONE]`."""
    return sse(error_body(500, message))


def models_list(served_name: str, created: int, max_model_len: int) -> dict[str, Any]:
    """GET /v1/models."""
    return {
        "object": "list",
        "data": [
            {
                "id": served_name,
                "object": "model",
                "created": created,
                "owned_by": "modelsguard-reference-engine",
                "root": served_name,
                "max_model_len": max_model_len,
            }
        ],
    }

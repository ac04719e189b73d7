"""Where a judge's prompts go: a local transformers model, or any OpenAI-compatible chat-completions server.

Both implement :class:`r1gym.core.contracts.ChatBackend` and are registered as judge backends (``local``, ``openai``):

* ``local`` (the embedded default): any local causal LM (the built-in ``smollm2-135m``, a model folder, an
  r1gym checkpoint), loaded once per process; calls from many reward threads are batched
  (:class:`~r1gym.core.microbatch.MicroBatcher`) into one ``generate``.
* ``openai``: vLLM's or SGLang's server, llama.cpp's ``llama-server``, ``r1gym serve``, or a hosted API.
  ``base_url``, ``model`` and the API key come from the config or the environment (``OPENAI_BASE_URL``,
  ``R1GYM_JUDGE_MODEL``, and the variable named by ``api_key_env``, default ``OPENAI_API_KEY``; no key is
  sent when there is none, as local servers expect). At most ``max_concurrent`` requests are in flight;
  transport failures (connection errors, timeouts) and HTTP 429/500/502/503/504 are retried ``retries``
  times with exponential backoff; every call has a ``timeout_s``. Other HTTP errors are not retried: they
  are the request's fault and surface as :class:`JudgeError` with the server's message.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from r1gym.core.contracts import JudgeError, Message

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


class LocalBackend:
    """A local model through :class:`r1gym.core.chat.ChatModel`, batched across calling threads."""

    def __init__(self, model: str = "smollm2-135m", max_batch: int = 8, dtype: str = "float32"):
        self.model_name, self.max_batch, self.dtype = model, max_batch, dtype
        self.key = f"local:{model}"
        self._batchers: dict[tuple[int, float], Any] = {}  # (max_tokens, temperature) -> MicroBatcher
        self._lock = threading.Lock()

    def _chat_model(self) -> Any:
        with _MODELS_LOCK:
            if (self.model_name, self.dtype) not in _MODELS:
                from r1gym.core.chat import load_chat_model

                _MODELS[(self.model_name, self.dtype)] = load_chat_model(self.model_name, dtype=self.dtype)
            return _MODELS[(self.model_name, self.dtype)]

    def chat(self, messages: list[Message], *, max_tokens: int, temperature: float) -> str:
        from r1gym.core.microbatch import MicroBatcher

        key = (max_tokens, temperature)
        with self._lock:
            if key not in self._batchers:
                model = self._chat_model()
                self._batchers[key] = MicroBatcher(
                    lambda batch: [r.text for r in model.generate(batch, max_tokens=max_tokens, temperature=temperature)],
                    max_batch=self.max_batch, name="r1gym-judge-local")
            batcher = self._batchers[key]
        try:
            return batcher(messages)
        except Exception as exc:  # noqa: BLE001 -- the model failed: that completion cannot be judged
            raise JudgeError(f"the local judge model failed: {type(exc).__name__}: {exc}") from exc

    def choose(self, messages: list[Message], options: list[str]) -> list[float]:
        """Log-probabilities of each option as the model's whole reply (see ``llm_judge``'s ``mode=choose``)."""
        try:
            return self._chat_model().option_logprobs(messages, options)
        except Exception as exc:  # noqa: BLE001
            raise JudgeError(f"the local judge model failed: {type(exc).__name__}: {exc}") from exc


class OpenAIBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint (see the module docstring)."""

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrent: int = 8,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        extra_body: dict[str, Any] | None = None,
    ):
        import httpx

        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ValueError("the openai judge backend needs base_url (e.g. http://127.0.0.1:8000/v1 for `r1gym serve`, "
                             "vLLM or llama-server) or the OPENAI_BASE_URL environment variable")
        self.model = model or os.environ.get("R1GYM_JUDGE_MODEL")
        if not self.model:
            raise ValueError("the openai judge backend needs model (the id the server lists at /v1/models) or the "
                             "R1GYM_JUDGE_MODEL environment variable")
        if retries < 0 or max_concurrent < 1:
            raise ValueError(f"retries must be >= 0 and max_concurrent >= 1, got {retries} and {max_concurrent}")
        key = api_key or os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries, self.backoff_s, self.extra_body = retries, backoff_s, dict(extra_body or {})
        self.key = f"openai:{self.base_url}:{self.model}"
        self._client = httpx.Client(headers=headers, timeout=timeout_s)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self.stats = {"calls": 0, "retries": 0, "failures": 0}
        self._httpx = httpx

    def chat(self, messages: list[Message], *, max_tokens: int, temperature: float) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                **self.extra_body}
        delay, last = self.backoff_s, ""
        with self._slots:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats["retries"] += 1
                    time.sleep(delay)
                    delay *= 2
                self.stats["calls"] += 1
                try:
                    r = self._client.post(f"{self.base_url}/chat/completions", json=body)
                except self._httpx.TransportError as exc:  # connection refused/reset, timeouts
                    last = f"{type(exc).__name__}: {exc}"
                    continue
                if r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code}: {_message(r)}"
                    continue
                if r.status_code != 200:
                    self.stats["failures"] += 1
                    raise JudgeError(f"the judge server refused the request: HTTP {r.status_code}: {_message(r)}")
                try:
                    return str(r.json()["choices"][0]["message"]["content"] or "")
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    self.stats["failures"] += 1
                    raise JudgeError(f"the judge server's reply is not a chat completion: {r.text[:200]!r}") from exc
        self.stats["failures"] += 1
        raise JudgeError(f"the judge server failed {self.retries + 1} times ({self.base_url}): {last}")


def _message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]

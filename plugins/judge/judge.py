"""LLM judges: a prompt template, a chat backend, strict verdict parsing, a cache; and the ``llm_judge`` reward.

A :class:`JudgeTemplate` is a YAML file (``plugins/judge/templates/``: ``equivalence``, ``helpfulness``,
``harmlessness``; or a path to your own) with a system and a user message and a ``verdict`` rule: a regular
expression the reply's **last line** must match in full, mapped to a score by ``labels`` or scaled from
``scale: [lo, hi]`` to [0, 1]. Anything else -- an empty reply, a rambling one, a score out of range -- is
"cannot be scored" (:class:`~r1gym.core.rewards.Unscorable`), never a default score.

The text under judgement is data, not instructions. It goes between two markers that carry a tag no response
author can predict (an HMAC of the judged text under a key made at start-up: ``<<<RESPONSE 3f9c…>>>``; the
same text gets the same prompt within a process), so it cannot close its own block, and the prompt says that
what is between the markers is data. Lines of it that look like a verdict (``VERDICT: EQUIVALENT``) are
quoted (``> VERDICT: …``) before it is sent, so a judge that merely repeats the response cannot hand its
verdict through: a verdict line must start the line, and a quoted one does not. None of this makes a weak
judge model immune to persuasion; it makes the *harness* unable to take the response's words for the
judge's.

Spans (R1's choice per reward): ``answer`` (the last ``<answer>…</answer>``, else the text after
``</think>``, else all of it; for equivalence), ``summary`` (after ``</think>``; for helpfulness), ``all``
(for harmlessness, reasoning included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1gym.core.r1_template import completion_span
from r1gym.core.rewards import Unscorable

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

TEMPLATES = ("equivalence", "helpfulness", "harmlessness")
MODES = ("generate", "choose")
#: keys the markers' tags: unguessable by the author of a response, the same for the same text in a process
_TAG_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class JudgeTemplate:
    name: str
    system: str
    user: str
    pattern: str
    labels: Mapping[str, float] = field(default_factory=dict)
    scale: tuple[float, float] | None = None
    max_tokens: int = 16
    temperature: float = 0.0
    #: the verdict line with ``{}`` for its label or number, for ``mode: choose``
    line: str | None = None

    def __post_init__(self) -> None:
        if not self.labels and self.scale is None:
            raise ValueError(f"judge template {self.name!r}: its verdict needs 'labels' or 'scale'")
        for slot in ("{response}", "{open}", "{close}"):
            if slot not in self.user:
                raise ValueError(f"judge template {self.name!r}: the user message must contain {slot}")
        re.compile(self.pattern)

    def render(self, response: str, reference: str = "", question: str = "") -> tuple[list[dict[str, str]], str]:
        """(chat messages, the tag of the markers). ``response`` is quoted where it looks like a verdict."""
        payload = json.dumps([question, reference, response]).encode()
        tag = hmac.new(_TAG_KEY, payload, hashlib.sha256).hexdigest()[:16]
        verdict = re.compile(self.pattern)
        quoted = "\n".join(f"> {line}" if verdict.match(line.strip()) else line for line in response.split("\n"))
        user = self.user.format(question=question or "(not given)", reference=reference, response=quoted,
                                open=f"<<<RESPONSE {tag}>>>", close=f"<<<END RESPONSE {tag}>>>")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}], tag

    def options(self) -> list[tuple[str, float]]:
        """Every valid verdict line and its score (labels, or each whole number of the scale)."""
        if self.line is None:
            raise ValueError(f"judge template {self.name!r} has no verdict.line, which mode=choose needs")
        if self.labels:
            return [(self.line.format(label), float(v)) for label, v in self.labels.items()]
        lo, hi = self.scale  # type: ignore[misc]
        return [(self.line.format(n), (n - lo) / (hi - lo)) for n in range(int(lo), int(hi) + 1)]

    def parse(self, reply: str) -> float:
        """The score in the reply's last non-empty line, or :class:`Unscorable`."""
        lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
        m = re.fullmatch(self.pattern, lines[-1]) if lines else None
        if m is None:
            raise Unscorable(f"the {self.name} judge's reply has no verdict line matching {self.pattern!r}: "
                             f"{reply.strip()[-160:]!r}")
        value = m.group(1)
        if self.labels:
            return float(self.labels[value])
        lo, hi = self.scale  # type: ignore[misc]
        number = float(value)
        if not lo <= number <= hi:
            raise Unscorable(f"the {self.name} judge's score {number} is outside [{lo}, {hi}]")
        return (number - lo) / (hi - lo)


def load_template(name_or_path: str) -> JudgeTemplate:
    """A built-in template by name, or a YAML file by path."""
    import yaml

    path = Path(name_or_path).expanduser()
    if not path.is_file():
        if name_or_path not in TEMPLATES:
            raise ValueError(f"unknown judge template {name_or_path!r}: built-in ones are {', '.join(TEMPLATES)}, "
                             "or give the path of a YAML file")
        path = Path(__file__).parent / "templates" / f"{name_or_path}.yaml"
    data = yaml.safe_load(path.read_text())
    verdict = data.get("verdict") or {}
    missing = [k for k in ("system", "user") if k not in data] + ([] if "pattern" in verdict else ["verdict.pattern"])
    if missing:
        raise ValueError(f"judge template {path} lacks {', '.join(missing)}")
    scale = verdict.get("scale")
    return JudgeTemplate(name=str(data.get("name", path.stem)), system=data["system"], user=data["user"],
                         pattern=verdict["pattern"], labels=dict(verdict.get("labels") or {}),
                         scale=tuple(scale) if scale else None, max_tokens=int(data.get("max_tokens", 16)),
                         temperature=float(data.get("temperature", 0.0)), line=verdict.get("line"))


class Judge:
    """A template asked through a backend, with an LRU cache of verdicts keyed by what was judged."""

    def __init__(self, template: JudgeTemplate, backend: Any, cache_size: int = 4096, mode: str = "generate"):
        if mode not in MODES:
            raise ValueError(f"judge mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "choose":
            if not hasattr(backend, "choose"):
                raise ValueError(f"judge mode 'choose' needs a backend that scores fixed replies (local); "
                                 f"{type(backend).__name__} can only generate")
            template.options()  # fails now if the template cannot say what its verdict lines are
        self.template, self.backend, self.cache_size, self.mode = template, backend, cache_size, mode
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"calls": 0, "cache_hits": 0, "unparseable": 0}

    def score(self, response: str, reference: str = "", question: str = "") -> float:
        from r1gym.core.contracts import JudgeError

        key = json.dumps([getattr(self.backend, "key", id(self.backend)), self.template.name, self.mode, response,
                          reference, question])
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.stats["cache_hits"] += 1
                return self._cache[key]
        messages, _ = self.template.render(response, reference, question)
        self.stats["calls"] += 1
        try:
            if self.mode == "choose":
                value = self._expected_score(messages)
            else:
                reply = self.backend.chat(messages, max_tokens=self.template.max_tokens,
                                          temperature=self.template.temperature)
        except JudgeError as exc:
            raise Unscorable(str(exc)) from exc
        if self.mode == "generate":
            try:
                value = self.template.parse(reply)
            except Unscorable:
                self.stats["unparseable"] += 1
                raise
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value


    def _expected_score(self, messages: list[dict[str, str]]) -> float:
        """``mode: choose``: the probability-weighted score over the valid verdict lines (G-Eval style)."""
        import math

        options = self.template.options()
        logps = self.backend.choose(messages, [line for line, _ in options])
        top = max(logps)
        weights = [math.exp(lp - top) for lp in logps]
        return sum(w * v for w, (_, v) in zip(weights, options)) / sum(weights)


_JUDGES: dict[tuple[int, str], tuple[Any, Judge]] = {}  # key -> (the host, kept alive so its id stays its own; judge)
_JUDGES_LOCK = threading.Lock()


def get_judge(template: str, backend: str, backend_options: Mapping[str, Any] | None, cache_size: int,
              mode: str = "generate", host: PluginHost | None = None) -> Judge:
    """The process-wide judge for (host, template, backend, options, mode): one model load, one cache; the
    ``backend`` is looked up in ``host`` (default: the process-wide host)."""
    from r1gym.core.plugins import default_host

    host = host or default_host()
    key = (id(host), json.dumps([template, backend, sorted((backend_options or {}).items()), cache_size, mode], default=repr))
    with _JUDGES_LOCK:
        if key not in _JUDGES:
            factory = host.judges.get(backend)  # an unknown name lists the known ones
            _JUDGES[key] = (host, Judge(load_template(template), factory(**dict(backend_options or {})), cache_size, mode))
        return _JUDGES[key][1]


def llm_judge(
    completion: str,
    *,
    answer: Any = None,
    question: str = "",
    template: str = "equivalence",
    span: str = "answer",
    backend: str = "local",
    backend_options: Mapping[str, Any] | None = None,
    cache_size: int = 4096,
    mode: str = "generate",
    host: PluginHost | None = None,
) -> float:
    """The judge's score in [0, 1] for the completion's ``span`` (see the module docstring).

    ``answer`` (the task's reference, for ``equivalence``) and ``question`` come from the task's fields;
    ``template`` is a built-in name or a YAML path; ``backend`` a registered judge backend (``local``,
    ``openai``, looked up in ``host``, the env's plugin host, passed in by the reward set) with ``backend_options`` (e.g. ``{base_url: http://127.0.0.1:8000/v1, model: judge}``).
    ``mode``: ``generate`` (the judge writes its verdict, parsed strictly) or ``choose`` (local backend only: the
    probability-weighted score over the template's valid verdict lines, from one forward pass; every
    completion gets a score, which makes even a small local model usable as a judge). An unparseable verdict
    or a failed call raises :class:`Unscorable`. Example config::

        rewards:
          llm_judge: {weight: 1.0, template: equivalence, backend: openai,
                      backend_options: {base_url: "http://127.0.0.1:8000/v1", model: smollm2}}
    """
    if template == "equivalence" and (answer is None or str(answer).strip() == ""):
        raise Unscorable("the equivalence judge needs the task's reference answer (field 'answer')")
    judge = get_judge(template, backend, backend_options, cache_size, mode, host)
    return judge.score(completion_span(completion, span), "" if answer is None else str(answer), str(question or ""))

"""Combining reward functions by weight, and the "cannot be scored" outcome.

A reward function answers a float, or says it cannot score the completion: it returns ``None`` or raises
:class:`Unscorable` (a checker that crashed or timed out, a reference answer that does not parse). Any
other exception is also "cannot be scored", with the exception as the reason, and is logged. Such a
sample is never silently given 0: :class:`RewardSet` reports it per component and per reason, and the
config (``unscorable``) decides whether the trainer masks it out of the loss (``"mask"``, the default) or
scores it with a fixed value the user picked (``"score"`` with ``unscorable_score``).

A reward that grades a final answer can say which answer it graded by returning :class:`Graded` (a float
carrying ``answer``, a hashable canonical form); evaluation votes over those answers for cons@k.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RewardFn = Callable[..., float | None]
UNSCORABLE_POLICIES = ("mask", "score")


class Graded(float):
    """A reward value plus the final answer it graded, in a canonical form (``None``: no answer found),
    and the flags its grader raised.

    Two completions with equal ``answer`` got the same verdict against the same reference, so majority
    voting (cons@k) can count answers instead of re-checking them. ``flags`` are short names of what a
    team watching for reward hacking wants counted per step and shown per sample, whatever the value:
    ``ended_early`` (the program stopped before the harness finished), ``hack_pattern`` (the code tried a
    known reward-hacking trick), ``fallback`` (the verdict came from a fallback path, not the main check).

    >>> g = Graded(1.0, answer="1/2", flags=("fallback",))
    >>> g + 0, g.answer, g.flags
    (1.0, '1/2', ('fallback',))
    """

    answer: Any
    flags: tuple[str, ...]

    def __new__(cls, value: float, answer: Any = None, flags: Sequence[str] = ()) -> Graded:
        obj = super().__new__(cls, value)
        obj.answer = answer
        obj.flags = tuple(dict.fromkeys(flags))
        return obj


class Unscorable(Exception):
    """Raised by a reward function that cannot score a completion; the message is the reason."""


@dataclass(frozen=True)
class RewardComponent:
    """One named reward function with its weight and its parameters from config."""

    name: str
    fn: RewardFn
    weight: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the plugin host the reward was looked up in, given to a reward that declares a ``host`` keyword (one
    #: that builds something registered by name, e.g. ``code_tests``' sandbox); not a config parameter
    host: Any = None

    def __post_init__(self) -> None:
        sig = inspect.signature(self.fn)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        accepted = None if takes_any else frozenset(sig.parameters)
        object.__setattr__(self, "_accepted", accepted)
        object.__setattr__(self, "_takes_host", "host" in sig.parameters)
        if "host" in self.params:
            raise TypeError(f"reward {self.name!r}: 'host' is not a config parameter (the plugin host is passed in)")
        if accepted is not None:
            unknown = set(self.params) - accepted
            if unknown:
                raise TypeError(
                    f"reward {self.name!r} got unknown parameter(s) {sorted(unknown)}; "
                    f"it accepts {sorted(accepted - {'completion'})}"
                )

    def __call__(self, completion: str, fields: Mapping[str, Any]) -> float | None:
        kwargs = {**fields, **self.params}
        accepted = self._accepted  # type: ignore[attr-defined]
        if accepted is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if self._takes_host:  # type: ignore[attr-defined]  # never a task field's "host"
            kwargs.pop("host", None)
            if self.host is not None:
                kwargs["host"] = self.host
        return self.fn(completion, **kwargs)


@dataclass
class RewardOutcome:
    """The score of one completion: the weighted total and every component.

    ``total`` is ``None`` when a component with non-zero weight could not be scored; ``unscorable`` maps
    such components to their reason.
    """

    total: float | None
    components: dict[str, float | None]
    unscorable: dict[str, str]
    #: the graded answer of each component that returned :class:`Graded`
    answers: dict[str, Any] = field(default_factory=dict)
    #: the flags (``ended_early``, ``hack_pattern``, ``fallback``, ...) of each component that raised any
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def scorable(self) -> bool:
        return self.total is not None


@dataclass
class RewardSet:
    """Weighted sum of reward components (the env's reward), with per-component results kept."""

    components: list[RewardComponent]

    def score(self, completion: str, fields: Mapping[str, Any]) -> RewardOutcome:
        values: dict[str, float | None] = {}
        reasons: dict[str, str] = {}
        answers: dict[str, Any] = {}
        flags: dict[str, tuple[str, ...]] = {}
        for comp in self.components:
            try:
                value = comp(completion, fields)
                if isinstance(value, Graded):
                    answers[comp.name] = value.answer
                    if value.flags:
                        flags[comp.name] = value.flags
                if value is None:
                    reasons[comp.name] = "returned None"
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                    reasons[comp.name] = f"returned {value!r}, not a number"
                    value = None
                else:
                    value = float(value)
            except Unscorable as exc:
                value, reasons[comp.name] = None, str(exc) or "unscorable"
            except Exception as exc:  # a crashing checker is counted and logged, never a silent 0
                value, reasons[comp.name] = None, f"{type(exc).__name__}: {exc}"
                log.warning("reward %r raised %s", comp.name, reasons[comp.name], exc_info=log.isEnabledFor(logging.DEBUG))
            values[comp.name] = value
        blocking = [c for c in self.components if c.name in reasons and c.weight != 0]
        total = None if blocking else sum(c.weight * (values[c.name] or 0.0) for c in self.components)
        return RewardOutcome(total, values, reasons, answers, flags)


def build_reward_set(spec: Mapping[str, Any], lookup: Callable[[str], RewardFn], *, host: Any = None) -> RewardSet:
    """Build a :class:`RewardSet` from config: ``{name: weight}`` or ``{name: {weight: w, **params}}``.

    ``lookup`` maps a reward name to its function (normally ``host.rewards.get``), and raises an
    error listing the known names for an unknown one; ``host`` is handed to rewards that declare a ``host``
    keyword (:attr:`RewardComponent.host`). ``reward: <registered name>`` in a mapping uses that
    function under the key's name, so one reward can appear twice with different parameters (R1's
    helpfulness and harmlessness judges: ``{helpfulness: {reward: llm_judge, template: helpfulness}, ...}``).
    """
    comps = []
    for name, node in spec.items():
        if node is None:
            continue
        fn_name = name
        if isinstance(node, (int, float)):
            weight, params = float(node), {}
        elif isinstance(node, Mapping):
            params = dict(node)
            weight = float(params.pop("weight", 1.0))
            fn_name = str(params.pop("reward", name))
            params = {k: v for k, v in params.items() if not str(k).startswith("_")}
        else:
            raise TypeError(f"reward {name!r}: expected a weight or a mapping with 'weight', got {node!r}")
        comps.append(RewardComponent(name, lookup(fn_name), weight, params, host))
    if not comps:
        raise ValueError("an environment needs at least one reward; got an empty reward spec")
    return RewardSet(comps)

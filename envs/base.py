"""LLM episodes as gymnasium environments.

One episode = one prompt and the model's answer(s):

* ``reset(seed=..., options={"index": i})`` picks task ``i`` (all G samples of a GRPO group pass the same
  index) or, without an index, a task drawn from the env's seeded RNG. It returns the prompt as chat
  messages and an ``info`` with the task's id and public metadata: never the answer.
* ``step(text)`` scores the completion with the env's :class:`~r1gym.core.rewards.RewardSet` and returns
  ``(observation, reward, terminated, truncated, info)`` with ``info["rewards"]`` holding every component.
  Pass a :class:`Completion` (a ``str`` that also carries the sampler's finish reason) and a completion that
  hit the token limit comes back as ``truncated``.
* A reward that cannot be scored yields ``reward = nan`` and ``info["scorable"] = False`` under the default
  ``unscorable="mask"`` (the trainer drops it from the loss), or the configured ``unscorable_score``.

:class:`MultiTurnEnv` adds turns: after each answer the env may reply (tool output, a checker's verdict)
and the episode goes on until the env is satisfied (``terminated``) or ``max_turns`` is reached
(``truncated``).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import gymnasium as gym

from r1gym.core.rewards import UNSCORABLE_POLICIES, RewardFn, RewardOutcome, RewardSet, build_reward_set
from r1gym.core.rollout import Completion  # noqa: F401  (part of the env API: step(Completion(...)))
from r1gym.core.targets import TARGET_KEY, is_reference, locate
from r1gym.envs.spaces import Conversation, Message, Utterance

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

#: The instructions of DeepSeek-R1-Zero's template (R1 paper, Table 1), used as the system message.
R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
SYSTEM_PROMPTS = {"r1": R1_SYSTEM_PROMPT, "none": None}


@dataclass(frozen=True)
class Task:
    """One problem. ``fields`` go to the reward functions (the answer lives there) and never into ``info``;
    ``meta`` is public (difficulty, source) and is copied into ``info``."""

    id: str
    prompt: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class TaskSource(Protocol):
    """A finite, indexable set of tasks. Procedural sources derive task ``i`` from their seed and ``i``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Task: ...


def source_factory(source: Mapping[str, Any], host: PluginHost | None = None) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The callable a source config names and the parameters it will get, found without calling it (a config
    check can bind the parameters to its signature before any data or model loads).

    ``{"name": <registered source>, **params}`` looks the name up in ``host`` (default: the process-wide
    host); ``{"name": "module:make_source" | "path/to/file.py:make_source", **params}`` or ``{"_target_":
    "package.module.MySource", **params}`` names it directly (:func:`r1gym.core.targets.locate`).
    """
    if not isinstance(source, Mapping) or not ({"name", TARGET_KEY} & set(source)):
        raise TypeError(f"source must be a TaskSource or a mapping with a 'name' or '{TARGET_KEY}' key, got {source!r}")
    params = dict(source)
    if TARGET_KEY in params:
        if "name" in params:
            raise ValueError(f"a source config names its source once: 'name' or '{TARGET_KEY}', got both in {source!r}")
        factory = locate(str(params.pop(TARGET_KEY)), "task source")
    elif is_reference(params["name"]):
        factory = locate(params.pop("name"), "task source")
    else:
        from r1gym.core.plugins import default_host

        factory = (host or default_host()).task_sources.get(params.pop("name"))
    if not callable(factory):
        raise TypeError(f"task source {source!r} names {factory!r}, which cannot be called to build a source")
    return factory, {k: v for k, v in params.items() if not (k.startswith("_") and k.endswith("_"))}


def resolve_source(source: TaskSource | Mapping[str, Any], host: PluginHost | None = None) -> TaskSource:
    """A task source object, or one built from config (:func:`source_factory`). A ``_target_`` node is built
    by Hydra's ``instantiate``, so its ``_partial_``, ``_args_`` and nested ``_target_`` nodes work as in Hydra."""
    # Mapping first: a dict has __len__ and __getitem__, so it also passes the runtime TaskSource check.
    if not isinstance(source, Mapping) and isinstance(source, TaskSource):
        return source
    factory, params = source_factory(source, host)  # type: ignore[arg-type]
    if TARGET_KEY in source:  # type: ignore[operator]
        from hydra.utils import instantiate

        built = instantiate({**source, TARGET_KEY: factory}, _convert_="all")  # type: ignore[dict-item]
    else:
        built = factory(**params)
    if isinstance(built, Mapping) or not isinstance(built, TaskSource):
        raise TypeError(f"task source {source!r} built {type(built).__name__}, not a task source (an object with "
                        "__len__ and __getitem__ giving r1gym.envs.base.Task)")
    return built


def resolve_rewards(rewards: RewardSet | Mapping[str, Any], host: PluginHost | None = None) -> RewardSet:
    """A :class:`RewardSet`, or ``{name: weight | {weight, **params}}`` resolved through the plugins of
    ``host`` (default: the process-wide host), which rewards that declare a ``host`` keyword are given.

    A reward may also be named without a plugin (:func:`config_rewards`): the key or its ``reward``/``fn``
    is ``"module:function"`` or ``"path/to/file.py:function"``, or the node has a ``_target_``. Such rewards
    keep the contract of registered ones (parameters checked against the signature and passed per call,
    ``None``/:class:`~r1gym.core.rewards.Unscorable` counted, the ``host`` keyword).
    """
    if isinstance(rewards, RewardSet):
        return rewards
    from r1gym.core.plugins import default_host

    host = host or default_host()
    spec, found = config_rewards(rewards)
    return build_reward_set(spec, lambda name: found[name] if name in found else host.rewards.get(name), host=host)


#: component names taken by the weighted reward's own metrics (reward/mean, reward/std in metrics.jsonl)
RESERVED_REWARD_NAMES = ("mean", "std")


def reward_names(rewards: Mapping[str, Any]) -> dict[str, str]:
    """The component name of each key of a reward spec: the key itself, except that a key that *is* a reference
    is named by what follows its last ``:``, the module or file path stripped (``"my_rewards.py:exact"`` and
    ``"mypkg.rewards:exact"`` are ``exact``). Component names are what metrics and samples show
    (``reward/exact``), and TensorBoard and W&B read ``/`` as a section and may rewrite ``:``; a path in a name
    would also change with the working directory. Two keys with one name fail, saying how to name one.

    >>> reward_names({"os.path:isabs": 0.5, "format": 0.1})
    {'os.path:isabs': 'isabs', 'format': 'format'}
    """
    names: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for key in rewards:
        name = str(key).rpartition(":")[2].strip() if is_reference(key) else str(key)
        if name in RESERVED_REWARD_NAMES:
            raise ValueError(f"reward {key!r} would be the component {name!r}, whose metric reward/{name} is the "
                             f"weighted reward's own ({', '.join(f'reward/{n}' for n in RESERVED_REWARD_NAMES)}); "
                             f"name it otherwise, e.g. {name}_reward: {{fn: {str(key)!r}}}")
        if name in by_name:
            ref = key if is_reference(key) else by_name[name]
            raise ValueError(f"rewards {by_name[name]!r} and {key!r} would both be the component {name!r} (logged as "
                             f"reward/{name}): a reward given by reference is named by its function; name one "
                             f"yourself, e.g. {name}_2: {{fn: {ref!r}}}")
        names[key], by_name[name] = name, key
    return names


def config_rewards(rewards: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, RewardFn]]:
    """The reward spec with every reward that config names directly resolved: ``(spec, found)``, where such an
    entry of ``spec`` names its function by a key of ``found`` (``reward: <key>``); registered names are left
    for the plugin host. Nothing is called, except that a ``_target_`` *class* is instantiated with the
    node's parameters (by Hydra) and the instance is the reward. A key that is itself a reference is the
    component named by its function (:func:`reward_names`).

    >>> spec, found = config_rewards({"os.path:isabs": 0.5, "format": 0.1})
    >>> spec["isabs"]["weight"], found[spec["isabs"]["reward"]].__name__, spec["format"]
    (0.5, 'isabs', 0.1)
    """
    spec: dict[str, Any] = {}
    found: dict[str, RewardFn] = {}
    names = reward_names(rewards)
    for key, node in rewards.items():
        name = names[key]
        if node is None:  # switched off (``rewards.format=null``)
            spec[name] = node
            continue
        params = dict(node) if isinstance(node, Mapping) else None
        given = [k for k in (TARGET_KEY, "fn", "reward") if params is not None and k in params]
        if len(given) > 1:
            raise ValueError(f"reward {name!r} names its function more than once ({', '.join(given)}); keep one")
        ref = params.pop(given[0]) if given else key  # type: ignore[union-attr]
        if not (is_reference(ref) or given == [TARGET_KEY]):  # a registered name: the plugin host has it
            spec[name] = node if not given else {**params, "reward": ref}  # type: ignore[dict-item]
            continue
        fn = locate(str(ref), "reward function")
        found_key = f"<{name}: {ref}>"
        params = params if params is not None else {"weight": node}
        hydra_keys = {k: params.pop(k) for k in list(params) if k.startswith("_") and k.endswith("_")}
        if inspect.isclass(fn):
            from hydra.utils import instantiate

            weight = params.pop("weight", 1.0)
            fn = instantiate({TARGET_KEY: fn, **params, **hydra_keys}, _convert_="all")
            params = {"weight": weight}
        elif hydra_keys:
            raise ValueError(f"reward {name!r}: {ref!r} is a function; its parameters go to every call as keywords, "
                             f"so {sorted(hydra_keys)} do not apply (a class target is built once with them)")
        if not callable(fn):
            raise TypeError(f"reward {name!r}: {ref!r} is {type(fn).__name__}, not a callable reward")
        found[found_key] = fn
        spec[name] = {**params, "reward": found_key}
    return spec, found


def task_index(options: Mapping[str, Any] | None, num_tasks: int, rng: Any) -> int:
    """The task an episode is about: ``options["index"]`` (checked) pins it, as all G samples of a group
    need; without one, a task drawn from the env's seeded RNG."""
    if options and "index" in options:
        index = int(options["index"])
        if not 0 <= index < num_tasks:
            raise IndexError(f"options['index']={index} is out of range for a source of {num_tasks} tasks")
        return index
    return int(rng.integers(num_tasks))


def _shot(shot: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(shot, Mapping) or set(shot) != {"user", "assistant"}:
        raise ValueError(f"each few_shot example must be a mapping with keys 'user' and 'assistant', got {shot!r}")
    return {"user": str(shot["user"]), "assistant": str(shot["assistant"])}


class SingleTurnEnv(gym.Env[list, str]):
    """Prompt in, one completion out, scored by weighted rewards. Registered envs are this class + data."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        source: TaskSource | Mapping[str, Any],
        rewards: RewardSet | Mapping[str, Any],
        *,
        system_prompt: str | None = "r1",
        few_shot: Sequence[Mapping[str, str]] = (),
        unscorable: str = "mask",
        unscorable_score: float = 0.0,
        render_mode: str | None = None,
        host: PluginHost | None = None,
    ):
        if unscorable not in UNSCORABLE_POLICIES:
            raise ValueError(f"unscorable must be one of {UNSCORABLE_POLICIES}, got {unscorable!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.host = host  # the plugins its source, rewards (and a subclass's sandbox) come from; None: the default
        self.source = resolve_source(source, host)
        if len(self.source) == 0:
            raise ValueError("the task source is empty")
        self.reward_set = resolve_rewards(rewards, host)
        self.system_prompt = SYSTEM_PROMPTS.get(system_prompt, system_prompt) if system_prompt else None
        self.few_shot = [_shot(s) for s in few_shot]
        self.unscorable, self.unscorable_score = unscorable, float(unscorable_score)
        self.render_mode = render_mode
        self.observation_space = Conversation()
        self.action_space = Utterance()
        self.task: Task | None = None
        self.messages: list[Message] = []

    # -- gymnasium API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[list, dict]:
        super().reset(seed=seed)
        index = task_index(options, len(self.source), self.np_random)
        self.task = self.source[index]
        self.messages = self.initial_messages(self.task)
        self.turn = 0
        # a deep copy: info must not share mutable objects between calls (gymnasium's check_env checks it)
        info = {"task_id": self.task.id, "index": index, **copy.deepcopy(dict(self.task.meta))}
        return [dict(m) for m in self.messages], info

    def step(self, action: str) -> tuple[list, float, bool, bool, dict]:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        self.turn += 1
        self.messages.append({"role": "assistant", "content": str(action)})
        outcome = self.reward_set.score(str(action), self.task.fields)
        hit_limit = getattr(action, "finish_reason", "stop") == "length"
        return self._finish(outcome, terminated=not hit_limit, truncated=hit_limit)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(f"[{m['role']}] {m['content']}" for m in self.messages)
        return None

    # -- for subclasses --------------------------------------------------------------------------------
    def initial_messages(self, task: Task) -> list[Message]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for shot in self.few_shot:
            msgs += [{"role": "user", "content": shot["user"]}, {"role": "assistant", "content": shot["assistant"]}]
        return msgs + [{"role": "user", "content": task.prompt}]

    def _finish(self, outcome: RewardOutcome, *, terminated: bool, truncated: bool) -> tuple:
        if outcome.scorable:
            reward = float(outcome.total)  # type: ignore[arg-type]
        else:
            reward = math.nan if self.unscorable == "mask" else self.unscorable_score
        info = {
            "rewards": dict(outcome.components),
            "scorable": outcome.scorable,
            "unscorable": dict(outcome.unscorable),
            "answers": dict(outcome.answers),
            "flags": {name: list(f) for name, f in outcome.flags.items()},
            "turn": self.turn,
        }
        return [dict(m) for m in self.messages], reward, terminated, truncated, info


class MultiTurnEnv(SingleTurnEnv):
    """An episode of several turns: the env answers each completion until it is done or out of turns.

    Subclasses implement :meth:`feedback`: return the env's next message (e.g. tool output or "your
    equation gives 12, not 24") to continue, or ``None`` to end the episode. The reward is given on the
    last turn, scored on the last completion; earlier steps return reward 0.0 and no reward components.
    """

    def __init__(self, *args: Any, max_turns: int = 3, feedback_role: str = "user", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if feedback_role not in ("user", "tool"):
            raise ValueError(f"feedback_role must be 'user' or 'tool', got {feedback_role!r}")
        self.max_turns, self.feedback_role = max_turns, feedback_role

    def feedback(self, task: Task, completion: str) -> str | None:
        """The env's reply to ``completion``, or ``None`` when the episode is over."""
        raise NotImplementedError

    def step(self, action: str) -> tuple[list, float, bool, bool, dict]:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        hit_limit = getattr(action, "finish_reason", "stop") == "length"
        reply = None if hit_limit else self.feedback(self.task, str(action))
        if reply is not None and self.turn + 1 < self.max_turns:
            self.turn += 1
            self.messages.append({"role": "assistant", "content": str(action)})
            self.messages.append({"role": self.feedback_role, "content": reply})
            info = {"rewards": {}, "scorable": True, "unscorable": {}, "turn": self.turn}
            return [dict(m) for m in self.messages], 0.0, False, False, info
        out = super().step(action)
        # out of turns while the env still had something to say = truncated, not terminated
        if reply is not None:
            return out[0], out[1], False, True, out[4]
        return out

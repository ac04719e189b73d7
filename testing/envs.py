"""The env conformance check: what every r1gym environment promises, checked on a real instance.

r1gym's trainer relies on more than gymnasium's API: ``reset(seed=s)`` is reproducible (a resumed run sees the
same tasks), ``options={"index": i}`` pins the task (all G samples of a GRPO group share it), ``step(text)``
returns the weighted reward and every component in ``info["rewards"]``, and an unscorable completion is a NaN
reward under the default ``mask`` policy with ``info["scorable"]`` false, never a silent 0.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

#: completions every env must take without raising: empty, garbage, tags only, a plausible answer
PROBE_COMPLETIONS = ("", "\x00\ufffd garbage \U0001F600", "<think></think><answer></answer>",
                     "<think> 2 + 2 is 4 </think> <answer> 4 </answer>")
#: the gymnasium checker warnings that do not apply to text envs
IGNORED_WARNINGS = (r".*No render fps was declared",)
MAX_TURNS = 32


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def check_env(env_id: str, *, host: Any = None, seeds: Sequence[int] = (0, 1, 2),
              completions: Sequence[str] = PROBE_COMPLETIONS, **kwargs: Any) -> None:
    """Check the env ``env_id`` (made with ``host`` and ``kwargs``, as :func:`r1gym.envs.make` does); raise
    ``AssertionError`` listing every violation.

    * gymnasium's ``check_env`` passes, its warnings treated as errors (but for :data:`IGNORED_WARNINGS`);
    * two fresh envs reset with the same seed give the same observation and info, and the same reward for the
      same completion; ``options={"index": i}`` gives the same task whatever the seed;
    * each of ``completions``, answered turn after turn until the episode ends (at most :data:`MAX_TURNS`), gives
      a float reward, bool ``terminated``/``truncated``, and an ``info`` with ``rewards`` (every component by
      name, on the last turn), ``scorable`` and ``unscorable``; a scorable step's reward is finite, an
      unscorable one names its reason.
    """
    from gymnasium.utils.env_checker import check_env as gym_check_env

    from r1gym.envs import make

    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            gym_check_env(make(env_id, host=host, **kwargs).unwrapped, skip_render_check=True)
        except Exception as exc:  # noqa: BLE001  (reported with the rest)
            problems.append(f"gymnasium check_env failed: {type(exc).__name__}: {exc}")
    problems += [f"gymnasium check_env warned: {w.message}" for w in caught
                 if not any(re.match(p, str(w.message)) for p in IGNORED_WARNINGS)]

    def episode(seed: int, completion: str, options: dict | None = None) -> tuple[Any, Any, list]:
        env = make(env_id, host=host, **kwargs)
        obs, info = env.reset(seed=seed, options=options)
        steps = []
        for _ in range(MAX_TURNS):
            out = env.step(completion)
            steps.append(out[1:])
            if out[2] or out[3]:
                break
        else:
            problems.append(f"seed {seed}: the episode did not end after {MAX_TURNS} turns of {completion!r}")
        env.close()
        return obs, info, steps

    components = None
    for seed in seeds:
        first, second = episode(seed, completions[-1]), episode(seed, completions[-1])
        if not _same(first[:2], second[:2]):
            problems.append(f"reset(seed={seed}) twice gave different observations or info")
        if not _same([s[:3] for s in first[2]], [s[:3] for s in second[2]]):
            problems.append(f"seed {seed}: the same completion got different rewards: {first[2]} vs {second[2]}")
    for index in (0, 1):
        pinned = [episode(seed, completions[-1], {"index": index})[0] for seed in (seeds[0], seeds[0] + 101)]
        if not _same(*pinned):
            problems.append(f"options={{'index': {index}}} did not pin the task: two seeds gave different prompts")
    for completion in completions:
        for turn, (reward, terminated, truncated, info) in enumerate(episode(seeds[0], completion)[2]):
            where = f"step {turn} with {completion[:40]!r}"
            if not isinstance(reward, float) or isinstance(reward, bool):
                problems.append(f"{where}: reward {reward!r} is not a float")
            if not (isinstance(terminated, bool) and isinstance(truncated, bool)):
                problems.append(f"{where}: terminated/truncated are not bools: {terminated!r}, {truncated!r}")
            missing = {"rewards", "scorable", "unscorable"} - set(info)
            if missing:
                problems.append(f"{where}: info lacks {sorted(missing)}")
                continue
            if info["scorable"] and isinstance(reward, float) and not math.isfinite(reward):
                problems.append(f"{where}: scorable, but the reward is {reward}")
            if not info["scorable"] and not info["unscorable"]:
                problems.append(f"{where}: unscorable without a reason in info['unscorable']")
            if (terminated or truncated) and info["rewards"]:
                if components is not None and set(info["rewards"]) != components:
                    problems.append(f"{where}: components {sorted(info['rewards'])}, before {sorted(components)}")
                components = set(info["rewards"])
    if components is None:
        problems.append("no episode ended with reward components in info['rewards']")
    if problems:
        raise AssertionError(f"{env_id} breaks the r1gym env contract:\n- " + "\n- ".join(problems))

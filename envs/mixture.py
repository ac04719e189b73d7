"""Mixing environments by weight: R1's "RL for all scenarios" trains on reasoning prompts (rule rewards) and
general prompts (reward models / judges) in one run.

:class:`MixtureEnv` holds one instance of each member env and a :class:`MixtureSource`: a fixed, seeded list
of ``size`` (member, task) pairs in which each member appears in proportion to its weight. The trainer's
prompt sampler draws indices of that list uniformly, so members are drawn by weight, and ``reset(options=
{"index": i})`` pins the same member and task for all G samples of a group, as every r1gym env does. Reward
components are the member's own (``info["rewards"]`` has the components of the member that ran), and
``info["member"]`` names it. A member's ``id`` takes every form ``env.id`` does
(:func:`r1gym.core.env_factory.env_spec`): a registered id or an entry point, ``"package.module:MyEnv"`` or
``"path/to/envs.py:MyEnv"``; its default name is the id's last part (``Arithmetic-v0``, ``MyEnv``).

"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from r1gym.envs.base import Task, task_index


class MixtureSource:
    """``size`` (member, task index) pairs, members in proportion to their weights, in a seeded order."""

    def __init__(self, members: Sequence[tuple[str, Any]], weights: Sequence[float], size: int = 1024, seed: int = 0):
        if len(members) != len(weights) or not members:
            raise ValueError("a mixture needs at least one member and one weight per member")
        w = np.asarray(weights, dtype=float)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
        rng = np.random.default_rng(seed)
        counts = np.floor(w / w.sum() * size).astype(int)
        counts[np.argmax(w)] += size - counts.sum()
        self.members = list(members)
        self.pairs: list[tuple[int, int]] = []
        for k, c in enumerate(counts):
            n = len(self.members[k][1])
            self.pairs += [(k, int(j)) for j in rng.permutation(max(c, n))[:c] % n]
        order = rng.permutation(len(self.pairs))
        self.pairs = [self.pairs[i] for i in order]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Task:
        k, j = self.pairs[index]
        name, source = self.members[k]
        task = source[j]
        return Task(f"{name}/{task.id}", task.prompt, task.fields, {**task.meta, "member": name})


class MixtureEnv(gym.Env[list, str]):
    """Member envs drawn by weight (see the module docstring). ``envs``: ``[{id, weight, kwargs, name}]``."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, envs: Sequence[Mapping[str, Any]], size: int = 1024, seed: int = 0,
                 render_mode: str | None = None, host: Any = None):
        from r1gym.core.env_factory import make_env

        if not envs:
            raise ValueError("MixtureEnv needs at least one member env: envs=[{id: ..., weight: ...}]")
        self.members: list[Any] = []
        names, weights = [], []
        for m in envs:
            if "id" not in m:
                raise ValueError(f"each mixture member needs an 'id' (and a 'weight'), got {dict(m)}")
            # any form env.id takes (a registered id or an entry point), from the same plugins as the mixture
            member = make_env(m["id"], m.get("kwargs"), host=host, disable_env_checker=True).unwrapped
            if not hasattr(member, "source") or not hasattr(member, "reward_set"):
                raise TypeError(f"mixture member {m['id']!r} is a {type(member).__name__}, which has no task source "
                                "and reward set: a member is an r1gym task env (r1gym.envs.base.SingleTurnEnv or a "
                                "subclass)")
            self.members.append(member)
            names.append(str(m.get("name", m["id"].split("/")[-1].rpartition(":")[2])))
            weights.append(float(m.get("weight", 1.0)))
        self.source = MixtureSource(list(zip(names, (e.source for e in self.members))), weights, size, seed)
        self.names, self.render_mode = names, render_mode
        self.observation_space = self.members[0].observation_space
        self.action_space = self.members[0].action_space
        self.active = 0

    @property
    def task(self) -> Task | None:
        return self.members[self.active].task

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.members[self.active].messages

    @property
    def reward_set(self) -> Any:
        """The reward set of the member that ran last (the first member's before any reset)."""
        return self.members[self.active].reward_set

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[list, dict]:
        super().reset(seed=seed)
        index = task_index(options, len(self.source), self.np_random)
        self.active, j = self.source.pairs[index]
        obs, info = self.members[self.active].reset(seed=seed, options={"index": j})
        info = {**copy.deepcopy(info), "task_id": f"{self.names[self.active]}/{info['task_id']}", "index": index,
                "member": self.names[self.active]}
        return obs, info

    def step(self, action: str) -> tuple[list, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.members[self.active].step(action)
        return obs, reward, terminated, truncated, {**info, "member": self.names[self.active]}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(f"[{m['role']}] {m['content']}" for m in self.members[self.active].messages)
        return None

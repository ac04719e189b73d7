"""Old home of :mod:`r1gym.core.env_factory` (making the trainer's envs from the ``env`` config node).

Kept only because ``core/grpo.py`` and ``core/strategies.py`` still import from here (their owners switch them
to ``r1gym.core.env_factory``; then this module goes, and ``envs.py`` names only the env classes of a task
family, as README's "Task families" says).
"""

from r1gym.core.env_factory import deep_merge, env_kwargs, make_envs, primary_reward  # noqa: F401

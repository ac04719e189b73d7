"""r1gym.core: the GRPO/SFT engine. It knows rollouts, advantages, losses and checkpoints, and no task.

Everything task-specific (environments, rewards, sandboxes, loggers, rollout backends) reaches the engine
through the plugin manager in :mod:`r1gym.core.plugins`.
"""

"""r1gym-echo: the smallest complete r1gym plugin, meant to be copied.

It teaches a model to write a short word backwards. The hook implementations are in
:mod:`r1gym_echo.plugin`, the task source and the reward in :mod:`r1gym_echo.tasks`, the Hydra config in
``r1gym_echo/conf/env/reverse.yaml``.
"""

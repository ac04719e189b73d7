"""r1gym's pytest plugin (entry point ``r1gym`` of the group ``pytest11``): fixtures for testing an r1gym plugin.

Name the plugin under test in its pytest configuration, as its ``r1gym`` entry point names it::

    [tool.pytest.ini_options]
    r1gym_plugin = "my_task"

* ``r1gym_host``: the plugins as ``r1gym`` loads them (built-ins, entry points, ``R1GYM_PLUGINS``), built once
  per session; the test fails with the plugin's own error when the plugin under test did not load (not
  installed, an import error, a plugin API r1gym does not provide, a hook that raised);
* ``r1gym_plugin_envs``: the env ids the plugin under test registered, for :func:`r1gym.testing.check_env`;
* ``make_env``: ``make_env(env_id, **kwargs)`` makes an env from ``r1gym_host`` and closes it after the test.

pytest imports this module in every session where r1gym is installed, so it imports nothing at module level
beyond pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

INI = "r1gym_plugin"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, default="", help="the r1gym plugin under test, by its entry-point name (`r1gym plugins` lists "
                                        "them): r1gym_host fails when it did not load")


def pytest_report_header(config: pytest.Config) -> str:
    from r1gym.core.hookspecs import API_VERSION

    name = config.getini(INI)
    return f"r1gym plugin API {API_VERSION}" + (f", plugin under test: {name}" if name else "")


@pytest.fixture(scope="session")
def r1gym_host(pytestconfig: pytest.Config) -> Any:
    """The plugin host, with the plugin under test (ini ``r1gym_plugin``) required to have loaded."""
    from r1gym.core.plugins import load_plugins
    from r1gym.core.registry import UnknownNameError

    host = load_plugins()
    name = pytestconfig.getini(INI)
    if name:
        try:
            host.require(name)
        except UnknownNameError as exc:
            pytest.fail(f"the plugin under test is not installed ({INI} = {name!r}): {exc}; "
                        "install it (pip install -e .) so that its r1gym entry point is found", pytrace=False)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
    return host


@pytest.fixture(scope="session")
def r1gym_plugin_envs(r1gym_host: Any, pytestconfig: pytest.Config) -> list[str]:
    """The env ids the plugin under test registered (its ``r1gym_register_envs`` calls), in order."""
    name = pytestconfig.getini(INI)
    if not name:
        pytest.fail(f"r1gym_plugin_envs needs the plugin under test: set {INI} = \"<entry-point name>\" in "
                    "[tool.pytest.ini_options]", pytrace=False)
    return list(r1gym_host.plugins[name].contributes.get("envs", []))


@pytest.fixture
def make_env(r1gym_host: Any) -> Iterator[Callable[..., Any]]:
    """``make_env(env_id, **kwargs)``: an env made from ``r1gym_host`` (its sources and rewards), closed after."""
    from r1gym.envs import make

    made: list[Any] = []

    def _make(env_id: str, **kwargs: Any) -> Any:
        made.append(make(env_id, host=r1gym_host, **kwargs))
        return made[-1]

    yield _make
    for env in made:
        env.close()

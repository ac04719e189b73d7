"""Code plugin (issue #5, in progress): running untrusted programs safely.

So far: :mod:`.sandbox` (the ``Sandbox`` protocol, ``RunResult`` statuses and the ``local`` backend under
bubblewrap or unshare) and ``r1gym sandbox run``. Still to come: registration of sandboxes through a hook,
a concurrent pool, the ``e2b`` backend, the ``code_tests``/``code_format`` rewards and the code envs.
"""

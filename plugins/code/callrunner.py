"""The program that runs beside a candidate's code in the sandbox, and the plain-data codec both sides use.

Function-call tests (HumanEval's ``check(candidate)``, MBPP's asserts) are judged without the candidate
ever seeing a test (:mod:`r1gym.plugins.code.harness` tells the whole story). In the sandbox, this file is
``main.py``, with a last line that calls :func:`main` with the calls to make (function name, arguments:
nothing else) and the task's public ``setup``; the candidate's code is ``solution.py``. It loads the
candidate as the module ``solution``, makes the calls in order and writes one JSON line per call to a
private copy of the standard output: the return value as plain data, or the exception the call raised.
The candidate's own printing goes to ``/dev/null``.

Nothing here needs to be trusted. The candidate runs in this process and can change anything in it
(this file's functions, ``json``, the private descriptor); the most it can achieve is to report other
return values, which is what returning them would do. What makes the verdict honest is on the other side:
the judge decodes these lines with :func:`decode`, which accepts plain data only (``int``, ``float``,
``complex``, ``str``, ``bytes``, ``bool``, ``None``, and ``list``/``tuple``/``dict``/``set``/``frozenset``
of those; also builtin classes such as ``int`` and the standard library's ``Counter``, ``OrderedDict``,
``defaultdict`` and ``deque``, rebuilt from their items), and compares them in a process that never ran
candidate code.

Stdlib only, and importable by the judge: the codec lives here once. It imports nothing that Python has
not loaded at start-up but ``_json`` (C): ``json`` and ``typing`` would add ~10 ms to every sandbox run
(``re``, ``enum``), a third of a run's cost.
"""

import builtins
import os
import sys
import types

try:
    from _json import encode_basestring_ascii as _quote
except ImportError:  # an interpreter without the C accelerator
    from json import dumps as _quote

#: deeper values are refused (a self-referencing list would otherwise recurse forever)
MAX_DEPTH = 64
#: builtin classes that may travel as values (MBPP passes ``int`` to a function that filters by type)
TYPES = ("bool", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "object", "set", "str", "tuple", "type")
#: the standard library's dict and list variants that solutions return (MBPP: ``Counter``, ``defaultdict``);
#: the judge rebuilds a genuine one from the items, so nothing of the sender's class travels
MAPPINGS = ("Counter", "OrderedDict", "defaultdict")


class NotPlainData(TypeError):
    """A value that is not plain data (an object of the candidate's class, a callable, a generator, ...)."""


def encode(value, depth=0):
    """``value`` as JSON-ready tagged data. Types are matched exactly (``type(v) is int``), never with
    ``isinstance``: a subclass of ``int`` can redefine ``==``, so it is refused like any other object."""
    if depth > MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH} levels")
    t = type(value)
    if value is None:
        return ["n"]
    if t is bool:
        return ["b", value]
    if t is int:
        return ["i", hex(value)]  # hex: no 4300-digit cap on the way back (int(s, 16) is exempt)
    if t is float:
        return ["f", repr(value)]  # repr round-trips, nan and inf included
    if t is complex:
        return ["c", repr(value.real), repr(value.imag)]
    if t is str:
        return ["s", value]
    if t is bytes:
        return ["y", value.hex()]
    if t is list or t is tuple or t is set or t is frozenset:
        items = [encode(v, depth + 1) for v in (sorted(value, key=repr) if t in (set, frozenset) else value)]
        return [{list: "l", tuple: "t", set: "S", frozenset: "F"}[t], items]
    if t is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    if t is type and value.__name__ in TYPES and getattr(builtins, value.__name__, None) is value:
        return ["T", value.__name__]
    stdlib = sys.modules.get("collections")  # returning a Counter means collections is loaded already
    if stdlib is not None and t.__module__ == "collections":
        for name in MAPPINGS:
            if t is getattr(stdlib, name, None):
                return ["D", name, [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
        if t is getattr(stdlib, "deque", None):
            return ["Q", [encode(v, depth + 1) for v in value]]
    raise NotPlainData(f"a {t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else f"a {t.__name__}")


def decode(data, depth=0):
    """The value :func:`encode` made; raises ``ValueError`` for anything else. The only constructors it
    calls are those of the builtin types and the standard library's containers above, so decoding runs
    nothing of the sender's."""
    if depth > MAX_DEPTH + 1:
        raise ValueError("nested too deep")
    if type(data) is not list or not data or type(data[0]) is not str:
        raise ValueError(f"not a tagged value: {str(data)[:80]}")
    tag, rest = data[0], data[1:]
    if tag == "n" and not rest:
        return None
    if len(rest) == 1:
        (x,) = rest
        if tag == "b" and type(x) is bool:
            return x
        if tag == "i" and type(x) is str:
            return int(x, 16)
        if tag == "f" and type(x) is str:
            return float(x)
        if tag == "s" and type(x) is str:
            return x
        if tag == "y" and type(x) is str:
            return bytes.fromhex(x)
        if tag in ("l", "t", "S", "F") and type(x) is list:
            items = [decode(v, depth + 1) for v in x]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(x) is list:
            out = {}
            for pair in x:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("a dict item is not a [key, value] pair")
                out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
            return out
        if tag == "T" and x in TYPES:
            return getattr(builtins, x)
        if tag == "Q" and type(x) is list:
            import collections

            return collections.deque(decode(v, depth + 1) for v in x)
    if tag == "c" and len(rest) == 2 and all(type(x) is str for x in rest):
        return complex(float(rest[0]), float(rest[1]))
    if tag == "D" and len(rest) == 2 and rest[0] in MAPPINGS and type(rest[1]) is list:
        import collections

        out = decode(["d", rest[1]], depth)
        return collections.defaultdict(None, out) if rest[0] == "defaultdict" else getattr(collections, rest[0])(out)
    raise ValueError(f"not a tagged value: {str(data)[:80]}")


def _exception(exc):
    """[the name of the exception's type, its message]; the judge raises a builtin of that name."""
    try:
        message = str(exc)[:300]
    except BaseException:  # noqa: BLE001 - a candidate's exception whose __str__ raises
        message = "<message could not be read>"
    name = type(exc).__name__ if type(exc).__module__ == "builtins" else "Exception"
    return [name, message]


def dump(data):
    """JSON text of encoded data (strings, booleans and lists of them, as :func:`encode` makes)."""
    if type(data) is str:
        return _quote(data)
    if type(data) is bool:
        return "true" if data else "false"
    return "[" + ",".join(map(dump, data)) + "]"


def main(calls, setup=""):
    """Make ``calls`` (``[[name, args, kwargs], ...]``, arguments encoded) after loading ``setup`` and then
    ``solution.py`` as the module ``solution``; write one line per call (``{"i": k, "ok": value}``,
    ``{"i": k, "raise": [type, message]}`` or ``{"i": k, "fail": why}``, with ``"after"``: the arguments
    after the call, when the call changed them) and ``{"done": n}`` last."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    sys.stdout = open(1, "w", closefd=False)

    def emit(text):
        out.write(text + "\n")
        out.flush()

    module = types.ModuleType("solution")
    module.__file__ = os.path.abspath("solution.py")
    module.__builtins__ = builtins
    sys.modules["solution"] = module
    sys.path.insert(0, os.getcwd())
    try:
        if setup:
            exec(compile(setup, "setup.py", "exec"), module.__dict__)
        with open("solution.py", encoding="utf-8") as f:
            exec(compile(f.read(), "solution.py", "exec"), module.__dict__)
    except BaseException as exc:  # noqa: BLE001 - SystemExit at import is a failure to load, like any other
        emit('{"load": %s}' % dump(_exception(exc)))
        out.close()
        return
    for k, (name, args, kwargs) in enumerate(calls):
        fn = module.__dict__.get(name)
        if fn is None:
            emit('{"i": %d, "raise": %s}' % (k, dump(["NameError", "name %r is not defined" % name])))
            continue
        pos, kw = [decode(a) for a in args], {key: decode(v) for key, v in kwargs}
        try:
            result = fn(*pos, **kw)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are the call's failure too
            line = '{"i": %d, "raise": %s' % (k, dump(_exception(exc)))
        else:
            try:
                line = '{"i": %d, "ok": %s' % (k, dump(encode(result)))
            except (NotPlainData, RecursionError) as exc:
                why = "returned %s, not plain data" % exc if isinstance(exc, NotPlainData) else "returned a value nested too deep"
                line = '{"i": %d, "fail": %s' % (k, _quote(why))
        try:
            after = [encode(a) for a in pos]
            if after != args:
                line += ', "after": ' + dump(after)
        except (NotPlainData, RecursionError):
            pass
        emit(line + "}")
    emit('{"done": %d}' % len(calls))
    out.close()

"""Equivalence of two LaTeX answers with sympy: what runs inside a pool worker.

Parsing is math-verify's: its LaTeX normaliser and ``latex2sympy2_extended`` (symbols keep their case; ANTLR grammar, shipped
generated for the 4.9.3 runtime that Hydra pins, so no antlr 4.13 is needed). Parsing tries ANTLR's fast SLL
prediction mode first and falls back to the full LL mode on a syntax error (SLL either gives LL's tree or
fails), and number literals skip ``sympy.Number(str)`` (which runs ``from sympy import *`` per call): a
LaTeX answer parses in ~1 ms instead of ~7. Units are not stripped by math-verify's list (it removes
``t``, ``h``, ``c`` … after a number, so ``2t`` equals ``2``): :mod:`r1gym.plugins.math.normalize` strips
units itself.

The comparison is ours, written to remove math-verify's known false positives:

* numbers are compared exactly when both evaluate to rationals (``1/2004!`` vs ``1/2006!``: math-verify's
  ``evalf(chop=True)`` calls any two tiny numbers equal), otherwise at 50 digits with a *relative*
  tolerance of 1e-40; a decimal only approximates an irrational with ``approx_digits`` significant digits;
* equations are equal when one is a non-zero constant multiple of the other (``x + y = 0`` ~ ``2x + 2y = 0``),
  never because both have no real solution (math-verify: ``x^2+1=0`` equals ``x^2+2=0``); assignments
  ``x = 5`` compare their right-hand sides, and a bare ``5`` matches ``x = 5`` (but ``2x = 5`` is not ``5``); a
  chain of equalities between constants is a computation worth its last side (``2 + 3 = 5`` ~ ``5``);
* inequalities: same direction and strictness up to a positive multiple, or the same solution set; a chain
  around one value of an unknown function is that value's interval (``0 < f(x) < 1`` ~ ``(0, 1)``);
* a reference sympy reads as undefined but written as a time of day (``12:00``, read 12/0) is compared as one;
* ``\\pm 2`` is the set ``{-2, 2}``: not ``2``;
* sets are unordered, tuples/points and intervals ordered (openness counts), matrices elementwise; a column
  or row vector equals a tuple of the same entries;
* expressions with variables: exact for polynomials (``expand``), otherwise equal values at 6 seeded random
  points (50 digits), with ``simplify`` only when no point can be evaluated.

Everything here may be slow on a pathological input: callers run it in :mod:`r1gym.plugins.math.pool`,
whose workers are killed at the time limit. Imports of sympy happen inside the functions.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from r1gym.plugins.math.normalize import DEFAULT_APPROX_DIGITS, NumberValue

REL_TOL_EXP = 40  # constants are equal when |a - b| <= 1e-40 * max(|a|, |b|)
DIGITS = 50
SAMPLE_POINTS = 6
PARSE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class _Ctx:
    approx_digits: int
    seed: int


def _normalization_config() -> Any:
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig

    return NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="none", equations=False)


@functools.lru_cache(maxsize=1)
def _conversion_config() -> Any:
    """latex2sympy's defaults, except that symbols keep their case: ``X`` is not ``x`` (its default lowercases
    every symbol, so ``a+b`` equalled ``A+B``)."""
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    return ConversionConfig(lowercase_symbols=False)


# A one-letter base (or a Greek letter) before "^" sends ANTLR's SLL mode into a syntax error ("x^2" could still become "x^2_1"):
# written as "{x}^2" (the same LaTeX) it parses in SLL mode, 5-10x faster than the LL fallback. Not for "e"
# (e^2 is exp(2) either way, but as a different tree) nor before a subscript. Checked against LL on 2,000
# answers (MATH-500, bench/data/math_equivalence.jsonl, generated): identical trees.
_BASE_BEFORE_POWER = re.compile(
    r"((?<![\\A-Za-z{}_^])[A-DF-Za-df-z]|\\(?:pi|alpha|beta|gamma|delta|theta|phi|varphi|omega|lambda|mu|sigma|tau|rho)(?![A-Za-z]))"
    r"(?=\^(?:\{[^{}]*\}|[^{])(?!_))"
)


@functools.lru_cache(maxsize=1)
def _parsers() -> tuple[type, type]:
    """latex2sympy's converter with exact number literals, in ANTLR's LL mode and in its faster SLL mode."""
    import sympy
    from antlr4.atn.PredictionMode import PredictionMode
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    class Exact(_Latex2Sympy):
        def parse_number(self, text: str) -> Any:
            # sympy.Number(str) runs sympy's parser, which executes "from sympy import *" on every call
            # (a third of the parse time); decimal literals become exact rationals here anyway
            digits = text.replace(",", "")
            try:
                return sympy.Integer(digits) if digits.isdigit() else sympy.Rational(digits)
            except (TypeError, ValueError):
                return super().parse_number(text)

    class FastExact(Exact):
        def create_parser(self, latex_str: str) -> Any:
            parser = super().create_parser(latex_str)
            parser._interp.predictionMode = PredictionMode.SLL
            return parser

    return Exact, FastExact


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_latex(text: str) -> tuple[bool, Any]:
    """``(True, sympy object)``, or ``(False, why)`` when ``text`` does not parse. Cached (references repeat)."""
    from latex2sympy2_extended.latex2sympy2 import normalize_latex
    from math_verify.grader import should_treat_as_complex

    exact, fast = _parsers()
    percent = text.rstrip().endswith("%")
    body = text.rstrip()[:-1] if percent else text
    try:
        norm = normalize_latex(body, _normalization_config())
        if not norm.strip():
            return False, "empty after normalisation"
        is_real = not should_treat_as_complex(norm)
        config = _conversion_config()
        try:
            expr = fast(is_real=is_real, config=config).parse(_BASE_BEFORE_POWER.sub(r"{\1}", norm))
        except Exception:
            expr = exact(is_real=is_real, config=config).parse(norm)
        expr = _rationalize(expr)
    except Exception as exc:  # the parser raises bare Exceptions with a caret diagram
        return False, str(exc).split("\n", 1)[0][:200] or type(exc).__name__
    return True, (expr, percent)


def well_formed(text: str) -> bool:
    """Balanced braces and no dangling operator: LaTeX that is whole, even where sympy cannot read it."""
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0 and not re.search(r"[\\^_{+\-*/=]\s*$", text)


def _rationalize(expr: Any) -> Any:
    """Decimal literals as exact rationals (``0.1`` is 1/10, not the nearest binary float)."""
    import sympy

    if isinstance(expr, sympy.MatrixBase):
        return expr.applyfunc(_rationalize)
    if not isinstance(expr, sympy.Basic):
        return expr
    floats = expr.atoms(sympy.Float)
    return expr.xreplace({f: sympy.Rational(str(f)) for f in floats}) if floats else expr


def _number_expr(number: NumberValue) -> Any:
    import sympy

    return sympy.Rational(number.value.numerator, number.value.denominator)


def symbolic_verdict(
    ref_text: str,
    pred_text: str,
    ref_number: NumberValue | None = None,
    pred_number: NumberValue | None = None,
    approx_digits: int = DEFAULT_APPROX_DIGITS,
) -> tuple[bool | None, str]:
    """``(correct, reason)``; ``correct is None`` when the *reference* does not parse (cannot be scored).

    A side already read as a plain number by :func:`r1gym.plugins.math.normalize.classify` is passed as
    ``*_number`` and not parsed again.
    """
    if ref_number is not None:
        g, g_pct = _number_expr(ref_number), ref_number.percent
    else:
        ok, parsed = parse_latex(ref_text)
        if not ok:
            if well_formed(ref_text) and re.sub(r"\s+", "", ref_text) == re.sub(r"\s+", "", pred_text):
                return True, "identical"  # sympy cannot read it (12:00), but it is the same answer
            return None, f"reference answer does not parse: {parsed}"
        g, g_pct = parsed
        if _undefined(g):
            if well_formed(ref_text) and re.sub(r"\s+", "", ref_text) == re.sub(r"\s+", "", pred_text):
                return True, "identical"  # 12:00 reads as 12/0, but the answer is the same string
            ref_time, pred_time = _clock_time(ref_text), _clock_time(pred_text)
            if ref_time is not None and pred_time is not None:  # 12:00 is no ratio (12/0) but a time of day
                return ref_time == pred_time, "clock time"
            return None, f"reference answer is undefined: {ref_text!r}"
    if pred_number is not None:
        p, p_pct = _number_expr(pred_number), pred_number.percent
    else:
        ok, parsed = parse_latex(pred_text)
        if not ok:
            return False, f"prediction does not parse: {parsed}"
        p, p_pct = parsed
    seed = int.from_bytes(hashlib.blake2b(f"{ref_text}\0{pred_text}".encode(), digest_size=4).digest(), "big")
    ctx = _Ctx(approx_digits, seed)
    if not (g_pct or p_pct):  # a decimal literal on one side only: it may approximate the other side
        if pred_number is not None and ref_number is None and pred_number.places is not None:
            verdict = _approximates(g, pred_number, ctx)
        elif ref_number is not None and pred_number is None and ref_number.places is not None:
            verdict = _approximates(p, ref_number, ctx)
        else:
            verdict = None
        if verdict is not None:
            return verdict, "decimal approximation"
    import sympy

    pairs = [(g, p)]
    if (g_pct or p_pct) and isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr):  # 50% ~ 50 and 50% ~ 1/2
        pairs.append((g / 100 if g_pct else g, p / 100 if p_pct else p))
    if any(equal(a, b, ctx) for a, b in pairs):
        return True, "equivalent"
    return False, "not equivalent"


_CLOCK = re.compile(r"^\s*(\d{1,2})\s*:\s*([0-5]\d)\s*$")


def _clock_time(text: str) -> tuple[int, int] | None:
    """``(hours, minutes)`` of a time of day written ``H:MM`` (``12:00``, ``1:00``, ``09:30``), else ``None``."""
    m = _CLOCK.match(text)
    return (int(m.group(1)), int(m.group(2))) if m and int(m.group(1)) <= 24 else None


def _approximates(exact: Any, approx: NumberValue, ctx: _Ctx) -> bool | None:
    """For a decimal against a constant: equal, close enough, or ``None`` (not a constant: compare normally)."""
    import sympy

    if not isinstance(exact, sympy.Expr) or exact.free_symbols:
        return None
    value = _doit(exact)
    if value.is_Rational:
        if value == _number_expr(approx):
            return True
        if _decimal_exact(value):
            return False
        return _close_enough(sympy.N(value, DIGITS), approx, ctx)
    v = sympy.N(value, DIGITS)
    if not v.is_number or not v.is_real or not v.is_finite:
        return None
    return _close_enough(v, approx, ctx)


def _close_enough(v: Any, approx: NumberValue, ctx: _Ctx) -> bool:
    import sympy

    if approx.sig < ctx.approx_digits:
        return False
    tol = sympy.Rational(Fraction(10) ** (-approx.places))  # type: ignore[operator]
    return bool(abs(v - _number_expr(approx)) < tol)


def _decimal_exact(q: Any) -> bool:
    d = int(q.q)
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _undefined(x: Any) -> bool:
    import sympy

    return isinstance(x, sympy.Basic) and x.has(sympy.zoo, sympy.nan)


def _doit(x: Any) -> Any:
    try:
        return x.doit()
    except Exception:
        return x


# -- structure --------------------------------------------------------------------------------------------
def _is_rel(x: Any) -> bool:
    from sympy import And
    from sympy.core.relational import Relational

    return isinstance(x, Relational) or (isinstance(x, And) and all(isinstance(a, Relational) for a in x.args))


def _chain(x: Any) -> list[Any]:
    from sympy import And

    if isinstance(x, And):
        return [r for a in getattr(x, "_unsorted_args", x.args) for r in _chain(a)]
    return [x]


def _is_assignment(x: Any) -> bool:
    """``x = 5``, and names for a value: ``f(x) = 1``, ``|AB| = 1``, ``NO/BO = 1/\\sqrt{6}``, ``(p, q) = (3, 2)``
    (a left side made of symbols only, with no sum and no number: ``x + y = 5`` is an equation, not a name)."""
    from sympy import Eq

    chain = _chain(x) if _is_rel(x) else []
    return bool(chain) and all(isinstance(r, Eq) for r in chain) and _names_a_value(chain[0].lhs)


def _is_computation(x: Any) -> bool:
    """A chain of equalities between constants, ``2 + 3 = 5``: a worked computation whose value is its last side
    (no side holds a variable, so it is no equation to solve)."""
    import sympy
    from sympy import Eq

    chain = _chain(x) if _is_rel(x) else []
    return bool(chain) and all(
        isinstance(r, Eq) and all(isinstance(side, sympy.Expr) and not side.free_symbols for side in (r.lhs, r.rhs))
        for r in chain
    )


def _names_a_value(lhs: Any) -> bool:
    import sympy

    if isinstance(lhs, sympy.Tuple):
        return len(lhs) > 0 and all(isinstance(a, sympy.Symbol) for a in lhs)
    if not isinstance(lhs, sympy.Expr) or not lhs.free_symbols or lhs.has(sympy.Add):
        return False
    return not (lhs.atoms(sympy.Number) - {sympy.Integer(1), sympy.Integer(-1)})


def equal(g: Any, p: Any, ctx: _Ctx) -> bool:
    """Whether the parsed reference ``g`` and prediction ``p`` are the same answer (see module docstring)."""
    import sympy
    from sympy import MatrixBase, Set, Tuple

    g, p = _evaluated_matrix(g), _evaluated_matrix(p)
    if (_is_assignment(g) or _is_computation(g)) and not _is_rel(p):
        g = _chain(g)[-1].rhs
    if (_is_assignment(p) or _is_computation(p)) and not _is_rel(g):
        p = _chain(p)[-1].rhs
    if _is_rel(g) or _is_rel(p):
        return _relations_equal(g, p, ctx)
    if isinstance(g, MatrixBase) or isinstance(p, MatrixBase):
        return _matrices_equal(g, p, ctx)
    if isinstance(g, (Set, Tuple)) or isinstance(p, (Set, Tuple)):
        return _collections_equal(g, p, ctx)
    if isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr):
        return _scalars_equal(g, p, ctx)
    try:
        return bool(g == p)
    except Exception:
        return False


def _evaluated_matrix(x: Any) -> Any:
    """A sum or product of explicit matrices, computed (``A + B`` written out is the matrix it equals)."""
    from sympy import MatrixBase
    from sympy.matrices.expressions import MatrixExpr

    if isinstance(x, MatrixExpr) and not isinstance(x, MatrixBase) and not x.free_symbols:
        try:
            return x.doit().as_explicit()
        except Exception:
            return x
    return x


def _elements(x: Any) -> list[Any]:
    return list(getattr(x, "_unsorted_args", None) or x.args)


def _ordered_equal(a: list[Any], b: list[Any], ctx: _Ctx) -> bool:
    return len(a) == len(b) and all(equal(x, y, ctx) for x, y in zip(a, b))


def _unordered_equal(a: list[Any], b: list[Any], ctx: _Ctx) -> bool:
    if len(a) != len(b):
        return False
    used = [False] * len(b)
    for x in a:
        for j, y in enumerate(b):
            if not used[j] and equal(x, y, ctx):
                used[j] = True
                break
        else:
            return False
    return True


def _collections_equal(g: Any, p: Any, ctx: _Ctx) -> bool:
    from sympy import FiniteSet, Interval, Tuple, Union

    def as_pair(x: Any) -> list[Any] | None:  # "(1, 2)" is parsed as an open interval; it may be a point
        return [x.start, x.end] if isinstance(x, Interval) and x.left_open and x.right_open else None

    if isinstance(g, Interval) and isinstance(p, Interval):
        return (g.left_open, g.right_open) == (p.left_open, p.right_open) and _ordered_equal([g.start, g.end], [p.start, p.end], ctx)
    if isinstance(g, Union) and isinstance(p, Union):
        return _unordered_equal(list(g.args), list(p.args), ctx)
    if isinstance(g, (FiniteSet, Tuple)) and isinstance(p, (FiniteSet, Tuple)):
        if isinstance(g, FiniteSet) and isinstance(p, FiniteSet):  # a set: a repeated element counts once
            return _unordered_equal(list(dict.fromkeys(_elements(g))), list(dict.fromkeys(_elements(p))), ctx)
        if isinstance(g, FiniteSet) and isinstance(p, Tuple):
            return _unordered_equal(_elements(g), _elements(p), ctx)
        return _ordered_equal(_elements(g), _elements(p), ctx)
    if as_pair(g) is not None and isinstance(p, (FiniteSet, Tuple)):
        return _ordered_equal(as_pair(g), _elements(p), ctx)  # type: ignore[arg-type]
    if as_pair(p) is not None and isinstance(g, (FiniteSet, Tuple)):
        return _ordered_equal(_elements(g), as_pair(p), ctx)  # type: ignore[arg-type]
    # a single answer against a one-element set: 5 ~ {5}, also when the set names that one value twice
    # (\boxed{15\frac{39}{40}} or \boxed{\frac{639}{40}}: two forms of one answer, not two answers)
    for one, other in ((g, p), (p, g)):
        if isinstance(one, (FiniteSet, Tuple)) and not isinstance(other, (FiniteSet, Tuple)):
            items = _elements(one)
            if len(items) == 1 or (isinstance(one, FiniteSet) and items):
                pair = (lambda x: (x, other)) if one is g else (lambda x: (other, x))
                return all(equal(*pair(x), ctx) for x in items)
    from sympy import Set

    if isinstance(g, Set) and isinstance(p, Set):
        try:
            return g == p or bool(g.symmetric_difference(p).is_empty)
        except Exception:
            return False
    return False


def _matrices_equal(g: Any, p: Any, ctx: _Ctx) -> bool:
    from sympy import FiniteSet, Interval, MatrixBase, Tuple

    def entries(x: Any) -> list[Any] | None:
        if isinstance(x, MatrixBase):
            return list(x) if 1 in x.shape else None
        if isinstance(x, Interval) and x.left_open and x.right_open:  # "(1, 2)" read as an interval
            return [x.start, x.end]
        return _elements(x) if isinstance(x, (Tuple, FiniteSet)) else None

    if isinstance(g, MatrixBase) and isinstance(p, MatrixBase):
        return g.shape == p.shape and _ordered_equal(list(g), list(p), ctx)
    eg, ep = entries(g), entries(p)  # a vector written as a tuple
    return eg is not None and ep is not None and _ordered_equal(eg, ep, ctx)


# -- relations ----------------------------------------------------------------------------------------------
def _relations_equal(g: Any, p: Any, ctx: _Ctx) -> bool:
    from sympy import Set

    if _is_rel(g) and _is_rel(p):
        gc, pc = _chain(g), _chain(p)
        if len(gc) == len(pc) and all(_relation_equal(a, b, ctx) for a, b in zip(gc, pc)):
            return True
        return _solution_sets_equal(g, p)
    rel, other = (g, p) if _is_rel(g) else (p, g)
    if isinstance(other, Set):  # x > 3 ~ (3, oo)
        s = _as_set(rel)
        return s is not None and (s == other or bool(s.symmetric_difference(other).is_empty))
    return False


def _as_set(rel: Any) -> Any:
    """The solution set of a one-variable inequality (chain), or the set in ``x \\in S`` (read as ``Eq(x, S)``)."""
    from sympy import Eq, Set, Symbol

    if isinstance(rel, Eq) and isinstance(rel.lhs, Symbol) and isinstance(rel.rhs, Set):
        return rel.rhs
    if any(type(r).__name__ in ("Equality", "Unequality") for r in _chain(rel)):
        return None
    named = _range_of_named(rel)
    if named is not None:
        return named
    if len(rel.free_symbols) != 1:
        return None
    try:
        return rel.as_set()
    except Exception:
        return None


def _range_of_named(rel: Any) -> Any:
    """``0 < f(x) < 1`` is the interval ``(0, 1)`` of the value ``f(x)``: an inequality chain whose only
    non-constant term is one function application of an unknown function (no sum, so ``0 < x + y < 1`` is not)."""
    from sympy import Dummy
    from sympy.core.function import AppliedUndef

    terms = {side for r in _chain(rel) for side in (r.lhs, r.rhs) if getattr(side, "free_symbols", None)}
    if len(terms) != 1:
        return None
    (term,) = terms
    if not isinstance(term, AppliedUndef):
        return None
    t = Dummy("t", real=True)
    try:
        return rel.xreplace({term: t}).as_set()
    except Exception:
        return None


def _solution_sets_equal(g: Any, p: Any) -> bool:
    """Single-variable inequalities in the same variable with the same solution set (``x^2 > 4`` ~ ``|x| > 2``)."""
    if g.free_symbols != p.free_symbols:
        return False
    a, b = _as_set(g), _as_set(p)
    if a is None or b is None:
        return False
    try:
        return a == b or bool(a.symmetric_difference(b).is_empty)
    except Exception:
        return False


def _relation_equal(a: Any, b: Any, ctx: _Ctx) -> bool:
    import sympy
    from sympy import Eq, Ge, Gt, Le, Lt, Ne, Symbol

    if isinstance(a, Eq) and isinstance(b, Eq):
        b = _renamed_definition(a, b)
        if isinstance(a.lhs, Symbol) and a.lhs == b.lhs and equal(a.rhs, b.rhs, ctx):
            return True
        if not all(isinstance(x, sympy.Expr) for x in (a.lhs, a.rhs, b.lhs, b.rhs)):  # x \in [1, 2]: sets
            return False
        return _proportional(a.lhs - a.rhs, b.lhs - b.rhs, ctx, positive=False)
    if isinstance(a, Ne) and isinstance(b, Ne):
        return _proportional(a.lhs - a.rhs, b.lhs - b.rhs, ctx, positive=False)

    def positive_form(r: Any) -> tuple[Any, bool] | None:  # r as "expr > 0" (strict) or "expr >= 0"
        if isinstance(r, Gt):
            return r.lhs - r.rhs, True
        if isinstance(r, Lt):
            return r.rhs - r.lhs, True
        if isinstance(r, Ge):
            return r.lhs - r.rhs, False
        if isinstance(r, Le):
            return r.rhs - r.lhs, False
        return None

    fa, fb = positive_form(a), positive_form(b)
    if fa is None or fb is None or fa[1] != fb[1]:
        return False
    return _proportional(fa[0], fb[0], ctx, positive=True)


def _renamed_definition(a: Any, b: Any) -> Any:
    """``b`` with its bound variables named as in ``a`` when both define the same function: ``f(n) = n^2`` is
    ``f(x) = x^2``, and ``W(x) = 1`` is ``W(n) = 1`` (the argument of a definition is a dummy). Only for a left
    side that is one unknown function applied to distinct bare symbols, the same function with as many
    arguments on both sides, and a renaming that captures nothing (``f(x) = x + n`` is not renamed to ``n``);
    ``f(2) = 3`` names a value, not a definition, and is left as it is."""
    from sympy import Symbol
    from sympy.core.function import AppliedUndef

    ga, gb = a.lhs, b.lhs
    if not (isinstance(ga, AppliedUndef) and isinstance(gb, AppliedUndef) and ga.func == gb.func and len(ga.args) == len(gb.args)):
        return b
    if not all(isinstance(v, Symbol) for v in ga.args + gb.args) or len(set(ga.args)) != len(ga.args) or len(set(gb.args)) != len(gb.args):
        return b
    mapping = {old: new for old, new in zip(gb.args, ga.args) if old != new}
    if not mapping or (b.rhs.free_symbols - set(gb.args)) & set(mapping.values()):
        return b
    return b.xreplace(mapping)  # simultaneous: f(x, y) = x - y renamed to f(y, x) = y - x stays right


def _proportional(d1: Any, d2: Any, ctx: _Ctx, *, positive: bool) -> bool:
    """Whether ``d1 = c * d2`` for a constant ``c != 0`` (``c > 0`` when ``positive``)."""
    import sympy

    if d1 == 0 or d2 == 0:
        return bool(d1 == 0 and d2 == 0)
    ratio = sympy.cancel(sympy.together(d1 / d2))
    if not ratio.free_symbols:
        c = sympy.N(ratio, DIGITS)
        return bool(c.is_number and c.is_finite and c != 0 and (not positive or (c.is_real and c > 0)))
    values = [v for (v,) in _sample((ratio,), ratio.free_symbols, ctx)]
    if len(values) < 3:
        return False
    c = values[0]
    if c == 0 or (positive and not (c.is_real and c > 0)):
        return False
    return all(_close(v, c) for v in values[1:])


# -- scalars --------------------------------------------------------------------------------------------------
def _close(a: Any, b: Any) -> bool:
    import sympy

    diff = abs(a - b)
    scale = max(abs(a), abs(b))
    return bool(diff == 0 or diff <= scale * sympy.Rational(1, 10**REL_TOL_EXP))


def _scalars_equal(g: Any, p: Any, ctx: _Ctx) -> bool:
    import sympy

    if g == p:
        return True
    syms = g.free_symbols | p.free_symbols
    if not syms:
        return _constants_equal(g, p)
    d = g - p
    try:
        if d.is_polynomial(*syms) and sympy.Poly(d, *syms).total_degree() <= 64:
            return sympy.expand(d) == 0
    except Exception:
        pass
    points = _sample((g, p), syms, ctx)
    if len(points) >= 3:
        return all(_close(a, b) for a, b in points)
    try:
        return bool(sympy.simplify(d) == 0)
    except Exception:
        return False


def _constants_equal(g: Any, p: Any) -> bool:
    import sympy

    gd, pd = _doit(g), _doit(p)
    if gd.is_Rational and pd.is_Rational:
        return bool(gd == pd)
    gv, pv = sympy.N(gd, DIGITS), sympy.N(pd, DIGITS)
    if not (gv.is_number and pv.is_number) or gv.has(sympy.zoo, sympy.nan) or pv.has(sympy.zoo, sympy.nan):
        try:
            return bool(sympy.simplify(gd - pd) == 0)
        except Exception:
            return False
    if not (gv.is_finite and pv.is_finite):
        return bool(gv == pv)
    return _close(gv, pv)


def _sample(exprs: tuple[Any, ...], syms: Any, ctx: _Ctx) -> list[tuple[Any, ...]]:
    """Values of ``exprs`` at seeded random rational points; points where one is undefined are skipped."""
    import sympy

    rng, out = random.Random(ctx.seed), []
    syms = sorted(syms, key=str)
    for _ in range(SAMPLE_POINTS):
        point = {s: sympy.Rational(rng.randint(-400, 400), rng.randint(37, 97)) for s in syms}
        try:
            values = tuple(sympy.N(e.xreplace(point), DIGITS) for e in exprs)
        except Exception:
            continue
        if all(v.is_number and v.is_finite and not v.has(sympy.zoo, sympy.nan) for v in values):
            out.append(values)
    return out

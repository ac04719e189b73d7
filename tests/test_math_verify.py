"""Answer equivalence (r1gym.plugins.math.normalize + verify through the checker): every kind of answer the
issue lists, in both directions, the known false positives of other checkers, and unusable references."""

from __future__ import annotations

import pytest

from r1gym.plugins.math.normalize import classify, parse_number
from r1gym.plugins.math.pool import MathChecker

# (kind, a, b, equivalent): checked as check(a, b) and check(b, a)
PAIRS = [
    ("integer", "42", "42.0", True),
    ("integer", "42", "042", True),
    ("integer", "42", "43", False),
    ("decimal", "0.5", "0.50", True),
    ("decimal", ".5", "0.5", True),
    ("decimal", "0.5", "0.05", False),
    ("fraction", r"\frac{1}{2}", "1/2", True),
    ("fraction", r"\dfrac{3}{4}", "0.75", True),
    ("fraction", r"\tfrac{2}{4}", r"\frac12", True),
    ("fraction", "-1/2", r"\frac{-1}{2}", True),
    ("fraction", r"\frac{2}{3}", r"\frac{3}{2}", False),
    ("mixed", r"2\frac{1}{2}", "5/2", True),
    ("mixed", "3 1/4", "3.25", True),
    ("mixed", r"2\frac{1}{2}", "1", False),
    ("percent", r"25\%", "25", True),
    ("percent", r"25\%", "0.25", True),
    ("percent", "25 percent", "25%", True),
    ("percent", "25%", "2.5%", False),
    ("scientific", "1.5e3", "1500", True),
    ("scientific", r"1.5\times10^{3}", "1500", True),
    ("scientific", r"3 \times 10^{5}", "300,000", True),
    ("scientific", "2e-3", "0.002", True),
    ("scientific", "1.5e3", "150", False),
    ("thousands", "1,234,567", "1234567", True),
    ("thousands", r"1{,}000", "1000", True),
    ("thousands", r"1\,000", "1000", True),
    ("thousands", r"11,\! 111,\! 100", "11111100", True),
    ("thousands", "1,234", "1.234", False),
    ("sign", "+3", "3", True),
    ("sign", "\u22123", "-3", True),
    ("sign", "-3", "3", False),
    ("expression", r"\frac{\sqrt{3}}{2}", r"\frac{3}{2\sqrt{3}}", True),
    ("expression", r"2\sqrt{2}", r"\sqrt{8}", True),
    ("expression", "x^2+2x+1", "(x+1)^2", True),
    ("expression", r"\sin^2 x + \cos^2 x", "1", True),
    ("expression", r"\frac{\pi}{10}", r"0.1\pi", True),
    ("expression", "5!", "120", True),
    ("expression", r"\sqrt{8}", "3", False),
    ("expression", "(x+1)^2", "x^2+1", False),
    ("expression", "2x+1", "2y+1", False),
    ("interval", "[1, 3)", "[1,3)", True),
    ("interval", r"(-\infty,1)\cup(2,\infty)", r"(2,\infty)\cup(-\infty,1)", True),
    ("interval", "[1,3)", "(1,3]", False),
    ("interval", "(1,3)", "[1,3]", False),
    ("set", r"\{1,2,3\}", r"\{3,2,1\}", True),
    ("set", "1, 2", "2, 1", True),
    ("set", r"\{1,2\}", r"\{1,2,3\}", False),
    ("tuple", "(3, -1, 2)", "(3,-1,2)", True),
    ("tuple", "(1,2)", "(2,1)", False),
    ("tuple", "(3,-1,2)", "(3,2,-1)", False),
    ("matrix", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", True),
    ("matrix", r"\begin{pmatrix}1\\2\end{pmatrix}", "(1,2)", True),
    ("matrix", r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
    ("matrix", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\begin{pmatrix}1&3\\2&4\end{pmatrix}", False),
    ("assignment", "x = 5", "5", True),
    ("assignment", "x = 2 + 3 = 5", "5", True),
    ("assignment", "x=5", "y=5", False),
    ("assignment", "2x = 5", "5", False),
    ("equation", "x+y=0", "2x+2y=0", True),
    ("equation", "y=2x+1", "2x-y+1=0", True),
    ("equation", "x+y=0", "x-y=0", False),
    ("inequality", "x>3", "3<x", True),
    ("inequality", "x>3", r"(3,\infty)", True),
    ("inequality", r"x \ge 3", "x>3", False),
    ("unit", r"30^\circ", "30", True),
    ("unit", r"5\text{ cm}", "5", True),
    ("unit", "12 apples", "12", True),
    ("unit", r"\$4.50", "4.5", True),
    ("unit", "12 apples", "13", False),
    ("base", "204_5", "204_{5}", True),
    ("base", "1A_{16}", "1a_{16}", True),
    ("base", "204_5", "204_6", False),
    ("base", "204_5", "54", False),  # the value in base 10 restates the question
    ("set", r"x \in [-2,7]", "[-2,7]", True),
    ("set", r"x \in [-2,7]", r"x \in [-2,8]", False),
    ("text", r"\text{even}", "Even", True),
    ("text", r"\text{No solution}", "no  solution", True),
    ("text", "even", "odd", False),
    ("choice", "(B)", "B", True),
    ("choice", r"\text{(C)}", "C", True),
    ("choice", "A", "(A) 42", True),
    ("choice", "B", "C", False),
    ("approximation", r"\sqrt{2}", "1.414214", True),
    ("approximation", "1/3", "0.333333", True),
    ("approximation", r"\pi", "3.14159265", True),
    ("approximation", r"\sqrt{2}", "1.41", False),
    ("approximation", "1/3", "0.33", False),
    ("approximation", r"\pi", "3.14", False),
]

# false positives of existing checkers (plain math-verify on bare answers, or its numeric/equation rules)
KNOWN_FALSE_POSITIVES = [
    ("1-1/e", "1+1/e"),
    (r"1-\frac{1}{e}", r"1+\frac{1}{e}"),
    (r"\pm 2", "2"),
    ("x^2+1=0", "x^2+2=0"),  # two different equations "... = 0", both without a real solution
    ("x^2+y^2+1=0", "x^2+y^2+5=0"),
    (r"\frac{1}{2004!}", r"\frac{1}{2006!}"),  # very small different numbers
    ("10^{-20}", r"2\cdot 10^{-20}"),
    ("2t", "2"),  # math-verify strips "t" as a unit
]


@pytest.fixture(scope="module")
def checker():
    with MathChecker(workers=2, timeout=10.0) as c:
        c.pool.wait_ready()
        yield c


@pytest.mark.parametrize(("kind", "a", "b", "same"), PAIRS, ids=[f"{p[0]}-{i}" for i, p in enumerate(PAIRS)])
def test_equivalence_both_directions(checker, kind, a, b, same):
    forward, backward = checker.check(a, b), checker.check(b, a)
    assert (forward.correct, backward.correct) == (same, same), (forward, backward)


def test_every_kind_has_a_positive_and_a_negative_pair():
    kinds = {p[0] for p in PAIRS}
    for kind in kinds:
        assert {p[3] for p in PAIRS if p[0] == kind} == {True, False}, kind


@pytest.mark.parametrize(("a", "b"), KNOWN_FALSE_POSITIVES)
def test_known_false_positives_are_false(checker, a, b):
    assert checker.check(a, b).correct is False
    assert checker.check(b, a).correct is False


@pytest.mark.parametrize("reference", [r"\frac{1}{", r"\sqrt{", "x^{", "1/0", "   ", None])
def test_unusable_reference_cannot_be_scored(checker, reference):
    for prediction in ("1", r"\frac{1}{", "x"):
        verdict = checker.check(reference, prediction)
        assert verdict.correct is None and not verdict.scorable
        assert any(w in verdict.reason for w in ("does not parse", "empty", "undefined")), verdict.reason


def test_unparseable_prediction_is_incorrect_not_unscorable(checker):
    verdict = checker.check(r"\frac{1}{2}", r"\frac{1}{")
    assert verdict.correct is False and "prediction does not parse" in verdict.reason


def test_grade_extracts_then_checks(checker):
    assert checker.grade(r"<think> half </think> <answer> $\frac{1}{2}$ </answer>", "0.5").correct is True
    assert checker.grade("I give up", "0.5") == checker.grade("I give up", "0.5")
    assert checker.grade("I give up", "0.5").reason == "no answer found"
    # no answer against a broken reference: the pair cannot be scored (the reference is at fault)
    assert checker.grade("I give up", r"\frac{1}{").correct is None


def test_decimal_approximation_threshold_is_a_parameter(checker):
    assert checker.check("1/3", "0.333", approx_digits=3).correct is True
    assert checker.check("1/3", "0.333").correct is False


def test_nothing_heavy_in_the_calling_process():
    """sympy and math-verify load in the worker processes only: the plugin host, the fast path and even a
    LaTeX check leave the caller without them (a training process stays lean)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from r1gym.core.plugins import load_plugins\n"
        "host = load_plugins(autoload=False)\n"
        "fn = host.rewards.get('math_accuracy')\n"
        "assert fn('<answer> 1/2 </answer>', answer='0.5') == 1.0\n"
        "assert fn('<answer> \\\\sqrt{8} </answer>', answer='2\\\\sqrt{2}') == 1.0\n"
        "heavy = [m for m in ('sympy', 'math_verify', 'latex2sympy2_extended', 'antlr4') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_classification():
    assert classify("x = 2.50").kind == "number" and classify("x = 2.50").var == "x"
    assert classify(r"\text{(C)}").kind == "choice" and classify(r"\text{Odd}").kind == "text"
    assert classify(r"\frac{\sqrt{3}}{2}").kind == "latex" and classify("  ").kind == "empty"
    assert parse_number("1" * 500) is None  # too long for the fast path: sympy's job (with a time limit)


def test_fast_parser_gives_the_full_parsers_trees():
    """parse_latex tries ANTLR's SLL mode on a rewritten string ({x}^2) first: it must build the same trees as
    the plain LL parse of the original, and actually take the fast route for polynomials."""
    from latex2sympy2_extended.latex2sympy2 import normalize_latex

    from r1gym.plugins.math.verify import _BASE_BEFORE_POWER, _normalization_config, _parsers

    exact, fast = _parsers()
    texts = [t for _, a, b, _ in PAIRS for t in (a, b) if classify(t).kind == "latex"]
    texts += ["x^2+3x-10", "ax^2+bx+c", "x^{2}y^3", "x^2_1", "e^{x^2}", r"\sin^2 x", "(x+1)^3-x^3", "y^2=4x"]
    fast_ok = 0
    for text in texts:
        norm = normalize_latex(text, _normalization_config())
        try:
            slow_tree = str(exact(is_real=True).parse(norm))
        except Exception:
            continue
        try:
            fast_tree = str(fast(is_real=True).parse(_BASE_BEFORE_POWER.sub(r"{\1}", norm)))
        except Exception:
            continue  # SLL may give up; parse_latex then falls back to LL on the original text
        fast_ok += 1
        assert fast_tree == slow_tree, text
    assert fast_ok >= 0.8 * len(texts)

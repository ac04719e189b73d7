"""Finding the final answer in a completion (r1gym.plugins.math.extract), one group of cases per format."""

from __future__ import annotations

import doctest
import importlib
import time

import pytest

from r1gym.plugins.math.extract import MAX_SCAN_CHARS, METHODS, extract_answer, extract_reference, find_boxed, last_boxed

CASES = [
    # (completion, expected text, expected method)
    ("<think> 6*7 </think> <answer> 42 </answer>", "42", "answer_tag"),
    ("<answer>The answer is \\boxed{7}</answer>", "7", "answer_tag"),
    ("<answer> 3 </answer> wait, no: <answer> 4 </answer>", "4", "answer_tag"),
    ("<answer>So the final answer is $\\frac{3}{4}$.</answer>", "\\frac{3}{4}", "answer_tag"),
    ("so $x = \\boxed{\\frac{1}{\\sqrt{2}}}$", "\\frac{1}{\\sqrt{2}}", "boxed"),
    ("the area is \\fbox{12}", "12", "boxed"),
    ("the roots are \\boxed{2} and \\boxed{3}.", "2, 3", "boxed"),
    ("first try \\boxed{1}. That was wrong, so after redoing the whole computation we get \\boxed{4}", "4", "boxed"),
    ("hence \\boxed 5.", "5", "boxed"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed"),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72", "gsm8k"),
    ("so the total is\n#### 1,234", "1,234", "gsm8k"),
    ("Therefore, the answer is 12.", "12", "answer_is"),
    ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}", "answer_is"),
    ("**Answer:** 7", "7", "answer_is"),
    ("The answers are 2 and 5.", "2 and 5", "answer_is"),
    ("The result: **x = 3**, checked with 4 cases", "x = 3", "bold"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}", "bare"),  # a completion that is only its answer
    ("<think> the two roots </think> $(1, 2)$", "$(1, 2)$", "bare"),
    ("Thus the value is $\\frac{1}{2}$", "\\frac{1}{2}", "math_span"),
    ("The sum is \\[ x^2 + 1 \\]", "x^2 + 1", "math_span"),
    ("I paid $2 and $3, so 5", "5", "last_number"),  # currency, not a math span
    ("I think it's about 3.5, or maybe -7", "-7", "last_number"),
    ("The total is 1,234 marbles", "1,234", "last_number"),
    ("<think> maybe \\boxed{4} </think> The result is \\boxed{5}", "5", "boxed"),
    ("<think> 99 bottles </think> so 12", "12", "last_number"),
]


@pytest.mark.parametrize(("completion", "text", "method"), CASES, ids=[c[2] + "-" + str(i) for i, c in enumerate(CASES)])
def test_extraction(completion, text, method):
    found = extract_answer(completion)
    assert found is not None and (found.text, found.method) == (text, method)


def test_every_method_has_a_case():
    assert {c[2] for c in CASES} == set(METHODS)


@pytest.mark.parametrize("completion", ["", "no numbers here", "<answer>  </answer>", "<think> 5 </think>"])
def test_nothing_to_extract(completion):
    found = extract_answer(completion)
    # "<think> 5 </think>" has no text after </think>, so the whole text is searched: its last number is found
    assert found is None if completion != "<think> 5 </think>" else found.text == "5"


def test_methods_restrict_the_search():
    text = "the answer is 3. Or maybe \\boxed{4}"
    assert extract_answer(text).text == "4"
    assert extract_answer(text, methods=["answer_is"]).text == "3"
    assert extract_answer(text, methods=["answer_tag"]) is None
    with pytest.raises(ValueError, match="unknown extraction method"):
        extract_answer(text, methods=["boxd"])


def test_boxes_with_nested_and_escaped_braces():
    boxes = find_boxed(r"\boxed{\left\{ 1, \frac{2}{3} \right\}} and \boxed{a^{b^{c}}}")
    assert [c for _, _, c in boxes] == [r"\left\{ 1, \frac{2}{3} \right\}", "a^{b^{c}}"]
    assert last_boxed(r"\boxed{1") is None  # unbalanced: no box


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("\\frac{1}{2}", "\\frac{1}{2}"),  # plain: whole
        ("We get $5 + 7 = 12$.\n#### 12", "12"),  # GSM8K answer
        ("The slope is $\\frac{9}{3} = \\boxed{3}$.", "3"),  # MATH solution
        ("  x + 1  ", "x + 1"),  # plain LaTeX is never reduced to its last number
    ],
)
def test_reference_extraction(reference, answer):
    assert extract_reference(reference) == answer


@pytest.mark.parametrize("module", ["extract", "normalize", "pool", "rewards"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"r1gym.plugins.math.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- bounded work on whatever the policy wrote ------------------------------------------------------------------
# unit -> (the answer read from the completion, whether each unit closes one box, the box's content).
# Written from TeX's rules, not read off the module: "\boxed{" never closes; "\boxed-" and "\boxed 5" take one
# token as their argument (as \boxed x does in TeX); "<answer> 1 " never closes its tag, so the last number is read.
DEGENERATE = {
    "\\boxed{": (None, False, None),
    "\\boxed-": ("-", True, "-"),
    "<answer> 1 ": ("1", False, None),
    "{": (None, False, None),
    "\\boxed{1}, ": ("1", True, "1"),
    "\\boxed 5 and ": ("5", True, "5"),
}


@pytest.mark.parametrize("unit", DEGENERATE)
def test_degenerate_completions_are_scanned_in_linear_time(unit):
    """140 KB of a repeated prefix: quadratic scans never finished on these; here they return, with the answer
    a reader would give, in far less than a quadratic scan's minutes. (How fast exactly is measured in
    bench/math_load.py; the bound here only catches a scan gone quadratic.)"""
    answer, closes, content = DEGENERATE[unit]
    copies = 140_000 // len(unit)
    text = "We compute. " + unit * copies
    started = time.perf_counter()
    extracted, boxes, reference = extract_answer(text), find_boxed(text), extract_reference(text)
    assert time.perf_counter() - started < 10.0  # milliseconds when linear; minutes when quadratic
    assert (extracted.text if extracted else None) == answer
    assert len(boxes) == (copies if closes else 0) and all(c == content for _, _, c in boxes)
    assert reference == (content if closes else text.strip())  # no box: the whole reference is the answer


def test_only_the_tail_of_a_completion_is_searched():
    answer_first = "\\boxed{7} " + "x" * MAX_SCAN_CHARS
    assert extract_answer(answer_first, methods=["boxed"]) is None  # the box lies before the scanned tail
    assert extract_answer("x" * 10 * MAX_SCAN_CHARS + " so \\boxed{7}").text == "7"


def test_answer_tag_takes_the_last_closed_tag():
    assert extract_answer("<answer> 1 <answer> 2 </answer> <answer> 3").text == "2"
    assert extract_answer("<ANSWER> 5 </Answer>").text == "5"


def test_box_groups_never_overlap():
    # a bare box stops at the next command: repeated "\boxed-" never joins into one long answer
    assert last_boxed("\\boxed-\\boxed-\\boxed-") == "-"

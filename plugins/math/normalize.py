"""From an answer string to a typed answer, and the comparisons that need no computer algebra.

Both the reference and the prediction go through :func:`normalize` (math delimiters, markdown, spacing
commands, currency, degrees, ``\\text{}`` units and unit words after a number are removed; unicode math is
spelled in LaTeX) and :func:`classify`, which sorts an answer into one of:

* ``number``: an integer, decimal, repeating decimal (``0.1\\overline{6}``), fraction (``\\frac``,
  ``\\dfrac``, ``\\tfrac``, ``\\frac12``, ``a/b``), mixed number
  (``2\\frac{1}{2}``, ``2 1/2``), percentage, scientific notation, with thousands separators and signs, and
  an optional variable (``x = 5``). Compared exactly, as :class:`fractions.Fraction`, here: no sympy, no pool.
* ``based``: a number in another base (``204_5``): the same digits and base, or the digits alone;
* ``choice``: a multiple-choice letter (``B``, ``(B)``, ``\\text{(B)}``).
* ``text``: words (``\\text{odd}``, ``Monday``), compared case-, space- and punctuation-insensitively.
* ``latex``: everything else; :mod:`r1gym.plugins.math.verify` compares those with sympy, in the pool.

Rules for numbers (:func:`numbers_equal`):

* exact value, so ``0.5 == 1/2 == \\frac{2}{4} == 50\\%`` and ``2.50 == 2.5``;
* a percentage equals the same number written without ``%`` (``50\\% ~ 50``) and its value (``50\\% ~ 0.5``),
  but ``50\\%`` is not ``0.5\\%``;
* a decimal approximation of a value that no decimal writes exactly (``0.333333`` for ``1/3``) counts only
  with at least ``approx_digits`` significant digits (default 6), correctly rounded or truncated;
  ``0.33`` is not ``1/3``;
* ``x = 5`` equals ``5``; ``x = 5`` and ``y = 5`` differ;
* a lone comma before two digits, or four and more, or after a lone 0, is a decimal comma (``1,22`` is 1.22,
  ``0,111`` is 0.111: math-verify's reading); ``1,000`` is a thousand and ``1,2`` a list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

#: longest number literal handled here (Python caps int() at 4300 digits; longer ones go to sympy)
MAX_NUMBER_CHARS = 400
#: a decimal that only approximates the other side needs this many significant digits
DEFAULT_APPROX_DIGITS = 6

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ",
    "\u00f7": "\\div ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u221a": "\\sqrt", "\u2264": "\\le ",
    "\u2265": "\\ge ", "\u2260": "\\ne ", "\u00b1": "\\pm ", "\u00b0": "^\\circ", "\u00a0": " ",
    "\u2009": " ", "\u202f": " ", "\uff0c": ",",
}
_DELIMS = [(r"$$", r"$$"), (r"\[", r"\]"), (r"\(", r"\)"), ("$", "$")]
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)"
_WRAPPED_TEXT = re.compile(rf"^{_TEXT_CMD}\s*\{{(?P<inner>[^{{}}]*)\}}$")
_TEXT_UNIT = re.compile(rf"(?<=[\d}})\s])\s*{_TEXT_CMD}\s*\{{\s*[A-Za-z][A-Za-z .]*\}}\s*(?:\^\s*\{{?\s*[23]\s*\}}?)?$")
_SHORT_UNITS = {
    "cm", "mm", "km", "m", "kg", "g", "mg", "s", "ms", "h", "hr", "hrs", "ft", "in", "lb", "lbs", "oz", "mi",
    "yd", "l", "ml", "sq", "cu", "mph", "am", "pm", "min", "sec", "deg", "yr", "yrs", "cents", "usd",
}
_MATH_WORDS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lim", "max", "min", "gcd", "lcm", "det",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sqrt", "pi", "inf", "infty", "mod", "frac",
}
_PLAIN_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?"
_UNIT_TAIL = re.compile(rf"^(?P<num>{_PLAIN_NUMBER})\s+(?P<tail>[A-Za-z][A-Za-z .]*?)(?:\^\s*\{{?[23]\}}?)?$")
_NUM = re.compile(
    r"""^(?P<sign>[-+])?\s*(?P<mant>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)
    (?:\s*(?:[eE](?P<e1>[-+]?\d+)|(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*(?:\{\s*(?P<e2>[-+]?\d+)\s*\}|(?P<e3>\d))))?
    \s*(?P<pct>%)?$""",
    re.VERBOSE,
)
_FRAC = re.compile(
    r"""^(?P<sign>[-+])?\s*(?P<whole>\d+)?\s*\\[dtc]?frac\s*
    (?:\{\s*(?P<n>[-+]?\d+)\s*\}|(?P<n1>\d))\s*(?:\{\s*(?P<d>[-+]?\d+)\s*\}|(?P<d1>\d))\s*(?P<pct>%)?$""",
    re.VERBOSE,
)
_SLASH = re.compile(
    r"^(?P<sign>[-+])?\s*(?:(?P<whole>\d+)\s+)?\(?\s*(?P<n>[-+]?\d+)\s*\)?\s*/\s*\(?\s*(?P<d>[-+]?\d+)\s*\)?\s*(?P<pct>%)?$"
)
# the words that join the parts of an answer: "\text{ and }", "\text{or}", a bare "and" or "or", and an "or" glued
# between two equations with its spaces lost ("W(x)=1orW(x)=-1", math-verify's test_numina_cases)
_AND = re.compile(
    r"\s*,?\s*(?:\\text\s*\{\s*(?:and|or)\s*\}|(?<![A-Za-z\\])(?:and|or)(?![A-Za-z])|(?<=[0-9)\]}])or(?=[A-Z(\\]))\s*"
)
_DECIMAL_COMMA = re.compile(r"^[-+]?(?:0,\d+|\d+,(?:\d{2}|\d{4,}))%?$")  # not 1,2: a list
_SPACED_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_REPEATING = re.compile(r"^(?P<sign>[-+])?\s*(?P<int>\d*)\.(?P<dec>\d*)\s*(?:\\overline|\\dot)\s*\{\s*(?P<rep>\d{1,50})\s*\}$")
_BASED = re.compile(r"^(?P<digits>(?=[0-9A-Za-z]*\d)[0-9A-Za-z]+)_\{?\s*(?P<base>\d{1,2})\s*\}?$")  # 204_5, 1A_{16}
_VAR = r"(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[A-Za-z]+)"
_ASSIGN = re.compile(rf"^(?P<var>{_VAR})\s*=\s*(?P<rest>.+)$")
_CHOICE = re.compile(r"^\(?\s*(?P<up>[A-Z])\s*\)?$|^\(\s*(?P<low>[a-z])\s*\)$")
_CHOICE_LEAD = re.compile(r"^\(?([A-Z])\)\s+\S")  # "(B) 42": the letter and the option's text


@dataclass(frozen=True)
class NumberValue:
    """A number as written: its exact value, and for a decimal literal its decimal places and significant
    digits (``places is None`` for integers and fractions, which are exact)."""

    value: Fraction
    places: int | None = None
    sig: int = 0
    percent: bool = False

    def candidates(self) -> tuple[Fraction, ...]:
        """The values it may mean: as written, and for a percentage also divided by 100."""
        return (self.value, self.value / 100) if self.percent else (self.value,)


@dataclass(frozen=True)
class Answer:
    """A normalised answer: ``kind`` is ``number``, ``based``, ``choice``, ``text``, ``latex`` or ``empty``; ``text`` is
    what sympy parses for ``latex`` (and the normalised string otherwise); ``var`` names an assigned
    variable (``x = 5``)."""

    kind: str
    text: str
    number: NumberValue | None = None
    var: str | None = None


def _strip_delimiters(s: str) -> str:
    changed = True
    while changed:
        changed = False
        s = s.strip()
        quoted = re.fullmatch(r'\\?"(.*?)\\?"', s, re.DOTALL)
        if quoted:  # "12 and 13", quoted (also as \"...\")
            s, changed = quoted.group(1), True
            continue
        for left, right in _DELIMS:
            if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
                inner = s[len(left) : len(s) - len(right)]
                if left == "$" and "$" in inner:  # "$a$ and $b$" is not one span
                    continue
                s, changed = inner, True
                break
        if "\\boxed" in s or "\\fbox" in s:  # \boxed{\boxed{3}}, \frac{1}{\boxed{2}}: the boxes go
            from r1gym.plugins.math.extract import unbox

            unboxed = unbox(s)
            s, changed = unboxed, unboxed != s
    return s


def normalize(text: str) -> str:
    r"""Strip what never changes an answer's value; keep LaTeX that sympy parses.

    >>> normalize(r"$\$1{,}250.00$."), normalize(r"**30^\circ**"), normalize(r"5\text{ cm}^2")
    ('1,250.00', '30', '5')
    """
    s = str(text)
    for k, v in _UNICODE.items():
        s = s.replace(k, v)
    s = re.sub(r"(?<=\d),\\!\s*(?=\d{3})", ",", s)  # 11,\! 111 (MATH's thousands)
    s = s.replace("\\$", "").replace("\\!", "")
    s = re.sub(r"\*\*|__|`", "", s)
    s = _strip_delimiters(s)
    s = re.sub(r"(?<!\\)\$", "", s)  # inline math spans inside the answer: "$x$ = $5$"
    s = re.sub(r"\\(?:displaystyle|textstyle)\b", "", s)
    s = _AND.sub(", ", s)  # p = -1 \text{ and } p = 2, "19, 46, and 82": a list
    s = _FRAC_SHORTHAND.sub(_brace_frac, s)  # \frac12, \dfrac\pi2 -> \frac{1}{2}, \frac{\pi}{2}
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)  # \sqrt2 -> \sqrt{2}
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ\b|\{\}\^\s*\\circ\b|\\degree\b", "", s)
    s = re.sub(r"(?<=\d)(?:\\,|\\;|\\:|\\ |\{,\})(?=\d{3}(?!\d))", lambda m: "," if m.group() == "{,}" else "", s)
    s = re.sub(r"(?<!\\)\\[,;: ]|\\q?quad\b|~", " ", s)  # not the "\\ " of a matrix row break
    s = re.sub(r"\s*\\%|\s*\\text\{\s*percent\s*\}|\s+percent\b", "%", s)
    s = re.sub(r"\s+", " ", s).strip()
    if _SPACED_THOUSANDS.fullmatch(s):  # 1 000 000
        s = s.replace(" ", "")
    s = re.sub(r"(?<!\\)[.,;:]+$", "", s).strip()  # not "!": 5! is a factorial
    s = re.sub(r"^(?:=|\\approx)\s*", "", s)
    s = _strip_units(s)
    return s


_FRAC_ARG = r"(\{[^{}]*\}|\\[A-Za-z]+|[0-9A-Za-z])"
_FRAC_SHORTHAND = re.compile(rf"\\[dtc]?frac\s*{_FRAC_ARG}\s*{_FRAC_ARG}")


def _brace_frac(m: re.Match) -> str:
    num, den = (a if a.startswith("{") else "{" + a + "}" for a in (m.group(1), m.group(2)))
    return rf"\frac{num}{den}"


def _strip_units(s: str) -> str:
    stripped = _TEXT_UNIT.sub("", s).strip()
    if stripped and stripped != s:
        s = stripped
    m = _UNIT_TAIL.match(s)
    if m:
        words = m.group("tail").replace(".", " ").split()
        if words and all(len(w) >= 3 or w.lower() in _SHORT_UNITS for w in words):
            s = m.group("num")
    return s


def parse_number(s: str) -> NumberValue | None:
    r"""The exact value of a plain number literal, or ``None`` when ``s`` is anything else.

    >>> parse_number("-1,234.50").value, parse_number(r"2\frac{1}{2}").value, parse_number("1.5e-3").value
    (Fraction(-2469, 2), Fraction(5, 2), Fraction(3, 2000))
    """
    s = s.strip()
    if not s or len(s) > MAX_NUMBER_CHARS:
        return None
    m = _REPEATING.match(s)
    if m:  # 0.1\overline{6} = 1/10 + 6/90: exact
        head, tail, rep = m["int"] or "0", m["dec"] or "", m["rep"]
        value = int(head) + (Fraction(int(tail or "0"), 10 ** len(tail)) + Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(tail)))
        return NumberValue(-value if m["sign"] == "-" else value, None, 0, False)
    if _DECIMAL_COMMA.match(s):  # 1,22 and 0,111: a decimal comma (1,000 stays a thousands separator)
        s = s.replace(",", ".")
    m = _NUM.match(s)
    if m:
        mant = m["mant"].replace(",", "")
        exp = int(m["e1"] or m["e2"] or m["e3"] or 0)
        if abs(exp) > 1000:
            return None
        value = Fraction(mant if not mant.endswith(".") else mant[:-1]) * Fraction(10) ** exp
        if m["sign"] == "-":
            value = -value
        places = sig = None
        if "." in mant or exp < 0:
            decimals = mant.split(".", 1)[1] if "." in mant else ""
            places = len(decimals) - exp
            sig = len(mant.replace(".", "").lstrip("0")) or 1
        return NumberValue(value, places, sig or 0, bool(m["pct"]))
    for pattern in (_FRAC, _SLASH):
        m = pattern.match(s)
        if m:
            num, den = int(m.groupdict().get("n1") or m["n"]), int(m.groupdict().get("d1") or m["d"])
            if den == 0:
                return None
            value = Fraction(num, den)
            if m["whole"] is not None:
                if num < 0 or den < 0:
                    return None
                value += int(m["whole"])
            if m["sign"] == "-":
                value = -value
            return NumberValue(value, None, 0, bool(m["pct"]))
    return None


def _unwrap_text(s: str) -> str | None:
    m = _WRAPPED_TEXT.match(s)
    return m.group("inner").strip() if m else None


def classify(text: str) -> Answer:
    r"""Normalise ``text`` and sort it into a kind (see the module docstring).

    >>> classify("x = 2.50").number.value, classify(r"\text{(C)}").text, classify(r"\text{Odd}").kind
    (Fraction(5, 2), 'C', 'text')
    >>> classify(r"\frac{\sqrt{3}}{2}").kind
    'latex'
    """
    s = normalize(text)
    if not s:
        return Answer("empty", "")
    var = None
    m = _ASSIGN.match(s)
    if m and not re.search(r",(?!\d{3})|;", m["rest"]):  # not a system: x = 2, y = 3
        rest = re.split(r"(?<![<>!\\])=", m["rest"])[-1].strip()
        number = parse_number(rest)
        if number is not None:
            return Answer("number", rest, number, m["var"])
    number = parse_number(s)
    if number is not None:
        return Answer("number", s, number, var)
    based = _based(s)
    if based is not None:
        return Answer("based", based)
    inner = _unwrap_text(s)
    candidate = inner if inner is not None else s
    m = _CHOICE.match(candidate)
    if m:
        return Answer("choice", (m["up"] or m["low"]).upper())
    m = _CHOICE_LEAD.match(candidate)
    if m:
        return Answer("choice", m.group(1).upper())
    if inner is not None:
        number = parse_number(inner)
        if number is not None:
            return Answer("number", inner, number)
        if inner:
            return Answer("text", _text_key(inner))
    if re.fullmatch(r"[A-Za-z][A-Za-z '\-]*", s):
        words = re.findall(r"[A-Za-z]+", s)
        if any(len(w) >= 3 and w.lower() not in _MATH_WORDS for w in words):
            return Answer("text", _text_key(s))
    return Answer("latex", s)


def _based(s: str) -> str | None:
    """``"204_5"`` for a number written in another base (digits checked against the base), else ``None``."""
    m = _BASED.match(s)
    if not m:
        return None
    base, digits = int(m["base"]), m["digits"].upper().lstrip("0") or "0"
    if not 2 <= base <= 36:
        return None
    try:
        int(digits, base)
    except ValueError:
        return None
    return f"{digits}_{base}"


def _text_key(s: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", s.lower())


def _close(exact: Fraction, approx: NumberValue, approx_digits: int) -> bool:
    """Whether the decimal ``approx`` is ``exact`` correctly rounded or truncated at its last digit."""
    if approx.places is None or approx.sig < approx_digits:
        return False
    return abs(exact - approx.value) < Fraction(10) ** (-approx.places)


def _is_decimal_exact(x: Fraction) -> bool:
    """Whether some finite decimal writes ``x`` exactly (its denominator divides a power of 10)."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_equal(ref: NumberValue, pred: NumberValue, approx_digits: int = DEFAULT_APPROX_DIGITS) -> bool:
    """Exact equality, with the percentage and decimal-approximation rules of the module docstring.

    >>> one_third, close, short = parse_number("1/3"), parse_number("0.333333"), parse_number("0.33")
    >>> numbers_equal(one_third, close), numbers_equal(one_third, short)
    (True, False)
    """
    pairs = [(ref.value, pred.value)]
    if ref.percent or pred.percent:
        pairs.append((ref.candidates()[-1], pred.candidates()[-1]))
    for r, p in pairs:
        if r == p:
            return True
    # one side approximates a value that no decimal writes exactly
    if pred.places is not None and ref.places is None and not _is_decimal_exact(ref.value):
        return _close(ref.value, pred, approx_digits) and not ref.percent and not pred.percent
    if ref.places is not None and pred.places is None and not _is_decimal_exact(pred.value):
        return _close(pred.value, ref, approx_digits) and not ref.percent and not pred.percent
    return False


def choice_of(answer: Answer) -> str | None:
    """The letter of a choice answer, also for a bare single letter of either case (``b``)."""
    if answer.kind == "choice":
        return answer.text
    if answer.kind == "latex" and re.fullmatch(r"[A-Za-z]", answer.text):
        return answer.text.upper()
    return None


def quick_verdict(ref: Answer, pred: Answer, approx_digits: int = DEFAULT_APPROX_DIGITS) -> tuple[bool | None, str] | None:
    """``(correct, reason)`` when no computer algebra is needed (``correct=None``: cannot be scored), or
    ``None`` when the pair needs sympy (:func:`r1gym.plugins.math.verify.symbolic_verdict`)."""
    if ref.kind == "empty":
        return None, "reference answer is empty"
    if pred.kind == "empty":
        return False, "empty answer"
    if ref.kind == "choice":
        return (choice_of(pred) == ref.text, "choice")
    if ref.kind == "text":
        other = _text_key(pred.text) if pred.kind in ("latex", "choice") else pred.text if pred.kind == "text" else None
        return (other == ref.text, "text")
    if ref.kind == "based":  # 204_5: the same digits in the same base, or the digits alone (the base is asked)
        if pred.kind == "based":
            return pred.text == ref.text, "base-n number"
        digits = ref.text.split("_")[0]
        plain = pred.kind == "number" and pred.var is None and pred.text.lstrip("+0") == digits.lstrip("0")
        return plain, "base-n number"
    if pred.kind == "based":
        return False, "base-n number against a decimal one"
    if ref.kind == "number" and pred.kind == "number":
        if ref.var and pred.var and ref.var != pred.var:
            return False, f"different variables {ref.var} and {pred.var}"
        return (numbers_equal(ref.number, pred.number, approx_digits), "number")  # type: ignore[arg-type]
    if ref.kind == "number" and pred.kind in ("text", "choice"):
        return False, "not a number"
    return None


def answer_key(text: str) -> str | None:
    r"""A canonical string for voting (cons@k): answers with equal keys are the same answer.

    Numbers by exact value (``0.5``, ``1/2``, ``\frac{2}{4}`` and ``x = 0.5`` all give ``"1/2"``; a
    percentage keeps its ``%``), letters and words as :func:`classify` normalises them, anything else by its
    normalised LaTeX with spaces removed. ``None`` for an empty answer. Two LaTeX forms of one value
    (``\frac{\sqrt{3}}{2}`` and ``\sqrt{3}/2``) get different keys: voting counts them apart.

    >>> answer_key("x = 0.50"), answer_key(r"\frac{2}{4}"), answer_key(r"\text{(B)}"), answer_key(r"\frac{\sqrt 3}{2}")
    ('1/2', '1/2', 'choice:B', 'latex:\\frac{\\sqrt{3}}{2}')
    """
    a = classify(text)
    if a.kind == "empty":
        return None
    if a.kind == "number" and a.number is not None:
        return str(a.number.value) + ("%" if a.number.percent else "")  # Fraction: "1/2", "12"
    if a.kind == "latex":
        return "latex:" + re.sub(r"\s+", "", a.text)
    return f"{a.kind}:{a.text}"

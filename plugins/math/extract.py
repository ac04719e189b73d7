"""Finding the final answer in a completion (and in a reference answer), before any comparison.

A completion is searched for, in this order of trust:

1. ``answer_tag``: the last ``<answer>…</answer>`` of the R1 template. Inside it, a ``\\boxed{}`` or an
   "answer is" phrase still narrows the answer down; otherwise the whole content is the answer.
2. ``boxed``: the last ``\\boxed{…}`` / ``\\fbox{…}`` (nested braces; ``\\boxed 5`` too). Boxes that directly
   precede it, joined only by commas, "and"/"or" or ``$``, are part of the answer (``\\boxed{2}, \\boxed{3}``).
3. ``gsm8k``: the last ``#### n`` line.
4. ``answer_is``: the last "the (final) answer is …" / "Answer: …", up to the end of its sentence.
5. ``bold``: the last markdown ``**…**`` span (short ones only).
6. ``bare``: the whole text, when it is a short answer with no prose (``\\frac{\\sqrt{3}}{2}``, ``(1, 2)``,
   ``$x^2+1$``): a completion, or the part after ``</think>``, that states only its answer.
7. ``math_span``: the last short ``$…$`` / ``\\(…\\)`` / ``\\[…\\]`` span with no prose in it (not a
   currency amount: ``$2 and $3`` is no span).
8. ``last_number``: the last number in the text.

Methods 5-8 find an answer nobody marked as the answer (:data:`FALLBACK_METHODS`): the reward flags such a
verdict ``fallback``.

When the completion closes a ``</think>`` section, methods 2-6 look after it first and only then at the
whole text. Nothing here parses mathematics: :mod:`r1gym.plugins.math.verify` normalises what is found.

Cost: this runs in the trainer's thread, on text the policy wrote, so every scan is linear in its input and
the input is bounded. Only the last :data:`MAX_SCAN_CHARS` characters of a completion are searched (a final
answer sits at the end; a 1 MB completion costs what a 16 KB one does), braces are matched in one pass over
the text (not one scan per ``\\boxed{``: 35 KB of repeated ``\\boxed{`` took 7.5 s that way), and an
answer longer than :data:`MAX_ANSWER_CHARS` is never parsed: the checker grades it wrong (counted as
``too_long``; see :mod:`r1gym.plugins.math.pool`). Wrong, not unscorable: a masked sample teaches nothing,
so a policy unsure of its answer could otherwise escape the penalty by boxing its whole derivation.
A reference answer goes through :func:`extract_reference`: a bare answer stays whole; a ``\\boxed{}`` or
``#### n`` inside it is taken out (so a MATH solution or a GSM8K answer works as a reference too).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from r1gym.core.r1_template import after_think, extract_answer_tag

METHODS = ("answer_tag", "boxed", "gsm8k", "answer_is", "bold", "bare", "math_span", "last_number")
#: methods that find an answer nobody stated as the answer: a verdict on it is flagged ``fallback``
FALLBACK_METHODS = ("bold", "bare", "math_span", "last_number")
#: the longest text that ``bare`` and ``math_span`` take as an answer
MAX_BARE_CHARS = 200
#: only this many characters at the end of a completion are searched for its answer
MAX_SCAN_CHARS = 16_384
#: an extracted answer longer than this is graded wrong without being parsed (MATH-500's longest is 53)
MAX_ANSWER_CHARS = 1_024

_BOX_CMD = re.compile(r"\\(?:boxed|fbox)\b")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)  # an escaped brace \{ does not count
_BARE_BOX = re.compile(r"\\?[^\s$.,\\]{1,100}")  # \boxed 5, \boxed \pi: a short word
_BOX_JOIN = re.compile(r"(?:[\s$,;]|\\[()\[\]])*(?:(?:and|or|\\text\{\s*(?:and|or)\s*\}|\\q?quad)(?:[\s$,;]|\\[()\[\]])*)*$")
_GSM8K = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(
    r"(?:\banswers?\b(?:\*\*)?\s*(?:is|are|=|:|would be|will be|should be)|^\s*A:)\s*[:=]?(?:\*\*)?[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)  # "A: 18" is how OpenAI's GSM8K solutions end
_LAST_IS = re.compile(r".*(?:\b(?:is|are|equals|be)\b|=)\s*", re.DOTALL)
_BOLD = re.compile(r"\*\*(?P<inner>[^*\n]{1,80}?)\*\*")
_NUMBER = re.compile(
    r"(?<![\w.,])[-+−]?(?:0,\d+|\d+,(?:\d{2}|\d{4,}))(?![\d,.]\d|\d)"  # a decimal comma: 2,74 (as normalize reads it)
    r"|(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?![\d,.]\d|\d)|[-+−]?\.\d+"
)
# a sentence ends at a period/!/? followed by space or end (not a decimal point), or at a newline
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?=\s|$)|(?<=\d)\.(?=\s|$)|\s{3,}")


# LaTeX that went through a non-raw string or a JSON decoder: "\frac" arrives as a form feed and "rac", "\boxed" as
# a backspace and "oxed". Form feed, backspace, bell and vertical tab never belong in an answer, so each is read as
# the command it cut. A tab or a newline is left alone: it is also whitespace ("$\t ext{13}$" is not 13, says
# math-verify's test_symbols, tests/test_all.py:951 at 5d148cf).
_LOST_ESCAPE = re.compile(r"[\x07\x08\x0b\x0c]")
_ESCAPED = {"\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f"}
# LaTeX escaped twice (a JSON string of a JSON string, a non-raw string of "\\\\boxed"): "\\boxed", "\\text". A LaTeX
# line break ("\\") followed by the letters of a command name is never meant, so the doubled backslash before one
# of these names is read as one. Names only, and only long ones: "x=1\\y=2" (a line break before y) stays.
_DOUBLED_ESCAPE = re.compile(
    r"\\\\(?=(?:boxed|fbox|text|textbf|mathrm|mathbf|frac|dfrac|tfrac|sqrt|cdot|times|infty|left|right|ldots|cdots|dots)(?![A-Za-z]))"
)


def repair_escapes(text: str) -> str:
    """``text`` with the LaTeX commands that a string escape cut restored (one linear pass).

    >>> repair_escapes("\\x0crac{1}{2} and \\x08oxed{3}")
    '\\\\frac{1}{2} and \\\\boxed{3}'
    """
    if _LOST_ESCAPE.search(text):
        text = _LOST_ESCAPE.sub(lambda m: _ESCAPED[m.group()], text)
    return _DOUBLED_ESCAPE.sub(r"\\", text) if "\\\\" in text else text


@dataclass(frozen=True)
class Extraction:
    """The answer found in a completion and the method that found it (one of :data:`METHODS`)."""

    text: str
    method: str


def _brace_pairs(text: str) -> dict[int, int]:
    """The index of the matching ``}`` for every ``{`` that has one, in one pass (escaped braces skipped)."""
    pairs, stack = {}, []
    for m in _BRACE.finditer(text):
        ch = m.group()
        if ch == "{":
            stack.append(m.start())
        elif ch == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def find_boxed(text: str) -> list[tuple[int, int, str]]:
    """Every ``\\boxed{…}`` / ``\\fbox{…}`` in ``text`` as ``(start, end, content)``, braces balanced.

    Linear in ``len(text)``: the braces are matched once for the whole text.

    >>> [c for _, _, c in find_boxed(r"\\boxed{\\frac{1}{2}} and \\fbox{3}")]
    ['\\\\frac{1}{2}', '3']
    """
    out: list[tuple[int, int, str]] = []
    pairs: dict[int, int] | None = None
    for match in _BOX_CMD.finditer(text):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if pairs is None:
                pairs = _brace_pairs(text)
            j = pairs.get(i)
            if j is not None:
                out.append((match.start(), j + 1, text[i + 1 : j].strip()))
        elif i > match.end() or (i < len(text) and text[i] in "0123456789-"):  # \boxed 5
            word = _BARE_BOX.match(text, i)
            if word:
                out.append((match.start(), word.end(), word.group()))
    return out


def _outermost(boxes: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The boxes not inside another box (``\\boxed{\\frac{1}{\\boxed{2}}}`` is one answer, not ``2``)."""
    out: list[tuple[int, int, str]] = []
    for box in boxes:
        if not out or box[0] >= out[-1][1]:
            out.append(box)
    return out


def outermost_boxed(text: str) -> list[tuple[int, int, str]]:
    """:func:`find_boxed`, less the boxes inside another box: the separate boxed answers of ``text``."""
    return _outermost(find_boxed(text))


#: what may stand between two boxes of one answer given in parts: a short phrase (one line, at most 60 characters)
#: that ends in "and", "or", a comma or a semicolon, then perhaps the name of the next part ("y_2 ="), math
#: delimiters and spacing aside: "for part (a) and", "papers and", "\\) and \\( y_2 =" (not "no no no no no")
_PARTS_JOIN = re.compile(r"[^\n]{0,60}?(?:\band|\bor|[,;])\s*(?:[A-Za-z](?:_\{?\w+\}?)?\s*=\s*)?")
_PARTS_NOISE = re.compile(r"\\text\s*\{([^{}]*)\}|\\[()\[\]]|\$|\\q?quad\b|\\[,;: ]")


def all_boxed(text: str) -> str | None:
    """An answer given in parts: the last box of ``text`` (after its ``</think>``, else its scanned tail) and
    the boxes before it joined to it by a short phrase that ends in "and", "or" or a comma (``\\boxed{(3,3)}
    for part (a) and \\boxed{(1,1)}``), as one answer; ``None`` when there are fewer than two such boxes. The
    same answer boxed twice counts once.

    >>> all_boxed(r"\\boxed{(3, 3)} for part (a) and \\boxed{(1, 1)}"), all_boxed(r"\\boxed{1} no no no \\boxed{2}")
    ('(3, 3), (1, 1)', None)
    """
    text = text[-MAX_SCAN_CHARS:]
    summary = after_think(text)
    text = summary if summary is not None else text
    if "boxed" not in text and "fbox" not in text:
        return None
    boxes = outermost_boxed(text)
    if len(boxes) < 2:
        return None
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        between = _PARTS_NOISE.sub(lambda m: m.group(1) or " ", text[box[1] : group[-1][0]]).strip()
        if len(between) > 200 or not _PARTS_JOIN.fullmatch(between):
            break
        group.append(box)
    contents = list(dict.fromkeys(c for _, _, c in reversed(group) if c))
    return ", ".join(contents) if len(contents) >= 2 else None


def unbox(text: str) -> str:
    """``text`` with every ``\\boxed{…}`` / ``\\fbox{…}`` replaced by its content (nested boxes too).

    >>> unbox(r"\\frac{1}{\\boxed{2}}")
    '\\\\frac{1}{2}'
    """
    boxes = _outermost(find_boxed(text))
    if not boxes:
        return text
    parts, pos = [], 0
    for start, end, content in boxes:
        parts += [text[pos:start], unbox(content)]
        pos = end
    return "".join(parts) + text[pos:]


def last_boxed(text: str) -> str | None:
    """The content of the last box, with the boxes directly before it that belong to the same answer.

    >>> last_boxed(r"so \\boxed{2} and \\boxed{3}.")
    '2, 3'
    >>> last_boxed(r"first \\boxed{1}; then much later, after more work, we find \\boxed{4}")
    '4'
    """
    boxes = _outermost(find_boxed(text))
    if not boxes:
        return None
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if box[1] > group[-1][0] or not _BOX_JOIN.match(text, box[1], group[-1][0]):
            break
        group.append(box)
    contents = [c for _, _, c in reversed(group)]
    return ", ".join(dict.fromkeys(contents)) if len(contents) > 1 else contents[0]


def _sentence(rest: str) -> str:
    """``rest`` up to the end of its sentence, with a trailing math span kept whole."""
    rest = rest.strip()
    m = re.match(r"\$\$?(.+?)\$\$?", rest)  # a $…$ span first: a period inside it does not end the sentence
    if m:
        span = m.group(1)
    elif rest.startswith(("\\boxed", "\\fbox")):
        span = rest
    else:
        end = _SENTENCE_END.search(rest)
        span = rest[: end.start()] if end else rest
    boxed = last_boxed(span) if ("\\boxed" in span or "\\fbox" in span) else None
    return (boxed if boxed is not None else span).strip()


def _answer_is(text: str) -> str | None:
    """The last "answer is …" phrase with something after it; in a sentence of prose ("Final Answer: the
    largest $n$ is 34") what follows its last "is" or "=". Each phrase's rest of line is read only when it is
    a candidate (the last ones), so the scan stays linear."""
    for m in reversed(list(_ANSWER_IS.finditer(text))):
        end = text.find("\n", m.end())
        candidate = _sentence(text[m.end() : end if end >= 0 else len(text)])
        if candidate and _prose(candidate):
            narrowed = _LAST_IS.sub("", candidate, count=1)
            candidate = narrowed if narrowed and narrowed != candidate else candidate
            if _prose(candidate) and not _one_word(candidate):  # "Jane started Sphere 3 hours ago": its number
                candidate = _last_number(candidate) or candidate
        if candidate:
            return candidate
    return None


def _bold(text: str) -> str | None:
    spans = [m.group("inner").strip() for m in _BOLD.finditer(text)]
    spans = [s for s in spans if s and not s.endswith(":")]
    if not spans:
        return None
    inner = spans[-1]
    labelled = re.match(r"(?i)^(?:final\s+)?answer\s*[:=]?\s*(.+)$", inner)
    return labelled.group(1).strip() if labelled else inner


_MATH_SPAN = re.compile(r"\$\$(?P<a>[^$]{1,%d}?)\$\$|(?<![\\$])\$(?P<b>(?:[^$\n\\]|\\[^\n]){1,%d}?)\$|\\\((?P<c>.{1,%d}?)\\\)|\\\[(?P<d>.{1,%d}?)\\\]"
                        % ((MAX_BARE_CHARS,) * 4), re.DOTALL)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TEXT_ARG = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}")
#: words that may stand in an answer without making it prose
_ANSWER_WORDS = {"and", "or", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lim", "max", "min", "gcd",
                 "lcm", "det", "mod", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "pi", "infty", "inf", "no", "yes"}


#: two-letter words of English prose (a two-letter run of letters is otherwise a product: ``2ab``)
_SHORT_WORDS = {"so", "is", "it", "we", "be", "by", "as", "an", "at", "in", "on", "if", "of", "to", "do", "am", "my", "me", "us"}


def _prose(text: str) -> bool:
    """Whether ``text`` holds words: a run of three or more letters that is not a LaTeX command or a function
    name, or a two-letter English word. A run is cut where a capital follows a small letter, so an answer word
    glued to a name (``W(x)=1orW(x)=-1``) is still that word."""
    bare = _TEXT_ARG.sub(" ", text)
    for word in _WORD.findall(_CAMEL.sub(" ", bare)):
        w = word.lower()
        if (len(w) >= 3 and w not in _ANSWER_WORDS) or w in _SHORT_WORDS:
            return True
    return False


def _bare(text: str) -> str | None:
    text = text.strip()
    if not text or len(text) > MAX_BARE_CHARS or not re.search(r"[\w\\]", text):
        return None
    if _prose(text) and not _one_word(text):
        return None
    return text


def _math_span(text: str) -> str | None:
    last = None
    for m in _MATH_SPAN.finditer(text):
        last = m
    if last is None:
        return None
    if re.search(r"\d", text[last.end() :]):  # a number written after the span is the later answer
        return None
    span = next(g for g in last.groups() if g is not None)
    if last.group("b") is not None and span[:1].isdigit() and span != span.rstrip():  # "$2 and $3": currency
        return None
    span = span.strip()
    return span if span and (not _prose(span) or _one_word(span)) else None


def _one_word(text: str) -> bool:
    """A single word, possibly in ``\\text{}`` (``$odd$``, ``\\text{Even}``): an answer, not prose."""
    return bool(re.fullmatch(r"(?:\\text\s*\{\s*)?[A-Za-z]+(?:\s*\})?", text.strip(" $")))


def _last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1].strip() if found else None


def _inner(content: str) -> str:
    """Narrow down the content of an ``<answer>`` tag: a box or an "answer is" phrase inside it wins."""
    boxed = last_boxed(content)
    if boxed is not None:
        return boxed
    phrase = _answer_is(content)
    if phrase:
        return phrase
    return content.strip()


_FINDERS = {
    "boxed": last_boxed,
    "gsm8k": lambda t: (m[-1].strip() if (m := _GSM8K.findall(t)) else None),
    "answer_is": _answer_is,
    "bold": _bold,
    "bare": _bare,
    "math_span": _math_span,
    "last_number": _last_number,
}


def extract_answer(completion: str, methods: Sequence[str] | None = None) -> Extraction | None:
    """The final answer of a completion, or ``None`` when none of ``methods`` (default: all) finds one.

    >>> extract_answer("<think> 6*7 </think> <answer> $42$ </answer>")
    Extraction(text='$42$', method='answer_tag')
    >>> extract_answer(r"... so the area is \\boxed{\\frac{\\pi}{4}}.")
    Extraction(text='\\\\frac{\\\\pi}{4}', method='boxed')
    >>> extract_answer("She pays 3 * 4 = 12 dollars.\\n#### 12")
    Extraction(text='12', method='gsm8k')
    >>> extract_answer("Adding them, the answer is 1,234.")
    Extraction(text='1,234', method='answer_is')
    """
    methods = METHODS if methods is None else tuple(methods)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown extraction method(s) {sorted(unknown)}; known: {', '.join(METHODS)}")
    completion = repair_escapes(completion[-MAX_SCAN_CHARS:])
    if "answer_tag" in methods:
        tag = extract_answer_tag(completion)
        if tag is not None:
            inner = _inner(tag)
            return Extraction(inner, "answer_tag") if inner else None
    summary = after_think(completion)
    regions = [summary, completion] if summary is not None else [completion]
    for region in regions:
        for method in methods:
            if method == "answer_tag":
                continue
            found = _FINDERS[method](region)
            if found:
                if method == "boxed" and "answer_is" in methods:
                    later = _answer_after_last_box(region)
                    if later:
                        return Extraction(later, "answer_is")
                return Extraction(found, method)
    return None


def _answer_after_last_box(text: str) -> str | None:
    """An "the final answer is X" stated after the last box, when X is an answer and not prose: a model that
    boxed an intermediate value and then named its answer (``\\boxed{255} … The final answer is $10,455$``)."""
    boxes = find_boxed(text)
    if not boxes:
        return None
    found = _answer_is(text[boxes[-1][1] :])
    return found if found and not _prose(found) else None


def _truncated_box(text: str) -> str | None:
    """The content of a reference's last box that lost its closing brace, when only that brace is missing
    (``\\boxed{W(n) = 1 \\text{ and } W(n) = -1``: a truncated dataset row, math-verify's test_numina_cases).
    For references only: a reference is data the user vouches for, so its cut answer is still the answer; a
    completion's unclosed box is the policy's malformed output and stays unread."""
    starts = [m for m in _BOX_CMD.finditer(text)]
    if not starts:
        return None
    rest = text[starts[-1].end() :].lstrip(" ")
    if not rest.startswith("{"):
        return None
    depth = 0
    for m in _BRACE.finditer(rest, 1):
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
            if depth < 0:
                return None  # a closed box after all, or a stray brace: not a simple truncation
    return rest[1:].strip() if depth == 0 and rest[1:].strip() else None


def extract_reference(reference: str) -> str:
    """The answer inside a reference: the last box of a MATH solution, the ``#### n`` of a GSM8K answer,
    the stated answer of a worked solution in prose ("The final answer is $28\\%$"), or the whole (stripped)
    string.

    >>> extract_reference(r"\\frac{1}{2}"), extract_reference("so 5 + 7 = 12\\n#### 12")
    ('\\\\frac{1}{2}', '12')
    """
    text = repair_escapes(str(reference)).strip()
    if "\\boxed" in text or "\\fbox" in text:
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
        cut = _truncated_box(text)
        if cut is not None:
            return cut
    if "####" in text:
        found = _GSM8K.findall(text)
        if found:
            return found[-1].strip()
    if _prose(text[-MAX_SCAN_CHARS:]) and not _one_word(text):  # a worked solution, not an answer
        stated = extract_answer(text, ("answer_is", "math_span"))
        if stated is not None:
            return stated.text
    return text

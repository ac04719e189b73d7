"""The ``language_consistency`` reward: the share of a completion's reasoning written in the target language.

DeepSeek-R1 (arXiv 2501.12948, section 2.3.2) adds this reward during reasoning RL because R1-Zero's
chains of thought drifted between languages, mostly English and Chinese, often mid-sentence. The reward is
"the proportion of target-language words in the CoT"; the paper gives no more detail, so this module fixes
one:

1. **Span.** ``span="think"`` scores the chain of thought: the ``<think>…</think>`` blocks (a missing
   ``<think>`` before the first ``</think>`` is fine: the chat template may have written it; an unclosed
   block runs to the end, as in a truncated completion; :func:`r1gym.core.r1_template.think_text`).
   ``span="all"`` scores the whole completion.
2. **Exclusions.** Fenced code blocks, inline code, LaTeX (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``,
   ``\\begin{env}…\\end{env}``, stray ``\\commands``) and XML-like tags are removed first; numbers,
   punctuation and symbols are never units. So they count neither for nor against the target language.
3. **Units.** A word (letters, with inner ``'``, ``’`` or ``-``) in space-separated scripts (Latin,
   Cyrillic, Greek, ...); a character in Chinese, Japanese and Korean (Han, Hiragana, Katakana, Hangul).
   Letters glued to digits (``1e-3``, ``3rd``, ``x1``) make a number, not a word.
4. **Languages.** CJK characters are told apart by script, one sentence at a time: kana and the Han
   characters of a sentence with kana are ``ja``, Hangul and the Han of a sentence with Hangul are ``ko``,
   other Han is ``zh`` (so a Japanese sentence without a single kana counts as Chinese). Words come in
   *runs*: consecutive words of one script inside a sentence, cut by sentence punctuation and by CJK text.
   Each run of at least :data:`MIN_WORDS` words is identified by py3langid among :data:`CANDIDATES` and the
   target; shorter runs ("wait", "so the answer is") are too short to identify reliably and take the
   language with most words among their script's long runs (or, with none, that of their script's short
   runs joined). A target in ``zh``, ``ja`` or ``ko`` needs no identification at all.
5. **Score.** Units in the target language over all units. A span with no units (no think block, only a
   formula, only code) cannot be measured: :class:`~r1gym.core.rewards.Unscorable`, unless the config
   chose a value for that case (``unmeasured``); the reward never invents one.

Why py3langid (``py3langid>=0.4,<0.5``; BSD-3; a maintained, faster fork of langid.py whose naive Bayes
model of 140 languages ships in the wheel; needs only numpy): of the three candidates it was the most
accurate on the short runs this reward must label, fast, and light. On runs cut from the labelled set's
English, French, German, Spanish and Russian sentences (``python bench/language.py --compare``), the share
right for 2-, 4-word runs and whole sentences was: py3langid 0.66, 0.96, 1.00 with all its languages and
0.76, 0.98, 1.00 with :data:`CANDIDATES`, 13-17 µs a call; pycld2 0.26, 0.81, 0.94 (it often answers
"unknown"), 2 µs; lingua-language-detector (fast mode) 0.52, 0.72, 0.97, 70 µs, and 8 s to load and 1.5 GB
of memory with every language. Details: docs/language.md.

Where R1-Zero switched languages inside one script (French and English words in one sentence), the whole
run gets one label: the reward is only as fine as a run. See docs/language.md for the measured error.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from r1gym.core.r1_template import think_text
from r1gym.core.rewards import Unscorable

log = logging.getLogger(__name__)

SPANS = ("think", "all")
#: languages decided by script alone (units are characters)
CJK_LANGUAGES = ("zh", "ja", "ko")
#: a run of fewer words than this is not identified on its own (see the module docstring, 4.)
MIN_WORDS = 4
#: at most this many characters of a script's short runs are joined to identify them when it has no long run
MAJORITY_CHARS = 4000

# --- what is removed before counting --------------------------------------------------------------------

_FENCED = r"(?P<fence>```|~~~).*?(?:(?P=fence)|\Z)"  # an unclosed fence (a truncated completion) runs to the end
_EXCLUDED = re.compile(
    "|".join((
        rf"(?P<block>{_FENCED}|<\/?[A-Za-z][\w-]*>)",  # code blocks and tags: structure, replaced by a line break
        r"\\begin\{(?P<env>[^{}]+)\}.*?\\end\{(?P=env)\}",
        r"\$\$.*?\$\$",
        r"\\\[.*?\\\]",
        r"\\\(.*?\\\)",
        r"(?<![\\$])\$(?=\S)[^$\n]+?(?<=[^\s\\])\$(?!\d)",  # $x$ but not "$5 and $10" (Pandoc's rule)
        r"``[^\n]+?``|`[^`\n]+`",  # inline code; between double backticks a single one may appear
        r"\\[A-Za-z]+",  # a LaTeX command written outside math
    )),
    re.DOTALL,
)

# --- units --------------------------------------------------------------------------------------------------

_KANA = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"
_HANGUL = "\u1100-\u11ff\u3131-\u318e\uac00-\ud7a3"
_HAN = "\u3005\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CJK = _KANA + _HANGUL + _HAN
_LETTER = rf"[^\W\d_{_CJK}]"
_TOKEN = re.compile(
    rf"(?P<cjk>[{_CJK}]+)"
    rf"|(?P<number>(?:{_LETTER}|\d)*\d(?:{_LETTER}|\d)*)"  # 42, 1e, 3rd, x1: numbers and symbols, not words
    rf"|(?P<word>{_LETTER}+(?:['’-]{_LETTER}+)*)"
    r"|(?P<stop>[。！？；…\n]|[.!?;](?=\s|\Z))"
)
_KANA_RE, _HANGUL_RE = re.compile(f"[{_KANA}]"), re.compile(f"[{_HANGUL}]")


@dataclass
class Units:
    """What a span is made of: CJK characters counted by language, and runs of words still to identify."""

    cjk: Counter = field(default_factory=Counter)
    #: (script, words) for each run of consecutive same-script words inside a sentence
    runs: list[tuple[str, list[str]]] = field(default_factory=list)


def strip_excluded(text: str) -> str:
    """``text`` without code, LaTeX and tags (see the module docstring), which are not natural language."""
    return _EXCLUDED.sub(lambda m: "\n" if m.group("block") else " ", text)


def _script(word: str) -> str:
    """The Unicode script of a word's first letter, by its name ("LATIN", "CYRILLIC", "GREEK", ...)."""
    if word[0] < "\u0250":
        return "LATIN"
    return unicodedata.name(word[0], "UNKNOWN").split(" ", 1)[0]


def _count_cjk(sentence: list[str], into: Counter) -> None:
    """Count one sentence's CJK characters by language: kana decides Japanese, Hangul Korean, else Chinese."""
    text = "".join(sentence)
    kana, hangul = len(_KANA_RE.findall(text)), len(_HANGUL_RE.findall(text))
    han = len(text) - kana - hangul
    into["ja"] += kana
    into["ko"] += hangul
    into["ja" if kana else "ko" if hangul else "zh"] += han


def split_units(text: str) -> Units:
    """Cut already-stripped text into CJK characters (counted) and word runs (to identify)."""
    units = Units()
    sentence_cjk: list[str] = []
    run: list[str] = []
    run_script = ""
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "word":
            word = m.group()
            script = _script(word)
            if run and script != run_script:
                units.runs.append((run_script, run))
                run = []
            run_script = script
            run.append(word)
            continue
        if kind == "number":  # neither a unit nor a break: "the 3 roots" stays one run
            continue
        if run:
            units.runs.append((run_script, run))
            run = []
        if kind == "cjk":
            sentence_cjk.append(m.group())
        elif sentence_cjk:  # a sentence ends
            _count_cjk(sentence_cjk, units.cjk)
            sentence_cjk = []
    if run:
        units.runs.append((run_script, run))
    if sentence_cjk:
        _count_cjk(sentence_cjk, units.cjk)
    return units


# --- identifying the language of word runs -------------------------------------------------------------------


#: languages a run of words is identified among (plus the target): those widely written on the web. py3langid
#: knows 140, among them Nigerian Pidgin and Fulfulde, which take short English runs ("hello world" is
#: Fulfulde); a reasoning model drifts into a widely written language, and with this prior 2-word runs are
#: right 76% of the time instead of 66% (docs/language.md)
CANDIDATES = (
    "en es fr de it pt nl ru uk pl cs sk sv da no fi et lv lt hu ro bg sr hr sl el tr az ar fa he hi bn ur id ms "
    "vi th ta te ca eu gl ka hy kk"
).split()
#: py3langid codes that cannot be a target: Han-script languages other than Chinese (their characters count
#: as ``zh``), and "no linguistic content"
NOT_TARGETS = ("yue", "wuu", "zxx")


@functools.lru_cache(maxsize=1)
def _model() -> tuple[Any, frozenset[str]]:
    """py3langid's identifier over all its languages (loaded once, ~0.5 s) and the valid target codes."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("language_consistency needs py3langid: pip install 'py3langid>=0.4,<0.5'") from exc
    start = time.perf_counter()
    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    log.debug("loaded py3langid's model (%d languages) in %.2f s", len(ident.labels), time.perf_counter() - start)
    return ident, frozenset(ident.labels).union(CJK_LANGUAGES).difference(NOT_TARGETS)


@functools.lru_cache(maxsize=32)
def identifier(target: str) -> Any:
    """A py3langid ``LanguageIdentifier`` (``classify(text) -> (code, probability)``) restricted to
    :data:`CANDIDATES` and ``target``. Restricting only rebinds the copy's arrays, the model is shared."""
    ident = copy.copy(_model()[0])
    ident.set_languages(sorted(set(CANDIDATES) | {target}))
    return ident


def known_languages() -> tuple[str, ...]:
    """Every valid target: py3langid's codes (ISO 639-1 where there is one, else 639-3), less :data:`NOT_TARGETS`."""
    return tuple(sorted(_model()[1]))


def normalize_language(code: object) -> str:
    """The language code of ``"en"``, ``"EN"``, ``"en-US"`` or ``"zh_Hans"`` (lower case, region and script
    dropped); ``ValueError`` listing the valid codes for anything else."""
    primary = re.split(r"[-_]", str(code).strip().lower(), maxsplit=1)[0]
    if primary not in _model()[1]:
        raise ValueError(
            f"unknown language {code!r}: expected one of {', '.join(known_languages())} (ISO 639-1, else 639-3; "
            "a region or script suffix such as 'en-US' is ignored). If it came from a code task's `language` "
            "field (a programming language), set the natural language in the reward's config (`language: en`) "
            "or as the task field `target_language`."
        )
    return primary


def word_counts(runs: list[tuple[str, list[str]]], target: str) -> Counter:
    """Words per language. Runs of :data:`MIN_WORDS` or more are identified one by one; a shorter run takes
    the language with most words among its script's long runs, or, when its script has none, the language
    of all its script's short runs joined (so every byte is read by the identifier once)."""
    ident = identifier(target)
    counts: Counter = Counter()
    votes: dict[str, Counter] = {}
    short: dict[str, list[str]] = {}
    for script, words in runs:
        if len(words) >= MIN_WORDS:
            lang = ident.classify(" ".join(words))[0]
            counts[lang] += len(words)
            votes.setdefault(script, Counter())[lang] += len(words)
        else:
            short.setdefault(script, []).extend(words)
    for script, words in short.items():
        if script in votes:
            lang = votes[script].most_common(1)[0][0]
        else:
            lang = ident.classify(" ".join(words)[:MAJORITY_CHARS])[0]
        counts[lang] += len(words)
    return counts


# --- the reward ---------------------------------------------------------------------------------------------


def language_shares(text: str, target: str) -> tuple[int, int]:
    """``(units in target, all units)`` of a text, after the exclusions (the reward's numerator and
    denominator). A CJK target skips identification: no run of words can be Chinese, Japanese or Korean."""
    units = split_units(strip_excluded(text))
    words = sum(len(w) for _, w in units.runs)
    total = words + sum(units.cjk.values())
    if target in CJK_LANGUAGES:
        return units.cjk[target], total
    if not units.runs:
        return 0, total
    return word_counts(units.runs, target)[target], total


def language_consistency(
    completion: str,
    *,
    language: str = "en",
    target_language: str | None = None,
    span: str = "think",
    unmeasured: float | None = None,
) -> float:
    """Share of the completion's units (words; characters in CJK) written in the target language, 0..1.

    The target is the task's ``target_language`` field when the task has one, else ``language`` (the
    reward's config, default English). ``span`` is ``"think"`` (the chain of thought, as R1) or ``"all"``.
    Code, LaTeX, numbers, punctuation and symbols count neither way. When there is nothing to measure (no
    think block, or no words left) the completion is unscorable, unless ``unmeasured`` gives a score for that.

    >>> language_consistency("hello world 你好", span="all")  # 2 English words, 2 Chinese characters
    0.5
    >>> language_consistency("<think>我们先算 $x^2$ 的值。</think><answer>4</answer>", language="zh")
    1.0
    """
    if span not in SPANS:
        raise ValueError(f"span must be one of {SPANS}, got {span!r}")
    target = normalize_language(target_language if target_language is not None else language)
    text = think_text(completion) if span == "think" else completion
    if text is None:
        return _unmeasured(unmeasured, "no <think> block to measure (span='think'); use span='all' to score the whole completion")
    hits, total = language_shares(text, target)
    if total == 0:
        return _unmeasured(unmeasured, f"no words left in the {span} span after removing code, math and numbers")
    return hits / total


def _unmeasured(value: float | None, reason: str) -> float:
    if value is None:
        raise Unscorable(reason)
    return float(value)

"""Built-in plugin: the ``language_consistency`` reward (DeepSeek-R1's language-consistency reward).

The share of the chain of thought (``span="think"``) or of the whole completion (``span="all"``) written in
the target language: words for space-separated scripts, characters for Chinese, Japanese and Korean, with
code, LaTeX, numbers and punctuation left out. The target is the task's ``target_language`` field, else the
reward's ``language`` parameter. Language identification is py3langid's, loaded on the first score, never
at import. Module: :mod:`.consistency`; guide: docs/language.md.
"""

from __future__ import annotations

from r1gym.core.hookspecs import hookimpl


@hookimpl
def r1gym_register_rewards(register) -> None:
    from r1gym.plugins.language.consistency import language_consistency

    register(
        "language_consistency",
        language_consistency,
        description="share of the chain of thought's words (CJK: characters) in the target language, code and math excluded",
    )

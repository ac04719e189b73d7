"""Data generation for cold start, rejection sampling and distillation: what is kept, dropped and rewritten."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from r1gym.core.datagen import _select, filter_reason, load_examples, rewrite, split_reasoning
from r1gym.core.rewards import Unscorable
from r1gym.core.rollout import Episode
from r1gym.envs.base import Task

FILTERS = SimpleNamespace(code_blocks=True, max_paragraph_chars=60, min_language_consistency=0.9, language="en")


def test_reasoning_and_summary_are_split_and_rewritten_readably():
    text = "<think>First, 2 + 2.\n\n\n\nWait, check: 4.  </think>  The answer is <answer>4</answer>."
    assert split_reasoning(text) == ("First, 2 + 2.\n\n\n\nWait, check: 4.", "The answer is <answer>4</answer>.")
    assert rewrite(text) == "<think>\nFirst, 2 + 2.\n\nWait, check: 4.\n</think>\n\nThe answer is <answer>4</answer>."
    assert rewrite("no reasoning at all") is None and rewrite("<think>only thoughts</think>") is None
    assert split_reasoning("2 + 2 = 4 </think> 4") == ("2 + 2 = 4", "4")  # the template wrote <think>


def test_each_filter_drops_what_it_names():
    english = lambda text: 1.0  # noqa: E731 -- stand-ins for the language_consistency reward
    mixed = lambda text: 0.5  # noqa: E731
    assert filter_reason("<think>ok</think> 4", FILTERS, english) is None
    assert filter_reason("<think>```python\nprint(4)\n```</think> 4", FILTERS, english) == "code_block"
    assert filter_reason("<think>" + "x" * 61 + "</think> 4", FILTERS, english) == "long_paragraph"
    assert filter_reason("<think>ok</think> 4", FILTERS, mixed) == "mixed_language"
    off = SimpleNamespace(code_blocks=False, max_paragraph_chars=None, min_language_consistency=None, language="en")
    assert filter_reason("<think>```x```" + "y" * 99 + "</think>", off, mixed) is None


class _Tok:
    def decode(self, ids, skip_special_tokens=True):
        return TEXTS[ids[0]]


TEXTS = ["<think>3 + 4 = 7</think> <answer>7</answer>",      # right
         "<think>3 + 4 = 8</think> <answer>8</answer>",      # wrong
         "<think>3 + 4 = 7, 所以答案是七</think> <answer>7</answer>",  # right, mixed languages
         "<think>3 + 4 is seven</think> <answer>seven</answer>"]  # the rule cannot score it


def _episode(i: int, value: float | None, truncated: bool = False) -> Episode:
    return Episode(group=0, task_index=0, prompt_ids=[1], completion_ids=[i], completion_mask=[1],
                   rewards={"arithmetic": value}, truncated=truncated,
                   messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "shot"},
                             {"role": "assistant", "content": "shot answer"}, {"role": "user", "content": "What is 3 + 4?"}])


def test_select_keeps_verified_samples_drops_the_rest_per_reason_and_asks_the_judge_where_no_rule_applies():
    source = [Task("t0", "What is 3 + 4?", {"answer": "7"})]
    s = SimpleNamespace(keep="correct", keep_per_prompt=2, rewrite=False, filters=FILTERS)
    judged = []

    def judge(text, fields):
        judged.append(text)
        return 1.0 if "seven" in text and fields["answer"] == "7" else 0.0

    language = lambda text: 0.6 if "所以" in text else 1.0  # noqa: E731
    episodes = [_episode(0, 1.0), _episode(1, 0.0), _episode(2, 1.0), _episode(3, None), _episode(0, 1.0, truncated=True)]
    records, counts = _select(episodes, source, _Tok(), "arithmetic", judge, s, language)
    assert [r["messages"][-1]["content"] for r in records] == [TEXTS[0], TEXTS[3]]
    assert [r["verified_by"] for r in records] == ["rule", "judge"] and judged == [TEXTS[3]]
    # the few-shot turns that elicited the answer are not in the SFT record
    assert records[0]["messages"][:2] == [{"role": "system", "content": "S"}, {"role": "user", "content": "What is 3 + 4?"}]
    assert dict(counts) == {"samples": 5, "kept": 2, "dropped/incorrect": 1, "dropped/mixed_language": 1,
                            "dropped/truncated": 1}

    def broken_judge(text, fields):
        raise Unscorable("judge reply had no verdict")

    _, counts = _select([_episode(3, None)], source, _Tok(), "arithmetic", broken_judge, s, language)
    assert counts["dropped/unscorable"] == 1 and counts["kept"] == 0
    s.keep_per_prompt = 1
    records, counts = _select([_episode(0, 1.0), _episode(0, 1.0)], source, _Tok(), "arithmetic", None, s, language)
    assert len(records) == 1 and counts["dropped/over_keep_per_prompt"] == 1


def test_examples_files_are_checked(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "hi", "completion": "hello"}) + "\n")
    assert load_examples(str(good)) == [{"messages": [{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "hello"}]}]
    assert len(load_examples("pkg://r1gym.envs/data/non_reasoning_sample.jsonl")) == 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "hi"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: a record needs 'messages'"):
        load_examples(str(bad))

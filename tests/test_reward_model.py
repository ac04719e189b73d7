"""``reward_model`` with a tiny reward model built and trained here (a 1-layer Llama that learned to prefer
polite to rude text, saved with ``save_pretrained``): loads from a folder, scores the span the config names,
batches calls from many threads, and says what is wrong with a bad folder or label."""

from __future__ import annotations

import random
import threading

import pytest

POLITE = ["thank you", "please", "glad to help", "happy to explain", "kind regards", "you are welcome"]
RUDE = ["idiot", "stupid question", "shut up", "useless", "go away", "i hate this"]
FILLER = ["the answer is 4", "we add the numbers", "first compute the sum", "so the result follows", "here it is"]


def sentence(rng: random.Random, words: list[str]) -> str:
    parts = [rng.choice(FILLER), rng.choice(words), rng.choice(FILLER)]
    rng.shuffle(parts)
    return ", ".join(parts) + "."


@pytest.fixture(scope="module")
def rm_folder(tmp_path_factory):
    """Build and train the tiny reward model once (a few seconds on the CPU) and save it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from r1gym.core.models import resolve_model_path

    folder = tmp_path_factory.mktemp("tiny-rm")
    tok = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
    tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    model = LlamaForSequenceClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(150):
        good = [sentence(rng, POLITE) for _ in range(8)]
        bad = [sentence(rng, RUDE) for _ in range(8)]
        enc = tok(good + bad, padding=True, return_tensors="pt")
        scores = model(**enc).logits[:, 0]
        loss = -torch.nn.functional.logsigmoid(scores[:8] - scores[8:]).mean()  # Bradley-Terry pairs
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_the_reward_model_prefers_what_it_was_trained_to_prefer(rm_folder):
    from r1gym.plugins.reward_model.model import reward_model

    rng = random.Random(123)  # sentences it has not seen
    good = [reward_model(sentence(rng, POLITE), model=rm_folder, span="all") for _ in range(10)]
    bad = [reward_model(sentence(rng, RUDE), model=rm_folder, span="all") for _ in range(10)]
    assert min(good) > max(bad)
    p = reward_model("thank you, the answer is 4.", model=rm_folder, span="all", normalize="sigmoid")
    assert 0.5 < p < 1.0


def test_helpfulness_looks_at_the_summary_harmlessness_at_everything(rm_folder):
    from r1gym.plugins.reward_model.model import reward_model

    summary = "thank you, the answer is 4."
    rude_thoughts = f"<think>stupid question, shut up, i hate this</think> {summary}"
    kind_thoughts = f"<think>glad to help, please, kind regards</think> {summary}"
    # the summary is all the helpfulness model sees: the thoughts do not change it
    assert reward_model(rude_thoughts, model=rm_folder, span="summary") == pytest.approx(
        reward_model(summary, model=rm_folder, span="all"), abs=1e-5)
    # the whole response, reasoning included, for harmlessness
    assert reward_model(rude_thoughts, model=rm_folder, span="all") < reward_model(kind_thoughts, model=rm_folder, span="all")


def test_calls_from_reward_threads_are_batched_and_match_one_by_one(rm_folder):
    from r1gym.plugins.reward_model.model import _scorer, reward_model

    rng = random.Random(7)
    texts = [sentence(rng, POLITE if i % 2 else RUDE) for i in range(12)]
    alone = [reward_model(t, model=rm_folder, span="all") for t in texts]
    _, batcher = _scorer(rm_folder, None, 1024, 16, "float32")
    before = batcher.batches
    together: list[float] = [0.0] * len(texts)

    def score(i: int) -> None:
        together[i] = reward_model(texts[i], model=rm_folder, span="all")

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == pytest.approx(alone, abs=1e-4)  # padding in a batch changes nothing
    assert batcher.batches - before < len(texts)


def test_it_is_a_registered_reward_usable_in_an_env(rm_folder):
    from r1gym.envs import make

    env = make("r1gym/Math-v0", rewards={"math_accuracy": 1.0, "reward_model": {"weight": 0.5, "model": rm_folder}})
    env.reset(options={"index": 0})
    completion = "<think>hmm</think> thank you. <answer>0</answer>"
    _, reward, _, _, info = env.step(completion)
    from r1gym.plugins.reward_model.model import _scorer, reward_model

    # the env's component is the reward model's own score of the completion, with the config's defaults
    assert info["rewards"]["reward_model"] == pytest.approx(reward_model(completion, model=rm_folder), abs=1e-5)
    assert info["rewards"]["math_accuracy"] == 0.0  # the first problem's answer is not 0
    assert reward == pytest.approx(0.5 * info["rewards"]["reward_model"])  # weighted as the config says

    rm, _ = _scorer(rm_folder, None, 1024, 16, "float32")  # a question makes it a chat, as RMs are trained
    chat = rm.render("thank you.", "What is 2 + 2?", chat_template=True)
    assert chat != "thank you." and chat.index("What is 2 + 2?") < chat.index("thank you.")
    assert rm.render("thank you.", "What is 2 + 2?", chat_template=False) == "thank you."


def test_bad_folders_labels_and_options_say_what_is_wrong(rm_folder, tmp_path):
    from r1gym.plugins.reward_model.model import reward_model

    with pytest.raises(FileNotFoundError, match="no config.json"):
        reward_model("x", model=str(tmp_path))
    with pytest.raises(ValueError, match="label=3 but .* has 1 labels"):
        reward_model("x", model=rm_folder, label=3)
    with pytest.raises(ValueError, match="normalize must be one of none, sigmoid"):
        reward_model("x", model=rm_folder, normalize="softmax")

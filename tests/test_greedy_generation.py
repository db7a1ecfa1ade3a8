"""Greedy generation that drops finished rows (rv_merge.evaluate.greedy_generation) gives the
tokens and texts of transformers' `generate`, and really computes fewer rows."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from rv_merge.evaluate.greedy_generation import generate_greedy

PROMPTS = ["Ana has 3 apples", "Bo buys 12 books and gives 5 of them away. How many", "Chen",
           "Dara has 7 coins and 9 stamps", "Eli reads 4 pages", "Femi has 80 marbles and 2 friends"]
NEW = 16


@pytest.fixture(scope="module")
def setup(toy):
    """A small random model whose greedy outputs vary (the toy trio's repeat one token), with
    the toy trio's tokenizer, and the prompts as a left-padded batch."""
    tokenizer = AutoTokenizer.from_pretrained(toy["sft"])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=False, initializer_range=0.3)).eval()
    tokenizer.padding_side = "left"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    return model, tokenizer, batch


def _rows_per_forward(model):
    """Record the batch size of every forward pass."""
    sizes = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kwargs: sizes.append(kwargs["input_ids"].shape[0]),
                                             with_kwargs=True)
    return sizes, handle


def _stop_token(free: torch.Tensor, prompt_length: int) -> int:
    """A token that ends rows at different steps and is missing from at least one row."""
    generated = free[:, prompt_length:].tolist()
    best, best_steps = None, set()
    for token in {t for row in generated for t in row}:
        firsts = {row.index(token) for row in generated if token in row}
        if any(token not in row for row in generated) and len(firsts) > len(best_steps):
            best, best_steps = token, firsts
    assert best is not None and len(best_steps) >= 2, "the toy model's outputs cannot exercise row dropping"
    return best


def test_rows_ended_by_a_token_match_generate_and_are_dropped(setup):
    model, tokenizer, batch = setup
    pad = tokenizer.pad_token_id
    free = model.generate(**batch, max_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=pad)
    stop = _stop_token(free, batch["input_ids"].shape[1])
    reference = model.generate(**batch, max_new_tokens=NEW, do_sample=False, eos_token_id=stop, pad_token_id=pad)
    sizes, handle = _rows_per_forward(model)
    ours = generate_greedy(model, batch["input_ids"], batch["attention_mask"], NEW, {stop}, [],
                           tokenizer.decode, pad)
    handle.remove()
    assert torch.equal(ours, reference)
    assert sizes[0] == len(PROMPTS) and min(sizes) < len(PROMPTS)  # finished rows were not computed on
    assert sum(sizes) < len(PROMPTS) * len(sizes)


def test_rows_ended_by_a_stop_string_give_generates_text_up_to_it(setup):
    model, tokenizer, batch = setup
    pad, prompt_length = tokenizer.pad_token_id, batch["input_ids"].shape[1]
    free = model.generate(**batch, max_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=pad)
    stop_text = tokenizer.decode([_stop_token(free, prompt_length)])
    ours = generate_greedy(model, batch["input_ids"], batch["attention_mask"], NEW, set(), [stop_text],
                           tokenizer.decode, pad)
    assert torch.equal(ours[:, :prompt_length], batch["input_ids"])
    stopped = 0
    for mine, theirs in zip(ours[:, prompt_length:].tolist(), free[:, prompt_length:].tolist()):
        text, reference = tokenizer.decode(mine), tokenizer.decode(theirs)
        if stop_text in reference:
            stopped += 1
            assert text.split(stop_text)[0] == reference.split(stop_text)[0]
            assert text.rstrip(tokenizer.decode([pad])).endswith(stop_text)  # nothing computed after it
        else:
            assert mine == theirs
    assert 0 < stopped < len(PROMPTS)


def test_no_row_ends_early_gives_generates_tokens(setup):
    model, tokenizer, batch = setup
    pad = tokenizer.pad_token_id
    reference = model.generate(**batch, max_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=pad)
    ours = generate_greedy(model, batch["input_ids"], batch["attention_mask"], NEW, set(), [], tokenizer.decode, pad)
    assert torch.equal(ours, reference)

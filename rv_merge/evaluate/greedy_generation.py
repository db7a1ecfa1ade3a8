"""Greedy generation that stops computing a row once the row is finished.

`transformers`' `generate` keeps every row of a batch in every forward pass until the last
row stops: rows that already gave their answer go on being computed, their tokens thrown
away. On the demo's word problems most answers end long before the longest one, so most of
a batch's decoding work is wasted. `generate_greedy` drops a row (and its slice of the KV
cache) as soon as it emits an end-of-sequence token or one of the stop strings appears in
its text; the rows left run on as a smaller batch. Each forward pass is prepared by the
model's own `prepare_inputs_for_generation`, as `generate` prepares it, and the next token
is the argmax of the float32 logits, as in `generate`'s greedy search: the text up to each
row's stop is the same as `generate`'s (tested), and lm-eval cuts the text there.

`RowDroppingHFLM` is lm-eval's `hf` model with this loop for greedy requests; sampled
requests and encoder-decoder models go through `generate` unchanged.
"""

from __future__ import annotations

import inspect

import torch
from lm_eval.models.huggingface import HFLM
from transformers import DynamicCache

# Part of every result's cache key (result_cache.computed_with): a change to how tokens are
# chosen or when a row stops must change this name.
GENERATION_METHOD = "greedy, finished rows dropped (rv_merge.evaluate.greedy_generation v1)"


@torch.no_grad()
def generate_greedy(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    max_new_tokens: int, eos_token_ids: set[int], stop_strings: list[str], decode,
                    pad_token_id: int) -> torch.Tensor:
    """[batch, prompt + new] like `generate`: left-padded prompts, then each row's tokens up
    to and including the one that finished it, then `pad_token_id`. `decode` turns a list of
    token ids into text (the stop strings are looked for in the text of the new tokens)."""
    batch = input_ids.shape[0]
    new_tokens = torch.full((batch, max_new_tokens), pad_token_id, dtype=input_ids.dtype, device=input_ids.device)
    rows = torch.arange(batch, device=input_ids.device)  # the original row of each live row
    mask = attention_mask
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate sets them
    cache = DynamicCache(config=model.config)
    # the forward argument is `cache` in recent transformers (5.25 here), `past_key_values` before
    cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    step_input = input_ids
    generated: list[list[int]] = [[] for _ in range(batch)]
    steps = 0
    while steps < max_new_tokens:
        logits = model(input_ids=step_input, attention_mask=mask, position_ids=positions, use_cache=True,
                       logits_to_keep=1, **{cache_argument: cache}).logits
        if cache.get_seq_length() != mask.shape[1]:  # a model that ignored the cache would decode garbage
            raise RuntimeError(f"{type(model).__name__} did not fill the KV cache: use plain generate for it")
        chosen = logits[:, -1, :].to(dtype=torch.float32).argmax(dim=-1)
        new_tokens[rows, steps] = chosen
        steps += 1
        live = []
        for index, (row, token) in enumerate(zip(rows.tolist(), chosen.tolist())):
            generated[row].append(token)
            stopped = token in eos_token_ids or any(s in decode(generated[row]) for s in stop_strings)
            if not stopped:
                live.append(index)
        if not live:
            break
        if len(live) < len(rows):
            keep = torch.tensor(live, device=rows.device)
            cache.batch_select_indices(keep)
            rows, chosen, mask, positions = rows[keep], chosen[keep], mask[keep], positions[keep]
        step_input = chosen[:, None]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        positions = positions[:, -1:] + 1
    return torch.cat([input_ids, new_tokens[:, :steps]], dim=1)


class RowDroppingHFLM(HFLM):
    """lm-eval's `hf` model; greedy requests of a causal model use `generate_greedy`."""

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        attention_mask = generation_kwargs.pop("attention_mask", None)
        greedy = (generation_kwargs.get("do_sample") in (None, False)
                  and generation_kwargs.get("temperature", 0.0) == 0.0
                  and set(generation_kwargs) <= {"do_sample", "temperature"})
        if not greedy or self.backend != "causal" or self.mixed_precision_dtype is not None:
            if attention_mask is not None:
                generation_kwargs["attention_mask"] = attention_mask
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(context)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        return generate_greedy(self.model, context, attention_mask, max_length - context.shape[1], eos_ids,
                               list(stop), lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False),
                               self.tokenizer.pad_token_id)

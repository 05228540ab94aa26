"""Sampling text from a language model: temperature, top-k and top-p, seeded and streamed."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]  # (1, T) ids -> (1, T, V) logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """One token id from the logits (V,) of the last position."""
    logits = logits.float() / max(temperature, 1e-6)
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def crop_prompt(ids: list[int], context: int) -> list[int]:
    """The last ``context`` ids of a prompt, with a warning when anything is cut."""
    if len(ids) > context:
        warnings.warn(
            f"the prompt is {len(ids)} tokens, longer than the model's context of "
            f"{context}: only its last {context} tokens are used",
            stacklevel=3,
        )
        return ids[-context:]
    return ids


@torch.no_grad()
def generate(
    forward: Forward,
    prompt: list[int],
    max_new_tokens: int,
    context: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    fixed_length: bool = False,
) -> Iterator[int]:
    """Yield new token ids one at a time, feeding the last ``context`` ids back each step.

    ``fixed_length`` pads the window on the right to exactly ``context`` (for a model exported
    with a fixed length); a causal model's logits at earlier positions ignore the padding.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = crop_prompt(list(prompt), context) or [0]
    for _ in range(max_new_tokens):
        window = ids[-context:]
        x = torch.tensor(window + [0] * (context - len(window)) if fixed_length else window)
        logits = forward(x[None])[0, len(window) - 1]  # (V,) at the last real position
        token = sample_next(logits, temperature, top_k, top_p, generator)
        ids.append(token)
        yield token

"""The learnable background prompts of SemPLES (Contrastive Prompt Learning).

Each class k owns a prompt ``[SOT] a photo of [p_k,1 .. p_k,L] . [EOT]`` whose L context vectors
replace word embeddings and go through CLIP's own text path, so a learned prompt is read exactly
as a sentence would be; only the context vectors are trained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semples.clip.model import FrozenClip


class PromptLearner(nn.Module):
    """``num_prompts`` prompts of ``length`` learnable context vectors each (uniform [0, 1) init,
    as the reference code does). Its ``state_dict`` holds only ``context``: CLIP is held by
    reference, not as a submodule, so saved prompts are a small file and optimisers see only
    the prompts."""

    def __init__(
        self,
        clip: FrozenClip,
        num_prompts: int,
        length: int = 30,
        prefix: str = "a photo of",
        suffix: str = ".",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_prompts < 1 or length < 1:
            raise ValueError(f"need num_prompts >= 1 and length >= 1, got {num_prompts}, {length}")
        self.__dict__["clip"] = clip  # bypasses nn.Module registration on purpose (see class doc)
        self.num_prompts = num_prompts
        self.length = length
        ids, start, eot = prompt_token_ids(clip, length, prefix, suffix)
        with torch.no_grad():
            words = clip.model.token_embedding(ids.to(clip.device))
        self.register_buffer("head", words[:start].clone(), persistent=False)
        self.register_buffer("tail", words[start + length :].clone(), persistent=False)
        self.register_buffer(
            "eot_position", torch.tensor(eot, device=clip.device), persistent=False
        )
        shape = (num_prompts, length, clip.text_width)
        self.context = nn.Parameter(torch.rand(shape, generator=generator).to(clip.device))

    def forward(self, indices: Tensor | None = None) -> Tensor:
        """Text features [K', D] of all prompts, or of those at ``indices`` (u_b of the paper)."""
        context = self.context if indices is None else self.context[indices]
        count = context.shape[0]
        embeddings = torch.cat(
            [self.head.expand(count, -1, -1), context, self.tail.expand(count, -1, -1)], dim=1
        )
        return self.clip.encode_token_embeddings(embeddings, self.eot_position.expand(count))

    def set_context(self, context: Tensor) -> None:
        """Overwrite the context vectors in place (tests, hand-written prompts, resuming)."""
        if context.shape != self.context.shape:
            raise ValueError(
                f"context must be {tuple(self.context.shape)}, got {tuple(context.shape)}"
            )
        with torch.no_grad():
            self.context.copy_(context)


def prompt_token_ids(
    clip: FrozenClip, length: int, prefix: str, suffix: str
) -> tuple[Tensor, int, int]:
    """Token ids [context_length] of ``[SOT] prefix <length placeholders> suffix [EOT] <pad>``,
    the first placeholder position and the EOT position.

    Prefix and suffix are encoded separately; CLIP's BPE tokenizes word by word, so this equals
    tokenizing the joined sentence whenever the suffix starts a new word (as "." does). The
    placeholders hold the padding id; their embeddings are replaced by the context vectors.
    """
    tokenizer = clip.tokenizer
    if not all(hasattr(tokenizer, name) for name in ("encode", "sot_token_id", "eot_token_id")):
        raise TypeError(
            f"{clip.name}: prompt learning needs open_clip's SimpleTokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    prefix_ids = tokenizer.encode(prefix)
    ids = [tokenizer.sot_token_id, *prefix_ids, *[0] * length, *tokenizer.encode(suffix)]
    ids.append(tokenizer.eot_token_id)
    if len(ids) > clip.context_length:
        raise ValueError(
            f"a prompt of {len(ids)} tokens (length {length}) does not fit "
            f"{clip.name}'s context length {clip.context_length}"
        )
    padded = torch.zeros(clip.context_length, dtype=torch.long)
    padded[: len(ids)] = torch.tensor(ids)
    return padded, 1 + len(prefix_ids), len(ids) - 1

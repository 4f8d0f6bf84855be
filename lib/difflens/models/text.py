"""Text conditioning: prompt encoding, the prompt-embedding cache and the character tokenizer.

SD conditions its U-Net on the last hidden states of a CLIP text encoder for a prompt
padded to 77 tokens (``encode_prompt``). The built-in models (tiny, toy) use a tiny CLIP
text model (:func:`character_text_config`) over a character-level CLIP tokenizer
(:func:`write_character_tokenizer`), since CLIP's BPE vocabulary cannot be downloaded
offline; prompts still become 77 token embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTokenizer

_PRINTABLE = [chr(i) for i in range(33, 127)]
CHARACTER_VOCAB_SIZE = 2 * len(_PRINTABLE) + 2
"""Size of the character tokenizer's vocabulary: each printable character, its word-final
form, and the start and end tokens (the last two ids)."""


@torch.no_grad()
def encode_prompt(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    prompt: str,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The text encoder's last hidden states for ``prompt``, as SD's pipelines compute them.

    Args:
        tokenizer: a CLIP tokenizer; the prompt is padded (and truncated) to its
            ``model_max_length`` (77 for SD).
        text_encoder: a ``CLIPTextModel``.
        prompt: the text (``""`` gives the unconditional embedding).
        device: where to put the token ids (the text encoder's device).

    Returns:
        ``(1, tokens, width)`` tensor on the text encoder's device and dtype.
    """
    ids = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return text_encoder(ids.to(device) if device is not None else ids)[0]


class PromptCache:
    """Text embeddings per prompt, each computed once: the one prompt-embedding cache.

    Feature extraction and the toy model's training both condition on a handful of
    prompts many times; this keeps one ``(1, tokens, width)`` tensor per (prompt, device,
    dtype).

    Args:
        tokenizer: a CLIP tokenizer, or ``None`` for a model without text conditioning.
        text_encoder: a ``CLIPTextModel``, or ``None``.
        width: the cross-attention width; used without a text encoder, when every prompt
            embeds as a single zero token of this width.

    Raises:
        ValueError: neither a text encoder nor a width is given.
    """

    def __init__(
        self,
        tokenizer: CLIPTokenizer | None,
        text_encoder: CLIPTextModel | None,
        width: int | None = None,
    ):
        if (tokenizer is None or text_encoder is None) and width is None:
            raise ValueError("PromptCache needs a tokenizer and text encoder, or a width")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.width = width
        self._cache: dict[tuple, torch.Tensor] = {}

    def embedding(
        self,
        prompt: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The embedding of one prompt.

        Args:
            prompt: the text.
            device: where the result lives (default: the text encoder's device, else CPU).
            dtype: its dtype (default: the text encoder's, else float32).

        Returns:
            ``(1, tokens, width)`` tensor; ``(1, 1, width)`` zeros without a text encoder.
        """
        key = (prompt, str(device), dtype)
        if key not in self._cache:
            if self.text_encoder is None or self.tokenizer is None:
                hidden = torch.zeros(1, 1, int(self.width))
            else:
                encoder_device = next(self.text_encoder.parameters()).device
                hidden = encode_prompt(self.tokenizer, self.text_encoder, prompt, encoder_device)
            self._cache[key] = hidden.to(
                device=device if device is not None else hidden.device,
                dtype=dtype if dtype is not None else hidden.dtype,
            )
        return self._cache[key]

    def __call__(
        self,
        prompts: Sequence[str],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The embeddings of several prompts, stacked.

        Args:
            prompts: one prompt per batch row.
            device: as in :meth:`embedding`.
            dtype: as in :meth:`embedding`.

        Returns:
            ``(len(prompts), tokens, width)`` tensor on ``device`` in ``dtype``.

        Raises:
            ValueError: the prompts embed to different lengths (a tokenizer without
                padding).
        """
        rows = [self.embedding(p, device, dtype) for p in prompts]
        if len({r.shape for r in rows}) > 1:
            raise ValueError("prompts give text embeddings of different lengths")
        return torch.cat(rows)


def character_text_config(max_length: int = 77) -> dict:
    """The tiny CLIP text model of the built-in models, over the character tokenizer.

    Args:
        max_length: the longest prompt in tokens (77, as SD).

    Returns:
        Keyword arguments of ``transformers.CLIPTextConfig``: width 64, 2 layers, 4 heads.
    """
    return dict(
        vocab_size=CHARACTER_VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_length,
        bos_token_id=CHARACTER_VOCAB_SIZE - 2,
        eos_token_id=CHARACTER_VOCAB_SIZE - 1,
        pad_token_id=CHARACTER_VOCAB_SIZE - 1,
    )


def write_character_tokenizer(folder: Path) -> None:
    """Save a CLIP tokenizer whose vocabulary is single printable characters (no merges).

    Args:
        folder: where ``save_pretrained`` writes the tokenizer (created if missing).
    """
    from transformers import CLIPTokenizer

    vocab = {ch: i for i, ch in enumerate(_PRINTABLE)}
    vocab.update({ch + "</w>": i + len(_PRINTABLE) for i, ch in enumerate(_PRINTABLE)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    raw = Path(folder) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)

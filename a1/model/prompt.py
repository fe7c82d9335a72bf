"""Tokenizers and the understanding expert's token layout.

A pretrained backbone brings its own tokenizer (loaded from its folder). Random-init tiny
configs use a byte-level tokenizer built here in memory — 256 byte tokens plus the special
tokens both backbones need — so nothing is downloaded.

The understanding sequence of one sample is, for every view v:
``<start_v> <image>×n <end_v>`` followed by the instruction tokens (right-padded). Qwen3-VL
wraps images in ``<|vision_start|> … <|vision_end|>`` around ``<|image_pad|>``; InternVL in
``<img> … </img>`` around ``<IMG_CONTEXT>``.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

#: (start, image placeholder, end) tokens of each family.
IMAGE_TOKENS: dict[str, tuple[str, str, str]] = {
    "qwen3_vl": ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
    "internvl": ("<img>", "<IMG_CONTEXT>", "</img>"),
}
PAD_TOKEN = "<|endoftext|>"
_SPECIALS = [PAD_TOKEN, "<|video_pad|>"] + [t for toks in IMAGE_TOKENS.values() for t in toks]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A deterministic byte-level tokenizer (ids 0–255 = bytes, then the special tokens)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD_TOKEN)
    fast.add_special_tokens({"additional_special_tokens": _SPECIALS[1:]})
    return fast


def load_tokenizer(pretrained: str | None) -> PreTrainedTokenizerBase:
    """The pretrained backbone's tokenizer, or the local byte tokenizer when ``None``."""
    if pretrained is None:
        return byte_tokenizer()
    tok = AutoTokenizer.from_pretrained(pretrained)
    if tok.pad_token is None:
        tok.pad_token = PAD_TOKEN if PAD_TOKEN in tok.get_vocab() else tok.eos_token
    return tok


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_tokens: int
) -> tuple[Tensor, Tensor]:
    """Instructions → ((B, max_tokens) int64 ids, (B, max_tokens) bool mask), right-padded."""
    enc = tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_tokens,
        add_special_tokens=False,
        return_tensors="pt",
    )
    return enc["input_ids"].long(), enc["attention_mask"].bool()


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """Id of a special token; a clear error when the tokenizer lacks it."""
    idx = tokenizer.convert_tokens_to_ids(token)
    if idx is None or idx == tokenizer.unk_token_id:
        raise KeyError(f"tokenizer has no token {token!r}")
    return int(idx)


def image_layout(
    tokenizer: PreTrainedTokenizerBase, family: str, num_views: int, tokens_per_image: int
) -> tuple[Tensor, Tensor]:
    """The image part of the understanding sequence, identical for every sample.

    Returns:
        ids: (Li,) int64 token ids of ``num_views`` × (start, image×n, end).
        view: (Li,) int64 view index of each token.
    """
    start, image, end = (token_id(tokenizer, t) for t in IMAGE_TOKENS[family])
    one = [start] + [image] * tokens_per_image + [end]
    ids = torch.tensor(one * num_views, dtype=torch.long)
    view = torch.arange(num_views).repeat_interleave(len(one))
    return ids, view

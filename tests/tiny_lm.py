"""A tiny random causal LM with SID tokens, for tests (no download).

``tiny_lm(codebook_sizes)`` returns a randomly initialised Qwen2 (a few hundred thousand parameters)
and a word-level ``PreTrainedTokenizerFast`` whose vocabulary holds a few plain words, ``[PAD]``,
``[EOS]`` and every SID token ``<a_0>`` ... as normal added tokens, the same contract as an SFT
checkpoint. ``save_tiny_lm`` writes both as a Hugging Face folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

WORDS = ["user", "bought", "next", "item", "is", ":", ","]


def tiny_tokenizer(codebook_sizes: Sequence[int]):
    """Word-level tokenizer: [PAD]=0, [UNK]=1, [EOS]=2, WORDS, then the SID tokens."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    from ray_rec.sid.tokens import vocabulary

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]", *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    tok.add_tokens(vocabulary(codebook_sizes))
    return tok


def tiny_lm(codebook_sizes: Sequence[int], hidden: int = 32, layers: int = 2, seed: int = 0):
    """(model, tokenizer): a random Qwen2ForCausalLM sized to the tokenizer, in eval mode."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer(codebook_sizes)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(config).eval()
    return model, tok


def save_tiny_lm(path: str | Path, codebook_sizes: Sequence[int], **kwargs) -> Path:
    """Write a tiny random model and its tokenizer as a Hugging Face folder at ``path``."""
    model, tok = tiny_lm(codebook_sizes, **kwargs)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)

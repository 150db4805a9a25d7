"""The config section of the causal LM and its tokenizer, shared by every stage that builds or loads one.

:class:`ModelSection` is ``SFTConfig.model`` (``--set model.hidden_size=256``); it lives beside the
builders in :mod:`ray_rec.lm.model` so that a stage can build a model without the SFT stage's config.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_rec.config import ConfigError, option


@dataclass(frozen=True)
class ModelSection:
    """The causal LM and its tokenizer."""

    path: str = option("", help="local Hugging Face causal-LM folder (e.g. a Qwen2.5 checkpoint); empty = build a "
                                "small random Qwen2 from the sizes below with a BPE tokenizer trained on the catalogue")
    hidden_size: int = option(128, help="built model: hidden width")
    num_layers: int = option(2, help="built model: transformer blocks")
    num_heads: int = option(4, help="built model: attention heads (must divide hidden_size)")
    num_kv_heads: int = option(2, help="built model: key/value heads (must divide num_heads)")
    intermediate_size: int = option(0, help="built model: MLP width; 0 = 4 x hidden_size")
    max_positions: int = option(1024, help="built model: longest sequence in tokens")
    tie_embeddings: bool = option(True, help="built model: share the input embedding and the output head")
    bpe_vocab_size: int = option(2000, help="built model: BPE vocabulary size trained on the catalogue text "
                                            "(before the SID tokens are added)")
    freeze_base: bool = option(False, help="train only the new SID token rows of the embedding and output head; "
                                           "every other parameter stays as loaded")
    dropout: float = option(0.0, help="training-time dropout on the token embeddings and on every block's attention "
                                      "and MLP output (and, for a built model, on the attention weights); "
                                      "0.1-0.3 keeps a small model from overfitting a small catalogue")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "max_positions", "bpe_vocab_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model.num_heads ({self.num_heads}) must divide model.hidden_size "
                              f"({self.hidden_size}) and model.num_kv_heads ({self.num_kv_heads}) must divide "
                              "num_heads; pick e.g. hidden_size=128, num_heads=4, num_kv_heads=2")

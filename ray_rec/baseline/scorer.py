"""A trained SASRec loaded once and asked for next-item probabilities: what the other stages use it for.

Two readers share this class, so both see the same model the same way:

* GRPO's collaborative reward (``grpo.cf_weight``): the probability of each catalogue item coming next
  after a user's history, :meth:`SASRecScorer.__call__`;
* SFT's distillation teacher (``distill.weight``, :mod:`ray_rec.train.distill`): the probability of the
  next item at *every* position of a sequence, softened by a temperature, :meth:`SASRecScorer.position_probs`.

Item ids are 0-based here, as in the artifacts; the model's padding column is dropped, so column ``i``
of every result is item ``i``::

    scorer = SASRecScorer("runs/demo/baseline/sasrec/model")
    probs = scorer([[3, 17, 5], [8]])          # (2, num_items), rows sum to 1
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ray_rec.baseline.sasrec import SASRec, encode_histories


class SASRecScorer:
    """The SASRec saved in ``model_dir`` (``SASRec.save``), in eval mode on ``device``."""

    def __init__(self, model_dir: str | Path, device: torch.device | str = "cpu"):
        self.model = SASRec.load(model_dir).to(device)
        self.max_len, self.device = int(self.model.hparams["max_len"]), device

    @torch.no_grad()
    def __call__(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Histories (0-based ids, oldest first; the newest max_len count) -> (B, num_items) probabilities
        of the next item."""
        scores = self.model.score(encode_histories(histories, self.max_len).to(self.device))
        return torch.softmax(scores[:, 1:].float(), dim=-1).cpu().numpy()  # column 0 is padding

    @torch.no_grad()
    def position_probs(self, histories: Sequence[Sequence[int]], temperature: float = 1.0) -> torch.Tensor:
        """Histories -> (B, max_len, num_items) probabilities of the next item after each position of the
        left-padded input, from logits divided by ``temperature``. A history of n items fills the last
        n positions; the rows before them belong to padding and carry no meaning."""
        seq = encode_histories(histories, self.max_len).to(self.device)
        logits = self.model.logits(self.model(seq))[..., 1:] / temperature  # drop the padding column
        return torch.softmax(logits.float(), dim=-1)

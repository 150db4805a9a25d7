"""SFT batches and their loss: what the SFT loop (:mod:`ray_rec.train.loop`) adds to the trainer kit.

* :func:`collate` -- left-padded tensors of some :class:`~ray_rec.train.tasks.Examples` (with teacher
  targets when distilling, :mod:`ray_rec.train.distill`);
* :func:`response_loss` -- summed next-token cross-entropy over the labelled (response) tokens;
* :class:`SFTBackend` -- the kit's :class:`~ray_rec.trainer.backend.Backend` with a micro-batch step
  that divides that sum by a fixed token count (:func:`tokens_per_micro_batch`);
* :func:`train_step`, :func:`valid_loss`, :func:`probe_logits` -- one optimizer step, the valid loss,
  and the logits a reloaded checkpoint is checked against.
"""

from __future__ import annotations

import numpy as np
import torch

from ray_rec.train.tasks import IGNORE, Examples
from ray_rec.trainer.backend import Backend
from ray_rec.trainer.schedule import micro_batches


def collate(examples: Examples, indices, pad_id: int, soft_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Left-pad examples: input_ids, attention_mask, position_ids, labels, each (B, T_max) int64.

    Left padding lines up the ends of the examples, where the responses are: the main task's responses
    (a SID and EOS) then occupy the same few last columns of every row, and :func:`response_loss`
    runs the output head on those columns only. Positions count real tokens from 0, as at generation.

    With ``soft_weight`` > 0 and teacher targets in ``examples`` (:mod:`ray_rec.train.distill`) it adds,
    aligned with the labels: soft_q (B, T, size) = weight x the teacher's code distribution, soft_tokens
    (B, T, size) their token ids, and hard_weight (B, T) = 1 - weight where a soft target is, else 1."""
    rows = [examples.get(int(i)) for i in indices]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for r, (x, y) in enumerate(rows):
        start = width - len(x)
        ids[r, start:], labels[r, start:], mask[r, start:] = torch.tensor(x), torch.tensor(y), 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}
    if soft_weight > 0 and examples.soft is not None:
        at = torch.full((len(rows), width), -1, dtype=torch.int64)
        for r, i in enumerate(indices):
            s, e = examples.offsets[int(i)], examples.offsets[int(i) + 1]
            at[r, width - (e - s):] = torch.from_numpy(examples.soft_at[s:e].astype(np.int64))
        has, row = at >= 0, at.clamp(min=0).numpy()
        batch["soft_q"] = torch.from_numpy(examples.soft[row]) * (soft_weight * has[..., None])
        batch["soft_tokens"] = torch.from_numpy(examples.level_tokens[examples.soft_level[row]])
        batch["hard_weight"] = torch.where(has, 1.0 - soft_weight, 1.0)
    return batch


def response_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token cross-entropy over labelled positions, their count) of one batch.

    The output head (hidden x vocabulary, the largest matrix of a small model) runs only on the
    columns that predict some row's label, through Hugging Face's ``logits_to_keep``; with left-padded
    main-task batches that is the last few columns instead of all of them (about 2x faster per step on
    a CPU for ~50-token prompts). ``model`` may be the HF model, its DDP wrapper or a DeepSpeed engine.
    A batch with teacher targets (:func:`collate`) mixes them in: per token
    hard_weight x CE(label) + CE(soft_q), both over the whole vocabulary."""
    labels = batch["labels"]
    wanted = (labels[:, 1:] != IGNORE).any(dim=0)           # column t predicts token t + 1
    keep = torch.nonzero(wanted).flatten()
    if keep.numel() == 0:
        keep = torch.tensor([labels.shape[1] - 2], device=labels.device)  # nothing labelled: loss 0
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=keep).logits
    targets = labels[:, keep + 1]
    count = (targets != IGNORE).sum()
    if "soft_q" not in batch:
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss, count
    logp = torch.log_softmax(logits.float(), dim=-1)
    hard = -logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * batch["hard_weight"][:, keep + 1]
    soft = -(batch["soft_q"][:, keep + 1] * logp.gather(-1, batch["soft_tokens"][:, keep + 1])).sum(-1)
    return ((hard + soft) * (targets != IGNORE)).sum(), count


def tokens_per_micro_batch(examples: Examples, cfg) -> float:
    """Mean labelled tokens of one worker's micro-batch over an epoch: labelled tokens per training
    example times the micro-batch size."""
    labelled = int((examples.labels != IGNORE).sum())
    return max(labelled / max(len(examples), 1) * cfg.train.micro_batch_size, 1.0)


class SFTBackend(Backend):
    """The kit's Backend, plus the SFT micro-batch step :meth:`forward_backward`."""

    def __init__(self, model, cfg, device: torch.device, tokens_per_micro: float | None = None):
        """``tokens_per_micro``: the divisor of a micro-batch's summed token loss, the mean labelled
        tokens of a micro-batch over the epoch (:func:`tokens_per_micro_batch`), so every labelled
        token weighs the same whatever batch it falls in (with length-grouped batches a per-batch mean
        would weigh a token of a short-sequence batch many times one of a long one). None: per-batch mean."""
        super().__init__(model, cfg, device)
        self.tokens_per_micro = tokens_per_micro

    def forward_backward(self, batch: dict[str, torch.Tensor], last: bool) -> float:
        """Backward of a micro-batch's token loss (see :meth:`backward`); returns its mean token loss."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        mean = []

        def loss_of(model) -> torch.Tensor:
            total, count = response_loss(model, batch)
            mean.append(float(total.detach() / count.clamp(min=1)))
            return total / (self.tokens_per_micro or count.clamp(min=1))

        self.backward(loss_of, last)
        return mean[0]


def train_step(backend: SFTBackend, examples: Examples, indices: np.ndarray, cfg, pad_id: int,
               lengths: np.ndarray) -> tuple[float, int, int]:
    """One optimizer step over this rank's ``indices``: cut into micro-batches (longest first when
    ``train.sort_micro_batches``; the token-weighted loss makes the gradient the same), forward and
    backward each, then step. -> (mean micro-batch loss, real tokens, padded positions)."""
    parts = micro_batches(indices, cfg.train.micro_batch_size, lengths if cfg.train.sort_micro_batches else None)
    losses, tokens, positions = [], 0, 0
    for m, part in enumerate(parts):
        batch = collate(examples, part, pad_id, cfg.distill.weight)
        tokens += int(batch["attention_mask"].sum())
        positions += batch["input_ids"].numel()
        losses.append(backend.forward_backward(batch, last=m == len(parts) - 1))
    backend.step()
    return float(np.mean(losses)), tokens, positions


@torch.no_grad()
def valid_loss(backend: Backend, valid: Examples, cfg, rank: int, world: int, pad_id: int) -> float:
    """Mean token loss of the valid examples, each rank scoring every world-th one, summed over ranks."""
    backend.train(False)
    total = torch.zeros(2, dtype=torch.float64)
    mine = np.arange(rank, len(valid), world)
    for s in range(0, len(mine), cfg.train.micro_batch_size):
        batch = {k: v.to(backend.device) for k, v in collate(valid, mine[s:s + cfg.train.micro_batch_size],
                                                             pad_id).items()}
        with torch.autocast(backend.device.type, torch.bfloat16, enabled=backend.autocast):
            loss, count = response_loss(backend.wrapped, batch)
        total += torch.stack([loss.double().cpu(), count.double().cpu()])
    if world > 1:
        total = total.to(backend.device)
        torch.distributed.all_reduce(total)
    backend.train(True)
    return float(total[0] / total[1].clamp(min=1))


@torch.no_grad()
def probe_logits(model, examples: Examples) -> list[float]:
    """Next-token logits (V,) after example 0's prompt: lets a reloaded checkpoint prove it is the same model."""
    ids, labels = examples.get(0)
    prompt_len = int(np.argmax(labels != IGNORE)) if (labels != IGNORE).any() else len(ids)
    was_training = model.training
    model.eval()
    logits = model(input_ids=torch.tensor(ids[:prompt_len], dtype=torch.int64)[None].to(model.device)).logits
    model.train(was_training)
    return logits[0, -1].float().cpu().tolist()

"""GRPO on a Hugging Face causal LM, one piece per function; no Ray here (``loop.py`` runs them).

One step for a batch of users:

1. :func:`rollout` — constrained beam search (:mod:`ray_rec.sid.beam`) returns the ``G`` best valid
   SIDs per user, the same search evaluation uses, so the policy is trained on exactly the lists it
   will be judged on. Beams are deterministic, so there is no sampling temperature to tune, and every
   rollout is a real item;
2. rewards and group-relative advantages (:mod:`ray_rec.rl.rewards`);
3. :func:`completion_logprobs` — each SID token's log-probability under the policy (with gradient)
   and under the frozen reference model (the SFT model);
4. :func:`grpo_loss` — per token, ``-A * ratio + beta * KL``, averaged over the SID tokens.

There is one policy update per rollout (GRPO with one inner iteration), so the importance ratio is 1
in value and PPO's clipping never engages; it is written as ``exp(logp - logp.detach())`` so its
gradient is ``A * grad log p``, as in TRL's GRPOTrainer. The KL term is the estimator
``exp(ref - logp) - (ref - logp) - 1`` (non-negative, zero where the policy equals the reference).
Only SID tokens count: the EOS after a complete SID is forced by the trie and scored 0 in the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ray_rec.sid.beam import FILLER_SCORE, pad_prompts, trie_beam_search
from ray_rec.sid.trie import SIDTrie


@dataclass(frozen=True)
class Rollouts:
    """The ``G`` beams of ``B`` users, best first."""

    input_ids: torch.Tensor    # (B, T) left-padded prompts
    attention_mask: torch.Tensor  # (B, T)
    completions: torch.Tensor  # (B, G, L) generated tokens (EOS, then padding)
    nodes: np.ndarray          # (B, G) trie node of each beam's SID (trie.dead: not a SID)
    items: np.ndarray          # (B, G) item id of each beam (lowest id of a colliding SID; -1: none)
    valid: np.ndarray          # (B, G) bool: a real beam that ends on a SID
    scores: np.ndarray         # (B, G) the search's score: summed log-probabilities of the SID tokens


@torch.no_grad()
def rollout(model, prompts: Sequence[Sequence[int]], trie: SIDTrie, group: int, pad_id: int,
            node_items: np.ndarray | None = None) -> Rollouts:
    """The ``group`` best SIDs per prompt by constrained beam search (``model`` is left in eval mode).
    ``node_items``: :func:`first_items` of ``trie``, when the caller keeps it across calls."""
    model.eval()
    input_ids, mask = pad_prompts(prompts, pad_id)
    seqs, scores = trie_beam_search(model, input_ids, mask, trie, group, pad_id)
    batch, beams, width = seqs.shape
    nodes = trie.end_nodes(seqs.reshape(-1, width).to(trie.device)).reshape(batch, beams).cpu()
    valid = (nodes != trie.dead) & (scores.cpu() > FILLER_SCORE)
    node_items = first_items(trie) if node_items is None else node_items
    items = np.where(valid.numpy(), node_items[nodes.numpy()], -1)
    return Rollouts(input_ids=input_ids, attention_mask=mask, completions=seqs.cpu(), nodes=nodes.numpy(),
                    items=items, valid=valid.numpy(),
                    scores=scores.float().cpu().numpy())


def first_items(trie: SIDTrie) -> np.ndarray:
    """(n_nodes + 1,) the lowest item id whose SID ends at each node (dead node included); -1 elsewhere."""
    offsets, items = trie.item_offsets.cpu().numpy(), trie.items.cpu().numpy()
    starts, has = offsets[:-1], offsets[1:] > offsets[:-1]
    return np.where(has, items[np.minimum(starts, max(len(items) - 1, 0))], -1)


def target_nodes(trie: SIDTrie, target_tokens: Sequence[Sequence[int]]) -> np.ndarray:
    """Trie node of each target's SID token ids: (B,) int64."""
    width = max(len(t) for t in target_tokens) + 1
    seqs = torch.full((len(target_tokens), width), trie.eos_id, dtype=torch.int64)
    for row, tokens in enumerate(target_tokens):
        seqs[row, :len(tokens)] = torch.as_tensor(list(tokens), dtype=torch.int64)
    return trie.end_nodes(seqs.to(trie.device)).cpu().numpy()


def sid_token_mask(completions: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(N, L) generated tokens -> (N, L) bool, True on the tokens before the first EOS (the SID).

    >>> sid_token_mask(torch.tensor([[5, 6, 0, 0], [5, 0, 0, 0]]), eos_id=0).int().tolist()
    [[1, 1, 0, 0], [1, 0, 0, 0]]
    """
    return (completions == eos_id).cumsum(dim=1) == 0


def completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        completions: torch.Tensor) -> torch.Tensor:
    """Log-probability of every generated token given the prompt and the tokens before it.

    input_ids, attention_mask: (B, T) left-padded prompts; completions: (B, G, L) -> (B * G, L) float32.
    Each prompt is repeated for its ``G`` completions; the output head runs only on the ``L`` columns
    that predict completion tokens (``logits_to_keep``). ``model`` may be wrapped (DDP, DeepSpeed)."""
    batch, group, length = completions.shape
    prompt_len = input_ids.shape[1]
    flat = completions.reshape(batch * group, length).to(input_ids.device)
    ids = torch.cat([input_ids.repeat_interleave(group, dim=0), flat], dim=1)
    mask = torch.cat([attention_mask.repeat_interleave(group, dim=0), torch.ones_like(flat)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = torch.arange(prompt_len - 1, prompt_len - 1 + length, device=ids.device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, flat[..., None]).squeeze(-1)


def grpo_loss(logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor, mask: torch.Tensor,
              beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss over one micro-batch of rollouts.

    logp, ref_logp: (N, L) token log-probabilities (policy with gradient; reference without, or None
    when ``beta`` is 0); advantages: (N,); mask: (N, L) bool, the tokens that count.
    -> (scalar loss: mean over masked tokens, {"kl": mean KL per token, "policy": mean policy term})."""
    mask = mask.to(logp.dtype)
    tokens = mask.sum().clamp(min=1.0)
    ratio = torch.exp(logp - logp.detach())           # 1 in value, gradient d log p
    policy = -(ratio * advantages[:, None].to(logp.dtype))
    per_token = policy
    kl_mean = 0.0
    if beta > 0 and ref_logp is not None:
        delta = ref_logp.detach() - logp
        kl = torch.exp(delta) - delta - 1.0
        per_token = per_token + beta * kl
        kl_mean = float((kl.detach() * mask).sum() / tokens)
    loss = (per_token * mask).sum() / tokens
    return loss, {"kl": kl_mean, "policy": float((policy.detach() * mask).sum() / tokens)}

"""The GRPO loop that every Ray Train worker runs (``train_loop_per_worker``).

Reads top to bottom: load the policy (the SFT model, or the latest checkpoint when resuming) and a
frozen copy as the reference, wrap the policy in the trainer kit's :class:`~ray_rec.trainer.backend.Backend`
(DeepSpeed ZeRO-2 or DDP), rank the valid users once before any update, then for each optimizer step
take this rank's users of the global batch and, one micro-batch at a time, roll out ``group_size``
SIDs by constrained beam search, reward them, and back-propagate the GRPO loss. Every
``train.eval_every`` steps the valid users are ranked again (HR@K, NDCG@K summed over ranks) and a
checkpoint is reported; the best is the one with the highest NDCG@K.

The policy stays in eval mode throughout (no dropout): rollouts and the loss then see the same
function, as in TRL's GRPOTrainer. ZeRO-2 shards gradients and optimizer state but not the weights,
so every rank generates with its full copy of the model.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ray_rec.baseline.scorer import SASRecScorer
from ray_rec.rl.config import RLConfig
from ray_rec.rl.grpo import completion_logprobs, first_items, grpo_loss, rollout, sid_token_mask, target_nodes
from ray_rec.rl.rewards import cf_reward, group_advantages, ranking_reward, rule_reward
from ray_rec.trainer.backend import Backend
from ray_rec.trainer.checkpoint import is_finished, new_state, report_lm_checkpoint, restored
from ray_rec.trainer.progress import end_evaluation, log, log_evaluation, maybe_crash, worker_nodes
from ray_rec.trainer.schedule import (
    eval_interval,
    get_lr,
    is_eval_step,
    micro_batches,
    rank_indices,
    steps_per_epoch,
    total_steps,
)


def rewards_of(cfg: RLConfig, nodes: np.ndarray, items: np.ndarray, valid: np.ndarray, targets: np.ndarray,
               cf_probs: np.ndarray | None) -> np.ndarray:
    """(B, G) rewards of one micro-batch's rollouts: rule or ranking on SIDs (trie nodes), plus
    ``cf_weight`` x the SASRec probability of each item. Invalid beams get the group's lowest reward."""
    base = ranking_reward(nodes, targets) if cfg.grpo.reward == "ranking" else rule_reward(nodes, targets)
    if cf_probs is not None and cfg.grpo.cf_weight > 0:
        base = base + cfg.grpo.cf_weight * cf_reward(cf_probs, items)
    lowest = np.where(valid, base, np.inf).min(axis=1, keepdims=True)
    return np.where(valid, base, np.where(np.isfinite(lowest), lowest, 0.0))


@torch.no_grad()
def rank_valid(module, tokenizer, trie, data: dict[str, Any], cfg: RLConfig, rank: int, world: int,
               device: torch.device) -> dict[str, float]:
    """HR@K and NDCG@K of the valid users (each rank ranks every world-th one; sums are all-reduced)."""
    from ray_rec.metrics import hr_ndcg, ranks_from_lists
    from ray_rec.sid.beam import constrained_beam_search

    mine = np.arange(rank, len(data["valid_prompts"]), world)
    k = cfg.grpo.eval_k
    sums = torch.zeros(3, dtype=torch.float64)
    if len(mine):
        result = constrained_beam_search(module, tokenizer, [data["valid_prompts"][i] for i in mine], trie,
                                         num_beams=cfg.grpo.eval_beams, k=k, batch_size=cfg.train.micro_batch_size)
        means = hr_ndcg(ranks_from_lists(result.items, data["valid_targets"][mine]), [k])
        sums += torch.tensor([means[f"hr@{k}"], means[f"ndcg@{k}"], 1.0], dtype=torch.float64) * len(mine)
    if world > 1:
        sums = sums.to(device)
        torch.distributed.all_reduce(sums)
        sums = sums.cpu()
    users = max(float(sums[2]), 1.0)
    return {f"valid_hr@{k}": float(sums[0]) / users, f"valid_ndcg@{k}": float(sums[1]) / users}


def micro_step(backend: Backend, reference, tokenizer, trie, data: dict[str, Any], part: np.ndarray, cfg: RLConfig,
               scorer: SASRecScorer | None, last: bool) -> dict[str, float]:
    """Roll out, reward and back-propagate one micro-batch of users ``part`` (indices into the train
    prompts); returns its reward and KL statistics."""
    eos, pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
    roll = rollout(backend.module, [data["prompts"][i] for i in part], trie, cfg.grpo.group_size, pad,
                   data["node_items"])
    targets = data["target_nodes"][part]
    cf = scorer([data["histories"][i] for i in part]) if scorer is not None else None
    rewards = rewards_of(cfg, roll.nodes, roll.items, roll.valid, targets, cf)
    advantages = torch.as_tensor(group_advantages(rewards, cfg.grpo.scale_rewards).reshape(-1), dtype=torch.float32,
                                 device=backend.device)
    keep = torch.as_tensor(roll.valid.reshape(-1), device=backend.device)
    inputs = [t.to(backend.device) for t in (roll.input_ids, roll.attention_mask, roll.completions)]
    mask = sid_token_mask(inputs[2].reshape(-1, inputs[2].shape[-1]), eos) & keep[:, None]
    ref = None
    if cfg.grpo.beta > 0:
        with torch.no_grad():
            ref = completion_logprobs(reference, *inputs)
    stats: dict[str, float] = {}

    def loss_of(model) -> torch.Tensor:
        logp = completion_logprobs(model, *inputs)
        loss, parts = grpo_loss(logp, ref, advantages, mask, cfg.grpo.beta)
        stats.update(parts, loss=float(loss.detach()))
        return loss

    backend.backward(loss_of, last)
    hit = (roll.nodes == targets[:, None]) & roll.valid
    # the ranking reward sums to 0 over a group, so its mean says nothing: the hit rate is the signal to watch
    stats.update(reward=float(rewards.mean()), hit_rate=float(hit.any(axis=1).mean()))
    return stats


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config``: cfg (RLConfig), data (ObjectRef of the prompts, targets and
    codes built by :func:`ray_rec.rl.run.prepare_inputs`), model_dir, sasrec_dir ('' = no cf reward) (paths or
    :class:`ray_rec.nodecache.Ref` s, copied to this node once), crash_marker (path or '': train.crash_at_step's
    fault injection)."""
    from ray_rec.runtime import setup_env

    setup_env()  # the project's environment, whatever the node's raylet was started with
    import ray
    import ray.train
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from ray_rec.runtime import set_threads
    from ray_rec.sid.trie import SIDTrie

    cfg: RLConfig = loop_config["cfg"]
    set_threads(cfg.resources.threads_per_worker)
    data = ray.get(loop_config["data"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    from ray_rec.nodecache import localize

    model_dir = localize(loop_config["model_dir"])
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    trie = SIDTrie.from_tokenizer(data["codes"], tokenizer, item_ids=data["item_ids"]).to(device)
    data["target_nodes"] = target_nodes(trie, data["target_tokens"])
    data["node_items"] = first_items(trie)

    with restored(new_state("best")) as (folder, state):
        policy = AutoModelForCausalLM.from_pretrained(folder or model_dir, dtype=torch.float32)
        backend = Backend(policy, cfg, device)
        if folder:
            backend.load_optimizer(folder)
    reference = None
    if cfg.grpo.beta > 0:
        reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
        reference.requires_grad_(False)
    scorer = SASRecScorer(localize(loop_config["sasrec_dir"]), device) if loop_config.get("sasrec_dir") else None
    backend.train(False)  # no dropout in rollouts or loss (module docstring)

    n = len(data["prompts"])
    per_epoch = steps_per_epoch(n, cfg.train.global_batch_size)
    total = total_steps(per_epoch, cfg.train.epochs, cfg.train.max_steps)
    if is_finished(state, total):
        return  # a finished run started again: nothing left to do
    state["nodes"] = worker_nodes()
    eval_every = eval_interval(cfg.train.eval_every, per_epoch)
    key = f"valid_ndcg@{cfg.grpo.eval_k}"
    if not state["valid"]:  # the starting policy, before any update
        before = rank_valid(backend.module, tokenizer, trie, data, cfg, rank, world, device)
        state["valid"].append({"step": 0, **before})
        if rank == 0:
            log(f"[rl] step 0: {key} {before[key]:.4f} (the starting policy)")
    step, window = state["step"], []
    while step < total:
        maybe_crash(cfg, step, rank, loop_config.get("crash_marker", ""))
        backend.set_lr(get_lr(step, total, cfg.train.lr, cfg.train.warmup_steps, cfg.train.min_lr_ratio))
        mine = rank_indices(step, n, cfg, rank)
        parts = micro_batches(mine, cfg.train.micro_batch_size)
        t0 = time.perf_counter()
        stats = [micro_step(backend, reference, tokenizer, trie, data, part, cfg, scorer, last=m == len(parts) - 1)
                 for m, part in enumerate(parts)]
        backend.step()
        step += 1
        row = {"step": step, "seconds": time.perf_counter() - t0,
               **{k: float(np.mean([s[k] for s in stats])) for k in stats[0]}}
        state["train"].append(row)
        window.append(row)
        if rank == 0 and step % cfg.train.log_every == 0:
            log(f"[rl] step {step}/{total} hit@{cfg.grpo.group_size} {np.mean([r['hit_rate'] for r in window]):.3f} "
                f"kl {np.mean([r['kl'] for r in window]):.4f} {np.mean([r['seconds'] for r in window]):.2f} s/step")
            window = []
        if not is_eval_step(step, total, eval_every):
            continue
        scores = rank_valid(backend.module, tokenizer, trie, data, cfg, rank, world, device)
        state["valid"].append({"step": step, **scores})
        stop = end_evaluation(state, step, "best", scores[key], higher_is_better=True, patience=cfg.train.patience)
        metrics = {"step": step, **scores, "hit_rate": row["hit_rate"], "reward": row["reward"], "kl": row["kl"],
                   "done": step == total or stop}
        report_lm_checkpoint(backend, tokenizer, state, rank, metrics)
        if rank == 0:
            log_evaluation("rl", step, key, scores[key], state["best"], stop)
        if stop:
            break

"""Reinforcement learning (GRPO) with constrained beam-search rollouts and ranking rewards."""

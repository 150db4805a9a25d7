"""Supervised fine-tuning of the generative recommender under Ray Train (DeepSpeed ZeRO-2 or DDP)."""

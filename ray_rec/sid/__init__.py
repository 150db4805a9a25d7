"""Semantic IDs: quantizers (pure torch/numpy), Ray orchestration, reports, the SID trie."""

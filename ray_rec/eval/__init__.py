"""Evaluation: constrained beam search over the SID trie, HR/NDCG, distributed over Ray Data."""

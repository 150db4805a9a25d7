"""The whole pipeline as one job: catalogue -> embeddings -> SIDs -> SFT -> evaluation, plus SASRec."""

"""Classic baselines (SASRec) trained under Ray Train and scored by the shared metrics."""

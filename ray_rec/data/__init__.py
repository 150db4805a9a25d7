"""Data stage: typed Parquet artifacts, loaders for public data sets, raw Amazon preprocessing on Ray Data, a synthetic catalog, item-text embeddings."""

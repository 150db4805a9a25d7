"""Data stage: typed Parquet artifacts, loaders for public data sets, raw Amazon preprocessing on Ray
Data, a synthetic catalog, item-text embeddings.

Modules, one idea each (import from them directly; this package exports nothing itself):

* ``config.py`` -- :class:`DataConfig` (``ray-rec data prepare``), :class:`EmbedConfig` (``data embed``);
* ``prepare.py`` -- ``run_prepare(cfg)``: items, interactions, samples per split and the manifest;
* ``loaders.py`` -- MiniOneRec, LC-Rec and Beauty layouts -> ``Loaded`` tables;
* ``amazon.py`` -- raw Amazon 2018 dumps preprocessed on Ray Data;
* ``synthetic.py`` -- the seeded synthetic shop used by default;
* ``samples.py`` -- pure building blocks: item text, sequences, sliding windows, splits;
* ``embed.py`` -- ``run_embed(cfg)``: item text -> vectors with Ray Data ``map_batches``;
* ``stats.py`` -- ``run_stats(paths)``: counts and length histograms of a prepared run.
"""

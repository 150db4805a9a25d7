"""Semantic IDs: quantizers (pure torch/numpy), Ray orchestration, reports, the SID trie and beam search.

Modules, one idea each:

* ``config.py`` -- :class:`SIDConfig`, the stage's one config;
* ``quantize.py`` -- input checks, nearest codes, faiss k-means, the :class:`Quantizer` interface;
* ``rqkmeans.py``, ``constrained.py``, ``rqvae.py``, ``rqkmeans_plus.py`` -- the four quantizers;
* ``collisions.py`` -- Sinkhorn last-level re-assignment and the de-duplication level;
* ``report.py`` -- collision rate, usage and entropy per level, reconstruction error, usage.png;
* ``index_io.py`` -- the codes Parquet and MiniOneRec ``index.json`` in and out;
* ``build.py`` -- ``run_sid_build(cfg)``: fits as parallel Ray tasks, assignment split across tasks;
* ``cli.py`` -- ``ray-rec sid build|report|import``;
* ``tokens.py`` -- codes <-> ``<a_12><b_3><c_200>`` tokens; ``trie.py`` -- the trie of valid SIDs;
* ``beam.py`` -- constrained beam search over that trie, the decoder evaluation and GRPO share.

Other stages call ``ray_rec.sid.build.run_sid_build(cfg) -> Path``; they read a codes file with
``ray_rec.artifacts.read_codes(path)`` and convert its table with ``ray_rec.sid.index_io``:
``codes_arrays(table) -> (item_ids, codes)`` (codes (n, L), -1 where an item has no de-duplication
level) or ``codes_by_item(table) -> {item: codes}``; ``codes_from_index_json(path) -> pyarrow.Table``
imports MiniOneRec's format.
"""

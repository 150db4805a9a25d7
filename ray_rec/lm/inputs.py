"""Which samples a trained SID model can be asked about: every item in them must have a SID.

Evaluation and GRPO both turn a split's samples into prompts of SID tokens; an item without a SID
(codes built on another catalogue) would fail deep inside a Ray worker, so both check the samples on
the driver first with :func:`samples_with_sids`, which also numbers them (the ``row`` column ties a
prediction back to its line of ``samples_<split>.parquet``)::

    codes = artifacts.read_codes(paths.codes("rqkmeans"))
    path = paths.samples("test")
    samples = samples_with_sids(artifacts.read_samples(path), codes.column("item_id").to_numpy(), path)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ray_rec.errors import InputError, at


def samples_with_sids(samples: pa.Table, item_ids: np.ndarray, path: str | Path, max_users: int = 0) -> pa.Table:
    """A SAMPLES table (read from ``path``, named in errors) -> its first ``max_users`` rows (0 = all) plus
    a ``row`` column; InputError at the first history item or target that is not in ``item_ids``."""
    table = samples.slice(0, max_users) if max_users else samples
    known = set(item_ids.tolist())
    targets, histories = table.column("target").to_pylist(), table.column("history").to_pylist()
    for row, (target, history) in enumerate(zip(targets, histories, strict=True)):
        for field, values in (("target", [target]), ("history", history)):
            unknown = [i for i in values if i not in known]
            if unknown:
                raise InputError(f"{at(path, row + 1, field)} item {unknown[0]} has no SID; "
                                 "were the SIDs built on the same catalogue?")
    return table.append_column("row", pa.array(np.arange(len(table)), pa.int64()))

"""Read the typed Parquet artifacts that stages exchange: one reader per artifact.

``ray_rec.paths`` says where an artifact lives and ``ray_rec.schema`` what it holds; this module
is the one place that opens one. Each reader checks that the file exists (else an InputError naming
it and the stage that writes it), that it has the schema's columns, and casts it to the schema, so
every stage refuses a bad file with the same message. No other module opens these files: a stage that
computes with another shape converts the table with a named function that takes it, e.g.
``ray_rec.sid.index_io.codes_by_item`` / ``codes_arrays``, ``ray_rec.train.tasks.Samples.from_table``,
``ray_rec.baseline.train.samples_arrays``, ``ray_rec.lm.inputs.samples_with_sids``::

    from ray_rec import artifacts

    paths = RunPaths("runs/default")
    samples = artifacts.read_samples(paths.samples("test"))                # pa.Table, schema SAMPLES
    titles = artifacts.read_items(paths.items, columns=["item_id", "title"])
    item_ids, vectors = artifacts.read_embeddings(paths.embeddings)       # (n,) int64, (n, d) float32
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_rec import schema
from ray_rec.errors import InputError, at


@dataclass(frozen=True)
class Artifact:
    """A typed artifact: its name in messages, its schema, and the stage (and command) that writes it."""

    noun: str
    schema: pa.Schema
    stage: str
    command: str

    @property
    def how_to_make(self) -> str:
        return f"run the {self.stage} stage first ({self.command})"


ITEMS = Artifact("items", schema.ITEMS, "data", "`ray-rec data prepare`")
INTERACTIONS = Artifact("interactions", schema.INTERACTIONS, "data", "`ray-rec data prepare`")
SAMPLES = Artifact("samples", schema.SAMPLES, "data", "`ray-rec data prepare`")
EMBEDDINGS = Artifact("embeddings", schema.EMBEDDINGS, "embedding", "`ray-rec data embed`")
CODES = Artifact("SID codes", schema.CODES, "SID", "`ray-rec sid build` or `ray-rec sid import`")


def require(path: str | Path, artifact: Artifact, columns: list[str] | None = None) -> Path:
    """Check that ``path`` is a Parquet file with ``columns`` (default: all of the artifact's) from its
    metadata alone, so a driver can refuse bad input before it launches workers that read the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; {artifact.how_to_make}")
    try:
        present = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc}); {artifact.how_to_make}") from None
    for name in columns or artifact.schema.names:
        if name not in present:
            raise InputError(f"{at(path, field=name)} missing column; {artifact.noun} have columns "
                             f"{', '.join(artifact.schema.names)}")
    return path


def read(path: str | Path, artifact: Artifact, columns: list[str] | None = None) -> pa.Table:
    """The artifact at ``path`` as a table of ``columns`` (default: all), cast to the artifact's schema."""
    names = list(columns or artifact.schema.names)
    unknown = [n for n in names if n not in artifact.schema.names]
    if unknown:  # a programming error, not bad input
        raise KeyError(f"{artifact.noun} have no column(s) {unknown}; they have {artifact.schema.names}")
    path = require(path, artifact, names)
    table = pq.read_table(path, columns=names)
    try:
        # the file's schema metadata (e.g. the codebook sizes stored with the codes) is kept
        return table.cast(pa.schema([artifact.schema.field(n) for n in names])).replace_schema_metadata(
            table.schema.metadata)
    except (ValueError, pa.ArrowException) as exc:  # nulls in a required column, strings for ids, ...
        raise InputError(f"{path}: does not match the {artifact.noun} schema ({exc})") from None


def read_items(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """items.parquet (schema ITEMS); ``columns`` picks a few (titles alone are far smaller than texts)."""
    return read(path, ITEMS, columns)


def read_interactions(path: str | Path) -> pa.Table:
    """interactions.parquet (schema INTERACTIONS)."""
    return read(path, INTERACTIONS)


def read_samples(path: str | Path) -> pa.Table:
    """samples_<split>.parquet (schema SAMPLES): user_id, history (oldest first), target."""
    return read(path, SAMPLES)


def read_codes(path: str | Path) -> pa.Table:
    """codes.parquet (schema CODES), in file order; every item has a non-empty SID."""
    table = read(path, CODES)
    lengths = pc.list_value_length(table.column("codes")).to_numpy(zero_copy_only=False)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        row = int(empty[0])
        raise InputError(f"{at(path, row, 'codes')} item {table.column('item_id')[row]} has an empty SID")
    return table


def read_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """embeddings.parquet (schema EMBEDDINGS) -> (item_ids (n,) int64, vectors (n, d) float32), file order.

    Vectors of different lengths are refused here: nothing downstream can use a ragged matrix."""
    table = read(path, EMBEDDINGS)
    col = table.column("embedding").combine_chunks()
    lengths = col.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise InputError(f"{at(path, row, 'embedding')} vector of dimension {lengths[row]}, "
                         f"but row 0 has dimension {lengths[0]}; all vectors need one dimension")
    dim = int(lengths[0]) if len(lengths) else 0
    vectors = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(col), dim)
    return table.column("item_id").to_numpy(), vectors

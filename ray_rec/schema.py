"""Arrow schemas of the typed artifacts every stage exchanges.

Item ids are 0-based int64 everywhere in artifacts (as in the public data sets); a model that needs
a padding id shifts by one internally. Histories are ``list<int64>`` oldest first, never strings.
"""

from __future__ import annotations

import pyarrow as pa

ITEMS = pa.schema([
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("description", pa.string()),
    pa.field("brand", pa.string()),
    pa.field("categories", pa.list_(pa.string())),
    pa.field("text", pa.string()),  # the text the encoder sees (see data/embed.py template)
])

INTERACTIONS = pa.schema([
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("timestamp", pa.int64(), nullable=False),  # unix seconds, or the order when unknown
])

SAMPLES = pa.schema([
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("history", pa.list_(pa.int64()), nullable=False),  # oldest first
    pa.field("target", pa.int64(), nullable=False),
])

EMBEDDINGS = pa.schema([
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("embedding", pa.list_(pa.float32()), nullable=False),
])

CODES = pa.schema([
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("codes", pa.list_(pa.int64()), nullable=False),  # one code per level, dedup level last
])

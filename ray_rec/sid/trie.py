"""The SID trie that constrained decoding walks: which token may come next after a generated prefix.

Every item's semantic ID is a short list of codes (variable length: a de-duplication level may be
present for some items only). The trie is flattened into tensors so that a whole batch of beams is
advanced and masked with a handful of vectorised ops, never a Python loop per beam:

* nodes are numbered ``0`` (the root, the empty prefix) .. ``n_nodes - 1``; node ``dead`` (= n_nodes)
  stands for "not a prefix of any SID" and allows only EOS;
* edges are sorted by ``key = parent * stride + token`` (``stride`` = 1 + the largest token id used),
  so the child of (node, token) is one ``searchsorted`` (:meth:`SIDTrie.step`) and the children of a
  node are the contiguous slice ``edge_offsets[node]:edge_offsets[node + 1]`` (CSR);
* a node is *terminal* when some item's SID ends there; its items are the CSR slice
  ``item_offsets[node]:item_offsets[node + 1]`` of ``items`` (several items when SIDs collide,
  sorted by item id).

After a prefix the allowed next tokens are the node's children, plus EOS when the node is terminal or
has no child at all (a dead end may only end the sequence, never escape the catalogue).

Example::

    trie = SIDTrie.from_codes([[1, 2], [1, 3, 0], [1, 3, 1]], token_ids=[[10, 11], [20, 21, 22, 23], [30, 31]],
                              eos_id=0)
    nodes = trie.walk(torch.tensor([[10, 23]]))       # node of the prefix <a_1><b_3>
    trie.allowed_mask(nodes, vocab_size=40)            # True at 30 and 31 only
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ray_rec.errors import InputError
from ray_rec.sid.tokens import sid_token


@dataclass(frozen=True)
class SIDTrie:
    """Flattened trie of item SIDs (build with :meth:`from_codes` or :meth:`from_tokenizer`)."""

    edge_keys: torch.Tensor     # (E,) int64, sorted: parent * stride + token
    edge_child: torch.Tensor    # (E,) int64 child node of each edge
    edge_token: torch.Tensor    # (E,) int64 token id of each edge
    edge_offsets: torch.Tensor  # (n_nodes + 2,) int64 CSR offsets of each node's edges (dead node included)
    terminal: torch.Tensor      # (n_nodes + 1,) bool: some SID ends at this node
    item_offsets: torch.Tensor  # (n_nodes + 2,) int64 CSR offsets into ``items``
    items: torch.Tensor         # (n_items,) int64 item ids, grouped by terminal node, ascending within a node
    stride: int                 # 1 + largest token id the trie uses (EOS included)
    eos_id: int
    max_depth: int              # longest SID, in tokens

    @property
    def n_nodes(self) -> int:
        """Real nodes (root included, dead node excluded)."""
        return int(self.terminal.shape[0]) - 1

    @property
    def dead(self) -> int:
        """The node id of every prefix that is not a prefix of a SID."""
        return self.n_nodes

    @property
    def device(self) -> torch.device:
        return self.edge_keys.device

    # ------------------------------------------------------------------ building
    @classmethod
    def from_codes(cls, codes: np.ndarray | Sequence[Sequence[int]], token_ids: np.ndarray | Sequence[Sequence[int]],
                   eos_id: int, item_ids: np.ndarray | Sequence[int] | None = None) -> SIDTrie:
        """Build the trie of ``codes`` (item i's SID is ``codes[i]``, an (N, L) array or N lists of
        possibly different lengths); ``token_ids[level][code]`` is the vocabulary id of that code's
        token; ``item_ids`` (N,) defaults to ``0..N-1``. Items with equal SIDs share a terminal node."""
        seqs = _as_code_lists(codes)
        ids = np.arange(len(seqs), dtype=np.int64) if item_ids is None else np.asarray(item_ids, dtype=np.int64)
        if ids.shape != (len(seqs),):
            raise InputError(f"item_ids has shape {ids.shape}, expected ({len(seqs)},) to match the codes")
        if len(np.unique(ids)) != len(ids):
            raise InputError("item_ids contain duplicates; each item needs exactly one SID")
        token_seqs = [_tokens_of(seq, token_ids, row) for row, seq in enumerate(seqs)]
        return cls._from_token_seqs(token_seqs, ids, int(eos_id))

    @classmethod
    def from_tokenizer(cls, codes: np.ndarray | Sequence[Sequence[int]], tokenizer,
                       item_ids: np.ndarray | Sequence[int] | None = None) -> SIDTrie:
        """:meth:`from_codes` with token ids looked up in a Hugging Face tokenizer holding the SID tokens
        (``<a_12>`` ...) and an EOS token."""
        if tokenizer.eos_token_id is None:
            raise InputError("the tokenizer has no EOS token; constrained decoding needs one to end a SID")
        table = sid_token_table(tokenizer, codes)
        return cls.from_codes(codes, table, tokenizer.eos_token_id, item_ids)

    @classmethod
    def _from_token_seqs(cls, token_seqs: list[tuple[int, ...]], item_ids: np.ndarray, eos_id: int) -> SIDTrie:
        node_of: dict[tuple[int, ...], int] = {(): 0}
        edges: list[tuple[int, int, int]] = []  # (parent, token, child)
        for seq in token_seqs:
            for depth in range(1, len(seq) + 1):
                prefix = seq[:depth]
                if prefix not in node_of:
                    node_of[prefix] = len(node_of)
                    edges.append((node_of[seq[:depth - 1]], seq[depth - 1], node_of[prefix]))
        n_nodes = len(node_of)
        stride = 1 + max([eos_id] + [t for seq in token_seqs for t in seq])
        edge_arr = np.array(edges, dtype=np.int64).reshape(-1, 3)
        keys = edge_arr[:, 0] * stride + edge_arr[:, 1]
        order = np.argsort(keys, kind="stable")
        edge_arr, keys = edge_arr[order], keys[order]
        # n_nodes + 1 rows: the dead node has no edge and no item
        edge_offsets = np.zeros(n_nodes + 2, dtype=np.int64)
        np.cumsum(np.bincount(edge_arr[:, 0], minlength=n_nodes + 1), out=edge_offsets[1:])
        end_node = np.array([node_of[seq] for seq in token_seqs], dtype=np.int64)
        item_order = np.lexsort((item_ids, end_node))
        item_offsets = np.zeros(n_nodes + 2, dtype=np.int64)
        np.cumsum(np.bincount(end_node, minlength=n_nodes + 1), out=item_offsets[1:])
        terminal = np.zeros(n_nodes + 1, dtype=bool)
        terminal[end_node] = True
        t = torch.from_numpy
        return cls(edge_keys=t(keys), edge_child=t(edge_arr[:, 2].copy()), edge_token=t(edge_arr[:, 1].copy()),
                   edge_offsets=t(edge_offsets), terminal=t(terminal), item_offsets=t(item_offsets),
                   items=t(item_ids[item_order]), stride=int(stride), eos_id=eos_id,
                   max_depth=max(len(s) for s in token_seqs))

    def to(self, device: str | torch.device) -> SIDTrie:
        """A copy whose tensors live on ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return SIDTrie(**moved)

    # ------------------------------------------------------------------ decoding
    def root(self, batch: int) -> torch.Tensor:
        """(batch,) node ids of the empty prefix."""
        return torch.zeros(batch, dtype=torch.int64, device=self.device)

    def step(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Advance every beam by one token: nodes (B,), tokens (B,) -> (B,) child nodes (``dead`` where
        the token does not continue a SID, including EOS and tokens the trie never uses)."""
        tokens = tokens.to(torch.int64)
        in_range = (tokens >= 0) & (tokens < self.stride) & (nodes != self.dead)
        keys = nodes * self.stride + tokens.clamp(0, self.stride - 1)
        idx = torch.searchsorted(self.edge_keys, keys).clamp(max=max(len(self.edge_keys) - 1, 0))
        found = in_range & (self.edge_keys[idx] == keys)
        return torch.where(found, self.edge_child[idx], torch.full_like(nodes, self.dead))

    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Node of each prefix: (B, T) token ids -> (B,) node ids (T may be 0: the root)."""
        nodes = self.root(prefixes.shape[0])
        for t in range(prefixes.shape[1]):  # T <= SID length: a loop over positions, not beams
            nodes = self.step(nodes, prefixes[:, t])
        return nodes

    def allowed_pairs(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse form of :meth:`allowed_mask`: (rows, tokens), both (M,) int64, one entry per allowed
        (beam, next token) pair, for nodes (B,)."""
        starts, ends = self.edge_offsets[nodes], self.edge_offsets[nodes + 1]
        counts = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), counts)
        # position of each pair inside its node's edge slice
        within = torch.arange(len(rows), device=nodes.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        tokens = self.edge_token[torch.repeat_interleave(starts, counts) + within]
        wants_eos = self.terminal[nodes] | (counts == 0)
        eos_rows = torch.nonzero(wants_eos, as_tuple=True)[0]
        return (torch.cat([rows, eos_rows]),
                torch.cat([tokens, torch.full_like(eos_rows, self.eos_id)]))

    def is_leaf(self, nodes: torch.Tensor) -> torch.Tensor:
        """(B,) node ids -> (B,) bool, True where no SID continues (a whole SID that prefixes no other,
        or ``dead``): EOS is the only token :meth:`allowed_pairs` gives there."""
        return self.edge_offsets[nodes + 1] == self.edge_offsets[nodes]

    def allowed_mask(self, nodes: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(B,) node ids -> (B, vocab_size) bool, True where the token may come next."""
        if vocab_size < self.stride:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the trie's token range {self.stride}")
        mask = torch.zeros(len(nodes), vocab_size, dtype=torch.bool, device=nodes.device)
        rows, tokens = self.allowed_pairs(nodes)
        mask[rows, tokens] = True
        return mask

    # ------------------------------------------------------------------ mapping back to items
    def end_nodes(self, sequences: torch.Tensor) -> torch.Tensor:
        """Node reached by each generated sequence, read up to its first EOS: (B, T) -> (B,).
        A sequence without EOS, or whose prefix before EOS is not a complete SID, maps to ``dead``."""
        nodes = self.root(sequences.shape[0])
        ended = torch.zeros(sequences.shape[0], dtype=torch.bool, device=sequences.device)
        for t in range(sequences.shape[1]):
            is_eos = sequences[:, t] == self.eos_id
            nodes = torch.where(ended | is_eos, nodes, self.step(nodes, sequences[:, t]))
            ended |= is_eos
        return torch.where(ended & self.terminal[nodes], nodes, torch.full_like(nodes, self.dead))

    def items_of(self, node: int) -> list[int]:
        """Item ids whose SID ends at ``node`` (empty unless terminal), ascending."""
        lo, hi = int(self.item_offsets[node]), int(self.item_offsets[node + 1])
        return self.items[lo:hi].tolist()


def _as_code_lists(codes: np.ndarray | Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(codes, np.ndarray):
        if codes.ndim != 2:
            raise InputError(f"codes must be an (items, levels) array or a list of code lists; got shape {codes.shape}")
        codes = codes.tolist()
    seqs = [[int(c) for c in seq] for seq in codes]
    if not seqs:
        raise InputError("no codes given: the catalogue is empty")
    for row, seq in enumerate(seqs):
        if not seq:
            raise InputError(f"codes row {row}: an item has an empty SID")
        if min(seq) < 0:
            raise InputError(f"codes row {row}: negative code in {seq}")
    return seqs


def _tokens_of(seq: list[int], token_ids, row: int) -> tuple[int, ...]:
    out = []
    for level, code in enumerate(seq):
        if level >= len(token_ids) or code >= len(token_ids[level]) or int(token_ids[level][code]) < 0:
            raise InputError(f"codes row {row}: no token id for level {level} code {code} ({sid_token(level, code)})")
        out.append(int(token_ids[level][code]))
    return tuple(out)


def sid_token_table(tokenizer, codes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """(levels, 1 + max code) int64 table of the token id of ``<letter_code>`` for every code used in
    ``codes`` (-1 where a code is unused). Raises InputError when the tokenizer lacks a needed token."""
    seqs = _as_code_lists(codes)
    levels = max(len(s) for s in seqs)
    width = 1 + max(max(s) for s in seqs)
    table = np.full((levels, width), -1, dtype=np.int64)
    used = {(lv, c) for s in seqs for lv, c in enumerate(s)}
    vocab = tokenizer.get_vocab()
    missing = []
    for level, code in sorted(used):
        token = sid_token(level, code)
        if token in vocab:
            table[level, code] = vocab[token]
        else:
            missing.append(token)
    if missing:
        raise InputError(f"the tokenizer lacks {len(missing)} SID token(s), e.g. {', '.join(missing[:5])}; "
                         "was the model trained with these SIDs?")
    return table

"""ray_rec: the MiniOneRec generative-recommendation pipeline (data, semantic IDs, SFT, GRPO,
constrained-beam evaluation) run on Ray, from one laptop to a GPU cluster."""

__version__ = "0.1.0"

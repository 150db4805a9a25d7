"""A trained SID language model on disk: a Hugging Face folder plus ``ray_rec_sft.json``.

SFT writes the folder (weights, config, tokenizer) and the metadata file beside them: the SID method
and codes the model was trained on, their levels and codebook sizes, how many history items a prompt
holds, and the training config. GRPO, evaluation and serving read that folder back with the helpers
here, so they never need the training code::

    model, tokenizer = load_sft_model("runs/demo/sft/sft/model")         # <run>/sft/<name>/model
    method = trained_sid_method(Path("runs/demo/sft/sft/model"))   # e.g. "rqkmeans_constrained"

Reload with :func:`load_sft_model` (``PreTrainedTokenizerFast.from_pretrained``, not
``AutoTokenizer``, which turns a qwen2 folder into a ``Qwen2Tokenizer`` that splits text differently).
"""

from __future__ import annotations

import json
from pathlib import Path

from ray_rec.errors import InputError

META_FILE = "ray_rec_sft.json"


def write_meta(path: str | Path, meta: dict) -> Path:
    """Write ``meta`` as ``<path>/ray_rec_sft.json`` (sorted keys, so equal metadata gives equal bytes)."""
    out = Path(path) / META_FILE
    out.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def read_meta(path: str | Path) -> dict:
    """The ray_rec_sft.json of a saved model (SID method, levels, codebook sizes, config)."""
    return json.loads((Path(path) / META_FILE).read_text())


def trained_sid_method(checkpoint: Path) -> str:
    """The SID method recorded by the SFT stage in ``<checkpoint>/ray_rec_sft.json``."""
    meta_path = checkpoint / META_FILE
    try:
        return str(json.loads(meta_path.read_text())["sid_method"])
    except (OSError, KeyError, json.JSONDecodeError):
        raise InputError(f"{meta_path}: no readable sid_method (not a ray-rec SFT checkpoint?); "
                         "set sid_method, e.g. --set sid_method=rqkmeans") from None


def check_trained_codes(checkpoint: str | Path, codes_table, codes_path: str | Path) -> None:
    """Refuse to score or fine-tune a model on SIDs other than those it was trained on.

    ``codes_table``: the CODES table of ``codes_path``. A model whose ray_rec_sft.json records other
    codebook sizes (another SID vocabulary), or other codes (their content hash, recorded by SFT), would
    rank with tokens that mean other items: an InputError names both. A folder without the metadata
    (a model made elsewhere) is not checked."""
    from ray_rec.io import file_sha256
    from ray_rec.sid.index_io import codebook_sizes

    meta_path = Path(checkpoint) / META_FILE
    if not meta_path.is_file():
        return
    meta = json.loads(meta_path.read_text())
    trained, here = meta.get("codebook_sizes"), codebook_sizes(codes_table)
    source = meta.get("codes", "its training codes")
    if trained is not None and list(trained) != list(here):
        raise InputError(f"{checkpoint} was trained on SIDs with codebook sizes {list(trained)} ({source}), but "
                         f"{codes_path} has {here}; score it on the run it was trained on, or pick that run's SIDs "
                         "with --set sid_method=<method>")
    if meta.get("codes_sha256") and meta["codes_sha256"] != file_sha256(codes_path):
        raise InputError(f"{checkpoint} was trained on other codes than {codes_path} ({source}, which has since "
                         "changed or is another run's); retrain it (`ray-rec sft`) or pick its run's SIDs")


def trained_max_history(checkpoint: str | Path) -> int:
    """How many of the newest history items the model's training prompts held (0 = all, also for a
    folder without ray_rec_sft.json)."""
    meta_path = Path(checkpoint) / META_FILE
    return int(json.loads(meta_path.read_text()).get("max_history", 0)) if meta_path.is_file() else 0


def save_sft_model(model, tokenizer, path: str | Path, meta: dict | None = None) -> Path:
    """Write weights (safetensors), config and tokenizer as a Hugging Face folder, plus META_FILE."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if meta is not None:
        write_meta(path, meta)
    return path


def load_sft_model(path: str | Path, device: str = "cpu"):
    """(model in eval mode, tokenizer) from a folder written by :func:`save_sft_model`."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path} holds no saved model (no config.json); run `ray-rec sft` first")
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    return model, tok

"""Build the causal LM and its tokenizer: small and random, or loaded from a local folder.

Default: a Qwen2-architecture model built from a config (random init, sizes from ``model.*``) with a
byte-level BPE tokenizer trained offline on the catalogue's titles and the prompt templates, wrapped
in ``PreTrainedTokenizerFast`` (EOS ``<|endoftext|>``, pad ``<|pad|>``, no BOS). With ``model.path``
any local Hugging Face causal-LM folder is used instead (a Qwen2.5 checkpoint on a cluster).

Either way every SID token (one set per level, the de-duplication level included) is added as a
*normal* token (so decoders that skip special tokens, like TRL's, keep them) after the base
vocabulary, and the embeddings are resized. ``model.freeze_base`` then trains only those new rows.

SFT builds with this module; saving and reloading a trained model is :mod:`ray_rec.lm.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import torch

from ray_rec.errors import InputError
from ray_rec.lm import prompts
from ray_rec.lm.config import ModelSection
from ray_rec.sid.tokens import sid_token, vocabulary

EOS, PAD = "<|endoftext|>", "<|pad|>"


def catalogue_texts(items: pa.Table) -> list[str]:
    """Text the BPE tokenizer is trained on: every title plus the prompt templates."""
    titles = [t for t in items.column("title").to_pylist() if t] if "title" in items.column_names else []
    templates = [prompts.HISTORY_HEAD, prompts.NEXT_TITLE, prompts.NEXT_SID, prompts.SID_TITLE_HEAD,
                 prompts.TITLE_SID_HEAD]
    return titles + templates * 50  # repeated so the templates' words become single tokens


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (no SID tokens yet)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD)


def add_sid_tokens(tokenizer, codebook_sizes: Sequence[int]) -> int:
    """Add every SID token as a normal token; return the id of the first one (the base vocab size)."""
    first = len(tokenizer)
    tokenizer.add_tokens(vocabulary(codebook_sizes))
    return min(first, int(tokenizer.convert_tokens_to_ids(sid_token(0, 0))))


def check_model_folder(path: str | Path) -> None:
    """Raise InputError unless ``path`` is a local Hugging Face causal-LM folder with a fast tokenizer."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(path)
    fix = "set model.path to a local Hugging Face causal-LM folder (e.g. a Qwen2.5 checkpoint), or '' to build one"
    if not path.is_dir():
        raise InputError(f"model.path {path} is not a folder; {fix}")
    if not (path / "config.json").is_file():
        raise InputError(f"model.path {path} has no config.json, so it is no Hugging Face model folder; {fix}")
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}/config.json cannot be read as a model config ({exc}); {fix}") from None
    archs = config.architectures or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) if archs else \
        config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not config.is_encoder_decoder
    if not causal:
        raise InputError(f"model.path {path} is a {config.model_type!r} model "
                         f"({', '.join(config.architectures or ['no architecture'])}), not a causal LM; {fix}")
    if not (path / "tokenizer.json").is_file():
        raise InputError(f"model.path {path} has no tokenizer.json (a fast tokenizer is required); "
                         "save the tokenizer with tokenizer.save_pretrained() into that folder")


def build_tokenizer(cfg: ModelSection, items: pa.Table, codebook_sizes: Sequence[int]):
    """The tokenizer with SID tokens added: loaded from ``cfg.path`` or trained on ``items``' titles."""
    from transformers import PreTrainedTokenizerFast

    if cfg.path:
        check_model_folder(cfg.path)
        tok = PreTrainedTokenizerFast.from_pretrained(cfg.path)
        if tok.eos_token is None:
            raise InputError(f"the tokenizer in {cfg.path} has no EOS token; set eos_token in its tokenizer_config.json")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
    else:
        tok = train_bpe_tokenizer(catalogue_texts(items), cfg.bpe_vocab_size)
    add_sid_tokens(tok, codebook_sizes)
    return tok


def build_model(cfg: ModelSection, tokenizer, seed: int = 0):
    """The causal LM sized to ``tokenizer`` (fp32; DeepSpeed casts to bf16 on GPU)."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    if cfg.path:
        check_model_folder(cfg.path)
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=torch.float32)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    else:
        config = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
            intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
            max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
            attention_dropout=cfg.dropout, bos_token_id=None, use_cache=True)
        model = Qwen2ForCausalLM(config)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def add_dropout(model, p: float) -> int:
    """Dropout with rate ``p`` on the token embeddings and on each decoder block's attention and MLP
    outputs (before they join the residual stream), active only in training mode.

    Qwen2/Llama-style models have no such dropout of their own, and a small model trained from scratch
    on a small catalogue overfits without it. Forward hooks leave the saved weights and config
    untouched, so a reloaded model decodes exactly as before. Returns the number of hooked modules."""
    import torch.nn.functional as F

    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if p <= 0:
        return 0
    if layers is None or not all(hasattr(layer, "self_attn") and hasattr(layer, "mlp") for layer in layers):
        raise InputError(f"model.dropout={p} needs a decoder with model.layers[i].self_attn/.mlp "
                         f"(Qwen2, Llama, Mistral); {type(model).__name__} has another layout, set model.dropout=0")

    def drop(module, inputs, output):
        if isinstance(output, tuple):  # attention returns (hidden, weights)
            return (F.dropout(output[0], p, module.training), *output[1:])
        return F.dropout(output, p, module.training)

    hooked = [model.get_input_embeddings()] + [m for layer in layers for m in (layer.self_attn, layer.mlp)]
    for module in hooked:
        module.register_forward_hook(drop)
    return len(hooked)


def build_model_and_tokenizer(cfg, items_table: pa.Table, codebook_sizes: Sequence[int], seed: int = 0):
    """(model, tokenizer) with SID tokens for ``codebook_sizes`` (e.g. [256, 256, 256, 8]); ``cfg`` is a
    :class:`ModelSection` or a stage config that holds one as ``cfg.model`` (SFTConfig)."""
    section = cfg if isinstance(cfg, ModelSection) else cfg.model
    tok = build_tokenizer(section, items_table, codebook_sizes)
    return build_model(section, tok, seed), tok


def freeze_base(model, first_new_id: int) -> list[str]:
    """Train only token rows >= ``first_new_id`` of the input embedding and output head.

    Every other parameter gets ``requires_grad=False``; a gradient hook zeroes the old rows, so with
    no weight decay on embeddings (see loop.param_groups) they never move. Returns the names of the
    parameters left trainable.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    rows = {id(model.get_input_embeddings().weight): model.get_input_embeddings().weight}
    head = model.get_output_embeddings()
    if head is not None:
        rows[id(head.weight)] = head.weight

    def keep_new_rows(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:first_new_id] = 0
        return grad

    for weight in rows.values():
        weight.requires_grad_(True)
        weight.register_hook(keep_new_rows)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def first_sid_id(tokenizer) -> int:
    """Id of ``<a_0>``: every id from here on is a SID token (they were added last)."""
    return int(tokenizer.convert_tokens_to_ids(sid_token(0, 0)))

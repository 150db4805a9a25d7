"""SFT stage without Ray: every task's prompt and label mask on a hand-written example, the prompt
contract with evaluation, sequence rebuilding, the schedule, batch sharding, the DeepSpeed dict,
the freeze option, and bad input (missing SID, missing SID token, empty task mix, non-causal model)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from ray_rec.config import ConfigError, load_config
from ray_rec.errors import InputError
from ray_rec.lm import prompts
from ray_rec.lm.model import (
    add_dropout,
    add_sid_tokens,
    build_model,
    build_model_and_tokenizer,
    check_model_folder,
    first_sid_id,
    freeze_base,
    train_bpe_tokenizer,
)
from ray_rec.train import tasks
from ray_rec.train.batch import SFTBackend, collate, response_loss, tokens_per_micro_batch, train_step
from ray_rec.train.config import TASKS, ModelSection, SFTConfig, TasksSection
from ray_rec.trainer.backend import param_groups
from ray_rec.trainer.deepspeed_config import deepspeed_config
from ray_rec.trainer.schedule import epoch_order, get_lr, micro_batches, rank_indices

CODES = {0: [1, 2, 3], 1: [4, 5, 6], 2: [7, 0, 2]}
TITLES = {0: "Red tape", 1: "Blue glue", 2: "Green saw"}
SAMPLES = tasks.Samples(users=[5], histories=[[0, 1]], targets=[2], path="samples_train.parquet")
EOS = "<|endoftext|>"
SID0, SID1, SID2 = "<a_1><b_2><c_3>", "<a_4><b_5><c_6>", "<a_7><b_0><c_2>"
HEAD = "Items the user bought, oldest first:"


@pytest.fixture(scope="module")
def tok():
    t = train_bpe_tokenizer(list(TITLES.values()) * 5 + [HEAD, "Title of the next item"], vocab_size=300)
    add_sid_tokens(t, [8, 8, 8])
    return t


def split(tok, ids, labels):
    """(prompt text, response text) of one example, checking the labels are exactly the response."""
    ids, labels = list(ids), list(labels)
    start = next(i for i, y in enumerate(labels) if y != -100)
    assert all(y == -100 for y in labels[:start])
    assert labels[start:] == ids[start:], "labels must equal the ids on the response"
    return tok.decode(ids[:start]), tok.decode(ids[start:])


EXPECTED = {
    "sid_next": (HEAD + SID0 + SID1, SID2 + EOS),
    "sid_to_title": ("Title of item " + SID2 + ":", " Green saw" + EOS),
    "title_to_sid": ('Semantic ID of the item titled "Green saw":', SID2 + EOS),
    "sid_history_title": (HEAD + SID0 + SID1 + "\nTitle of the next item:", " Green saw" + EOS),
    "title_history_title": (HEAD + ' "Red tape"; "Blue glue"\nTitle of the next item:', " Green saw" + EOS),
    "title_history_sid": (HEAD + ' "Red tape"; "Blue glue"\nSemantic ID of the next item:', SID2 + EOS),
}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_each_task_prompt_and_label_mask(tok, task):
    sids = tasks.sid_token_ids(tok, CODES)
    pairs = tasks.task_pairs(task, tok, SAMPLES, CODES, sids, TITLES, TasksSection())
    # item tasks make one example per item: the hand-written one is item 2's
    ids, labels = pairs[-1]
    assert split(tok, ids, labels) == EXPECTED[task]
    assert ids[-1] == tok.eos_token_id and tok.bos_token_id is None


def test_valid_examples_label_the_target_sid_without_eos(tok):
    valid = tasks.valid_examples(tok, SAMPLES, CODES, TasksSection(), max_samples=0)
    ids, labels = valid.get(0)
    assert tok.decode(ids) == HEAD + SID0 + SID1 + SID2 + EOS
    assert tok.decode([i for i, y in zip(ids, labels, strict=True) if y != -100]) == SID2


def test_whole_sequence_task_labels_every_item_after_the_first(tok):
    sids = tasks.sid_token_ids(tok, CODES)
    samples = tasks.Samples([5, 5], [[0], [0, 1]], [1, 2])  # growing prefixes of one user: sequence 0, 1, 2
    (ids, labels), = tasks.task_pairs("sid_seq", tok, samples, CODES, sids, TITLES, TasksSection())
    assert split(tok, ids, labels) == (HEAD + SID0, SID1 + SID2 + EOS)


def test_prompt_contract_with_evaluation(tok):
    """encode_prompt + SID tokens + EOS is exactly what training saw, and equals tokenizing the joined text."""
    sids = tasks.sid_token_ids(tok, CODES)
    (ids, labels), = tasks.sid_next_examples(tok, SAMPLES, sids, max_history=10)
    prompt = prompts.encode_prompt(tok, [CODES[0], CODES[1]])
    assert ids[:len(prompt)] == prompt and labels[len(prompt)] != -100
    assert ids == prompts.encode_text(tok, prompts.history_prompt([CODES[0], CODES[1]])
                                      + prompts.response_text(CODES[2])) + [tok.eos_token_id]
    assert prompts.encode_pair(tok, prompts.history_prompt([CODES[0], CODES[1]]), prompts.response_text(CODES[2])) \
        == (ids, labels)
    # the batch encoder of the text tasks matches the one-example contract function
    texts = tasks.text_pairs("title_history_title", SAMPLES, CODES, TITLES, TasksSection())
    assert tasks.encode_pairs(tok, texts) == [prompts.encode_pair(tok, *texts[0])]


def test_weighted_task_mix(tok):
    cfg = TasksSection(sid_next=2.0, sid_to_title=0.5, title_to_sid=1.0)
    ex, counts = tasks.build_examples(tok, cfg, SAMPLES, CODES, TITLES)
    assert counts["sid_next"]["examples"] == 2 and counts["title_to_sid"]["examples"] == 3
    assert counts["sid_to_title"]["examples"] == 2  # round(0.5 * 3)
    assert len(ex) == 7 and list(np.bincount(ex.task, minlength=len(TASKS))[:4]) == [2, 0, 2, 3]
    rng = np.random.default_rng(0)
    assert sorted(tasks.weighted_indices(4, 1.5, rng).tolist()).count(0) in (1, 2)
    assert len(tasks.weighted_indices(4, 1.5, rng)) == 6


def test_schedule_and_sharding():
    assert get_lr(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert get_lr(9, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert get_lr(55, 100, 1.0, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert get_lr(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    cfg = load_config(SFTConfig, None, ["train.global_batch_size=8", "train.micro_batch_size=2"])
    for step in (0, 3, 7):  # 3 steps per epoch of 25 examples: step 3 opens epoch 1
        parts = [rank_indices(step, 25, cfg, r) for r in range(2)]
        assert all(len(p) == 4 for p in parts) and len(set(np.concatenate(parts))) == 8
    assert not np.array_equal(rank_indices(0, 25, cfg, 0), rank_indices(3, 25, cfg, 0))


def test_length_grouped_epochs_pad_less_and_still_cover_every_example():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    plain, grouped = epoch_order(1000, 64, 0, 0), epoch_order(1000, 64, 0, 0, lengths, group=5)
    assert sorted(grouped.tolist()) == list(range(1000))               # a permutation
    assert np.array_equal(grouped, epoch_order(1000, 64, 0, 0, lengths, group=5))  # seeded: resumable
    assert not np.array_equal(grouped, epoch_order(1000, 64, 0, 1, lengths, group=5))

    def padded(order):  # tokens of the padded batches of one epoch
        return sum(64 * lengths[order[s:s + 64]].max() for s in range(0, 960, 64))
    assert padded(grouped) < 0.7 * padded(plain)
    widths = [lengths[grouped[s:s + 64]].max() for s in range(0, 960, 64)]
    assert widths != sorted(widths, reverse=True)                        # batches are shuffled
    cfg = load_config(SFTConfig, None, ["train.global_batch_size=64", "train.micro_batch_size=32"])
    parts = [rank_indices(0, 1000, cfg, r, lengths) for r in range(2)]
    assert sorted(np.concatenate(parts).tolist()) == sorted(epoch_order(1000, 64, 0, 0, lengths)[:64].tolist())


def test_collate_pads_left_with_positions_from_zero(tok):
    ex = tasks.Examples.pack([([1, 2, 3], [-100, 2, 3]), ([4], [4])], [0, 0])
    b = collate(ex, [0, 1], pad_id=9)
    assert b["input_ids"].tolist() == [[1, 2, 3], [9, 9, 4]]
    assert b["labels"].tolist() == [[-100, 2, 3], [-100, -100, 4]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert b["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]


def test_response_loss_equals_the_full_loss_of_each_example(tok):
    """The output head on labelled columns only, over a left-padded batch of mixed tasks, gives the
    same summed loss as scoring each example alone with every logit."""
    model = build_model(ModelSection(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1), tok).eval()
    pairs = tasks.sid_next_examples(tok, SAMPLES, tasks.sid_token_ids(tok, CODES), 10)
    pairs += tasks.encode_pairs(tok, tasks.text_pairs("sid_to_title", SAMPLES, CODES, TITLES, TasksSection()))
    ex = tasks.Examples.pack(pairs, [0] * len(pairs))
    with torch.no_grad():
        total, count = response_loss(model, collate(ex, range(len(ex)), pad_id=int(tok.pad_token_id)))
        expected, n = 0.0, 0
        for ids, labels in pairs:
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            y = torch.tensor(labels[1:])
            expected += float(torch.nn.functional.cross_entropy(logits, y, ignore_index=-100, reduction="sum"))
            n += int((y != -100).sum())
    assert int(count) == n
    assert float(total) == pytest.approx(expected, rel=1e-4)


def test_every_labelled_token_weighs_the_same_across_batches(tok):
    """With a fixed tokens_per_micro the gradient of a step is its summed token loss over that fixed
    count, so a batch of short examples does not weigh more per token than one of long examples."""
    cfg = load_config(SFTConfig, None, ["train.backend=ddp", "train.global_batch_size=2", "train.micro_batch_size=2",
                                        "resources.workers=1", "train.grad_clip=0"])
    pairs = tasks.sid_next_examples(tok, SAMPLES, tasks.sid_token_ids(tok, CODES), 10)
    pairs += tasks.encode_pairs(tok, tasks.text_pairs("sid_to_title", SAMPLES, CODES, TITLES, TasksSection()))
    ex = tasks.Examples.pack(pairs, [0] * len(pairs))
    norm = tokens_per_micro_batch(ex, cfg)
    assert norm == pytest.approx(sum(int((np.array(lab) != -100).sum()) for _, lab in pairs) / len(pairs) * 2)
    model = build_model(ModelSection(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1), tok, seed=1)
    batch = collate(ex, [0, 1], pad_id=int(tok.pad_token_id))
    backend = SFTBackend(model, cfg, torch.device("cpu"), tokens_per_micro=norm)
    mean = backend.forward_backward(batch, last=True)
    got = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()
    total, count = response_loss(model, batch)
    assert mean == pytest.approx(float((total / count).detach()), rel=1e-5)
    (total / norm).backward()
    assert torch.allclose(got, model.model.embed_tokens.weight.grad, atol=1e-7)


def test_sorted_micro_batches_give_the_same_gradient(tok):
    """sort_micro_batches: a step's examples ordered by length before the cut into micro-batches pad
    less and leave the step's gradient unchanged."""
    cfg = load_config(SFTConfig, None, ["train.backend=ddp", "train.global_batch_size=4", "train.micro_batch_size=2",
                                        "resources.workers=1", "train.grad_clip=0"])
    samples = tasks.Samples(users=[1, 2, 3, 4], histories=[[0, 1, 2, 0, 1, 2], [0], [2, 1, 0, 2, 1], [1]],
                            targets=[1, 0, 2, 0], path="samples_train.parquet")
    pairs = tasks.sid_next_examples(tok, samples, tasks.sid_token_ids(tok, CODES), 10)
    ex = tasks.Examples.pack(pairs, [0] * len(pairs))
    lengths = np.diff(ex.offsets)
    step = np.array([0, 1, 2, 3])  # long, short, long, short
    assert min(lengths[[0, 2]]) > max(lengths[[1, 3]])
    model = build_model(ModelSection(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1), tok, seed=1)
    backend = SFTBackend(model, cfg, torch.device("cpu"), tokens_per_micro=tokens_per_micro_batch(ex, cfg))
    grads, widths = [], []
    for order in (None, lengths):
        model.zero_grad()
        parts = micro_batches(step, 2, order)
        batches = [collate(ex, p, pad_id=int(tok.pad_token_id)) for p in parts]
        for m, batch in enumerate(batches):
            backend.forward_backward(batch, last=m == len(batches) - 1)
        grads.append(model.model.embed_tokens.weight.grad.clone())
        widths.append(sum(b["input_ids"].numel() for b in batches))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert widths[1] < widths[0]  # fewer padded positions


def test_train_step_lowers_the_loss_and_counts_tokens(tok):
    """The loop's optimizer step (micro-batches, forward/backward, step) trains: repeated on one batch
    its loss falls, and it reports the batch's real tokens and padded positions."""
    cfg = load_config(SFTConfig, None, ["train.backend=ddp", "train.global_batch_size=4", "train.micro_batch_size=2",
                                        "resources.workers=1", "train.lr=0.01"])
    samples = tasks.Samples(users=[1, 2, 3, 4], histories=[[0, 1, 2, 0], [0], [2, 1], [1, 2, 0]],
                            targets=[1, 0, 2, 1], path="samples_train.parquet")
    ex = tasks.Examples.pack(tasks.sid_next_examples(tok, samples, tasks.sid_token_ids(tok, CODES), 10), [0] * 4)
    lengths = np.diff(ex.offsets)
    model = build_model(ModelSection(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1), tok, seed=1)
    backend = SFTBackend(model, cfg, torch.device("cpu"), tokens_per_micro=tokens_per_micro_batch(ex, cfg))
    backend.train(True)
    losses = []
    for _ in range(20):
        loss, tokens, positions = train_step(backend, ex, np.arange(4), cfg, int(tok.pad_token_id), lengths)
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0]
    assert tokens == int(lengths.sum())
    longest_first = np.sort(lengths)[::-1]
    assert positions == 2 * int(longest_first[0]) + 2 * int(longest_first[2])  # sorted: the longest two together


def test_deepspeed_config_from_sft_config():
    cfg = load_config(SFTConfig, None, ["train.global_batch_size=32", "train.micro_batch_size=4",
                                        "resources.workers=2", "train.grad_clip=0.5"])
    ds = deepspeed_config(cfg)
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) \
        == (32, 4, 4)
    assert ds["zero_optimization"]["stage"] == 2 and ds["gradient_clipping"] == 0.5
    assert ds["bf16"] == {"enabled": False}
    gpu = load_config(SFTConfig, None, ["resources.use_gpu=true"])
    assert deepspeed_config(gpu)["bf16"] == {"enabled": True}
    assert deepspeed_config(load_config(SFTConfig, None, ["resources.use_gpu=true", "train.precision=fp32"]))[
        "bf16"] == {"enabled": False}


def test_dropout_acts_in_training_only(tok):
    """model.dropout: two training-mode passes differ, evaluation equals the same model without it."""
    ids = torch.tensor([prompts.encode_prompt(tok, [[1, 2, 3]])])
    section = dict(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1)
    plain = build_model(ModelSection(**section), tok, seed=3)
    noisy = build_model(ModelSection(**section, dropout=0.3), tok, seed=3)
    assert add_dropout(noisy, 0.3) == 1 + 2 * 2  # embeddings + attention and MLP of each block
    assert add_dropout(plain, 0.0) == 0
    with torch.no_grad():
        noisy.train(), plain.train()
        assert not torch.equal(noisy(input_ids=ids).logits, noisy(input_ids=ids).logits)
        assert torch.equal(plain(input_ids=ids).logits, plain(input_ids=ids).logits)
        noisy.eval(), plain.eval()
        assert torch.allclose(noisy(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-6)
    with pytest.raises(ConfigError, match="dropout"):
        ModelSection(dropout=1.0)


def test_freeze_base_moves_only_new_rows(tok):
    model = build_model(ModelSection(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1), tok)
    first = first_sid_id(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = freeze_base(model, first)
    assert trainable == ["model.embed_tokens.weight"]  # tied with the head
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-2)
    ids = torch.tensor([prompts.encode_prompt(tok, [[1, 2, 3]]) + [tok.convert_tokens_to_ids("<a_4>")]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb[:first], before["model.embed_tokens.weight"][:first])
    assert not torch.equal(emb[first:], before["model.embed_tokens.weight"][first:])
    for n, p in model.named_parameters():
        if n != "model.embed_tokens.weight":
            assert torch.equal(p, before[n]), n


def test_codebook_sizes_include_dedup_level(tmp_path):
    from ray_rec import artifacts
    from ray_rec.sid.index_io import codebook_sizes, pad_codes, write_codes

    rows = [[3, 1, 0], [0, 7, 2, 1], [1, 1, 1]]
    table = pa.table({"item_id": [0, 1, 2], "codes": rows})
    assert codebook_sizes(table) == [4, 8, 3, 2]  # a file written elsewhere: largest code + 1
    # stored with the codes: an unused top code keeps its place in the vocabulary
    path = write_codes(np.arange(3), pad_codes(rows), tmp_path / "codes.parquet", sizes=[8, 8, 8, 2])
    assert codebook_sizes(artifacts.read_codes(path)) == [8, 8, 8, 2]
    with pytest.raises(ValueError, match="do not cover"):
        write_codes(np.arange(3), pad_codes(rows), tmp_path / "bad.parquet", sizes=[2, 8, 8, 2])


# ---------------------------------------------------------------- bad input

def test_history_item_without_sid_names_row_and_field():
    s = tasks.Samples([1, 2], [[0, 1], [0, 99]], [2, 1], path="samples_train.parquet")
    with pytest.raises(InputError, match=r"samples_train.parquet:1: field 'history': item 99 has no SID.*rerun"):
        tasks.check_sids(s, CODES, "codes.parquet")


def test_sid_token_missing_from_tokenizer(tok):
    with pytest.raises(InputError, match=r"SID token <c_9> \(item 3\) is missing from the tokenizer"):
        tasks.sid_token_ids(tok, {**CODES, 3: [1, 1, 9]})


def test_empty_task_mix_is_refused():
    off = [f"tasks.{t}=0" for t in TASKS]
    with pytest.raises(ConfigError, match="task mix is empty.*tasks.sid_next=1"):
        load_config(SFTConfig, None, off)
    with pytest.raises(ConfigError, match="multiple of"):
        load_config(SFTConfig, None, ["train.global_batch_size=10", "train.micro_batch_size=4"])


def test_model_path_that_is_not_a_causal_lm(tmp_path):
    from transformers import BertConfig

    with pytest.raises(InputError, match="is not a folder"):
        check_model_folder(tmp_path / "nope")
    with pytest.raises(InputError, match="no config.json"):
        check_model_folder(tmp_path)
    BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=8, architectures=["BertForMaskedLM"]).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="'bert' model .BertForMaskedLM., not a causal LM"):
        build_model_and_tokenizer(ModelSection(path=str(tmp_path)), pa.table({"title": ["a"]}), [4])


def test_local_model_folder_gets_sid_tokens(tmp_path, tok):
    """A local HF causal-LM folder (here a tiny saved Qwen2) is loaded, and SID tokens are added to it."""
    plain = train_bpe_tokenizer(["red tape blue glue"] * 3, vocab_size=280)
    build_model(ModelSection(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1), plain).save_pretrained(tmp_path)
    plain.save_pretrained(tmp_path)
    model, t = build_model_and_tokenizer(ModelSection(path=str(tmp_path)), pa.table({"title": ["x"]}), [4, 4])
    assert len(t) == len(plain) + 8 and model.get_input_embeddings().num_embeddings >= len(t)
    assert t.convert_tokens_to_ids("<b_3>") == len(t) - 1
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2"


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from ray_rec.cli import main

    off = [x for t in TASKS for x in ("--set", f"tasks.{t}=0")]
    assert main(["sft", "--run", str(tmp_path), *off]) == 2
    assert "task mix is empty" in capsys.readouterr().err
    assert main(["sft", "--run", str(tmp_path), "--set", "train.lr=1e-3"]) == 2  # nothing prepared in the run
    err = capsys.readouterr().err
    assert "codes.parquet does not exist; run the SID stage first" in err and len(err.strip().splitlines()) == 1


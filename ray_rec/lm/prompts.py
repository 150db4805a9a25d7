"""Every prompt template of the SFT tasks, in one place, and how a prompt becomes token ids.

The main task reads a user's history as SID tokens, oldest first, and continues with the next item's
SID. The history is written with no separator between items (each SID starts with its level-``a``
token, so items delimit themselves), which makes the prompt of any history a token-prefix of the
prompt of a longer one: the whole-sequence variant of the main task trains on exactly the text that
:func:`history_prompt` gives for every prefix of the sequence.

Tokenization contract (training and evaluation both go through :func:`encode_text`):

* text is tokenized with ``add_special_tokens=False``; when the tokenizer *has* a BOS token
  (``tokenizer.bos_token_id is not None``, e.g. Llama) it is prepended once at the start of the
  prompt; the default tokenizer of :mod:`ray_rec.lm.model` and Qwen2.5 have none, so nothing is
  prepended for them;
* the prompt and the response are tokenized separately and concatenated (SID tokens are added tokens,
  so for SID text this equals tokenizing the joined string), then the EOS token is appended; the loss
  covers the response tokens and EOS only.

So the evaluation side scores ``encode_prompt(tokenizer, history)`` followed by the SID tokens of
``response_text(target)`` and then EOS::

    ids = encode_prompt(tokenizer, [[1, 2, 3], [4, 5, 6]])   # "...oldest first:<a_1><b_2><c_3><a_4><b_5><c_6>"
"""

from __future__ import annotations

from collections.abc import Sequence

from ray_rec.sid.tokens import render_sid

# The templates. Changing any of them changes what a trained model expects: keep them stable.
HISTORY_HEAD = "Items the user bought, oldest first:"
TITLE_SEP = "; "
NEXT_TITLE = "\nTitle of the next item:"
NEXT_SID = "\nSemantic ID of the next item:"
SID_TITLE_HEAD = "Title of item "
TITLE_SID_HEAD = "Semantic ID of the item titled "


def history_prompt(history_codes: Sequence[Sequence[int]]) -> str:
    """Main task prompt: the history's SIDs, oldest first, after a fixed head (no trailing space).

    >>> history_prompt([[1, 2, 3], [4, 5, 6]])
    'Items the user bought, oldest first:<a_1><b_2><c_3><a_4><b_5><c_6>'
    """
    return HISTORY_HEAD + "".join(render_sid(c) for c in history_codes)


def response_text(target_codes: Sequence[int]) -> str:
    """Main task response: the target's SID (the model then emits EOS).

    >>> response_text([7, 0, 2])
    '<a_7><b_0><c_2>'
    """
    return render_sid(target_codes)


def quote(title: str) -> str:
    """A title inside a prompt: double-quoted, inner double quotes turned into single ones."""
    return '"' + title.replace('"', "'") + '"'


def title_response(title: str) -> str:
    """A title as a response: one leading space, as it would follow the colon in running text."""
    return " " + title


def sid_to_title_prompt(codes: Sequence[int]) -> str:
    """SID -> title prompt.

    >>> sid_to_title_prompt([1, 2])
    'Title of item <a_1><b_2>:'
    """
    return SID_TITLE_HEAD + render_sid(codes) + ":"


def title_to_sid_prompt(title: str) -> str:
    """Title -> SID prompt.

    >>> title_to_sid_prompt('Blue tape')
    'Semantic ID of the item titled "Blue tape":'
    """
    return TITLE_SID_HEAD + quote(title) + ":"


def sid_history_title_prompt(history_codes: Sequence[Sequence[int]]) -> str:
    """SID history -> the next item's title."""
    return history_prompt(history_codes) + NEXT_TITLE


def title_history(titles: Sequence[str]) -> str:
    """A history written as quoted titles, oldest first.

    >>> title_history(['A', 'B c'])
    'Items the user bought, oldest first: "A"; "B c"'
    """
    return HISTORY_HEAD + " " + TITLE_SEP.join(quote(t) for t in titles)


def title_history_title_prompt(titles: Sequence[str]) -> str:
    """Title history -> the next item's title."""
    return title_history(titles) + NEXT_TITLE


def title_history_sid_prompt(titles: Sequence[str]) -> str:
    """Title history -> the next item's SID."""
    return title_history(titles) + NEXT_SID


def encode_text(tokenizer, text: str, bos: bool = False) -> list[int]:
    """Token ids of ``text`` with no special tokens added, except BOS first when ``bos`` is set and
    the tokenizer has one (see the module docstring)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if bos and tokenizer.bos_token_id is not None:
        ids = [int(tokenizer.bos_token_id)] + ids
    return ids


def encode_prompt(tokenizer, history_codes: Sequence[Sequence[int]]) -> list[int]:
    """The exact token ids a trained model saw before the target's SID for this history."""
    return encode_text(tokenizer, history_prompt(history_codes), bos=True)


def encode_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one example: BOS? + prompt + response + EOS, labels -100 on the prompt.

    The response is tokenized on its own (so the label boundary is exact) and EOS is appended.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; a response must end with one")
    head = encode_text(tokenizer, prompt, bos=True)
    tail = encode_text(tokenizer, response) + [int(tokenizer.eos_token_id)]
    return head + tail, [-100] * len(head) + tail

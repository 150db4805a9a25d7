"""The commented YAML files in jobs/configs stay in step with the config dataclasses they document.

* every shipped YAML loads under its stage's config class (no unknown key, every value valid);
* every config field, in every nested section, carries a non-empty help string;
* where a YAML comment or a help string lists a Literal field's choices as ``a | b | c``, the list is
  exactly the values the field accepts.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

from ray_rec.baseline.config import SASRecConfig
from ray_rec.config import load_config
from ray_rec.data.config import DataConfig, EmbedConfig
from ray_rec.eval.config import EvalConfig
from ray_rec.pipeline.config import PipelineConfig
from ray_rec.rl.config import RLConfig
from ray_rec.sid.config import SIDConfig
from ray_rec.toy.config import ToyConfig
from ray_rec.train.config import SFTConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "jobs" / "configs"

# File stem (or stem prefix before "_") -> config class; the first match wins, so data_embed precedes data.
CLASS_OF_STEM: list[tuple[str, type]] = [
    ("data_embed", EmbedConfig), ("data", DataConfig), ("evaluate", EvalConfig), ("pipeline", PipelineConfig),
    ("rl", RLConfig), ("sasrec", SASRecConfig), ("sft", SFTConfig), ("sid", SIDConfig), ("toy", ToyConfig),
]
YAMLS = sorted(CONFIG_DIR.glob("*.yaml"))
# "a | b | c", each choice possibly followed by a remark in parentheses: "a (the default) | b"
_CHOICE = r"\w+(?:\s*\([^)]*\))?"
CHOICES = re.compile(rf"{_CHOICE}(?:\s*\|\s*{_CHOICE})+")
KEY_COMMENT = re.compile(r"^(?P<indent>\s*)(?P<key>\w+):[^#]*#\s*(?P<comment>.*)$")


def listed_choices(text: str) -> set[str] | None:
    """The choices a comment or help string lists as ``a | b | c``, or None if it lists none."""
    found = CHOICES.search(text)
    return {re.match(r"\w+", part.strip()).group() for part in found.group().split("|")} if found else None


def config_class(path: Path) -> type:
    for stem, cls in CLASS_OF_STEM:
        if path.stem == stem or path.stem.startswith(stem + "_"):
            return cls
    raise AssertionError(f"{path.name}: no config class known for it; add its prefix to CLASS_OF_STEM")


def field_type(cls: type, keys: list[str]) -> Any:
    """The annotated type of the (nested) field ``keys`` of config ``cls``; None below a non-dataclass
    field (a free-form mapping such as a search space)."""
    tp: Any = cls
    for key in keys:
        if not dataclasses.is_dataclass(tp):
            return None
        tp = get_type_hints(tp)[key]
    return tp


def all_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, annotated type) of every field of ``cls`` and of its nested sections."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        out.append((prefix + f.name, f, hints[f.name]))
        if dataclasses.is_dataclass(hints[f.name]):
            out += all_fields(hints[f.name], prefix + f.name + ".")
    return out


def commented_keys(path: Path) -> list[tuple[list[str], str]]:
    """(key path, trailing comment) of every ``key: value  # comment`` line, sections followed by indent."""
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing sections
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\s*)(\w+):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        c = KEY_COMMENT.match(line)
        if c:
            out.append(([k for _, k in stack], c.group("comment")))
    return out


@pytest.mark.parametrize("path", YAMLS, ids=[p.name for p in YAMLS])
def test_shipped_yaml_loads_under_its_config(path: Path):
    cfg = load_config(config_class(path), path)
    assert isinstance(cfg, config_class(path))


def test_listed_choices_reads_remarks_and_plain_text():
    assert listed_choices("synthetic (embedded default) | lcrec | amazon (raw 2018 dumps)") == {
        "synthetic", "lcrec", "amazon"}
    assert listed_choices("rqkmeans | rqvae") == {"rqkmeans", "rqvae"}
    assert listed_choices("run folder (empty = default)") is None


def test_config_folder_is_found():
    assert len(YAMLS) >= 9, f"expected the stage configs in {CONFIG_DIR}"


@pytest.mark.parametrize("cls", sorted({c for _, c in CLASS_OF_STEM}, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_config_field_has_help(cls: type):
    missing = [name for name, f, _ in all_fields(cls) if not str(f.metadata.get("help", "")).strip()]
    assert not missing, f"{cls.__name__}: fields without a help string (declare them with option()): {missing}"


@pytest.mark.parametrize("cls", sorted({c for _, c in CLASS_OF_STEM}, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_choices_in_help_match_the_literal(cls: type):
    for name, f, tp in all_fields(cls):
        listed = listed_choices(f.metadata.get("help", ""))
        if get_origin(tp) is Literal and listed is not None:
            assert listed == set(get_args(tp)), \
                f"{cls.__name__}.{name}: help lists {sorted(listed)}, the field accepts {get_args(tp)}"


@pytest.mark.parametrize("path", YAMLS, ids=[p.name for p in YAMLS])
def test_choices_in_yaml_comments_match_the_literal(path: Path):
    cls = config_class(path)
    for keys, comment in commented_keys(path):
        listed = listed_choices(comment)
        tp = field_type(cls, keys)
        if get_origin(tp) is Literal and listed is not None:
            assert listed == set(get_args(tp)), \
                f"{path.name}: {'.'.join(keys)} comment lists {sorted(listed)}, the field accepts {get_args(tp)}"

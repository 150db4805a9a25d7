"""Config loading: YAML + overrides, unknown keys refused with the valid list, bad values explained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from ray_rec.config import ConfigError, load_config, option, to_dict


@dataclass(frozen=True)
class Inner:
    lr: float = option(1e-3, help="learning rate")
    pooling: Literal["mean", "last"] = option("mean", help="pooling")


@dataclass(frozen=True)
class Outer:
    name: str = option("run", help="run name")
    epochs: int = option(3, help="epochs")
    ks: list[int] = option([5, 10], help="cut-offs")
    amp: bool = option(False, help="mixed precision")
    device: str | None = option(None, help="device")
    train: Inner = option(Inner(), help="training section")

    def __post_init__(self):
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}; set epochs=1 or more")


def test_defaults_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# a comment\nepochs: 5\ntrain:\n  pooling: last  # why\n")
    cfg = load_config(Outer, p, ["train.lr=3e-4", "ks=[1,2,3]", "amp=true", "device=cuda"])
    assert cfg.epochs == 5 and cfg.train.pooling == "last"
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.ks == [1, 2, 3] and cfg.amp is True and cfg.device == "cuda"
    assert to_dict(cfg)["train"] == {"lr": 3e-4, "pooling": "last"}


def test_mutable_default_not_shared():
    a, b = Outer(), Outer()
    a.ks.append(99)
    assert b.ks == [5, 10]


def test_unknown_key_lists_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) epoch; valid keys: name, epochs, ks, amp, device, train"):
        load_config(Outer, None, ["epoch=3"])
    with pytest.raises(ConfigError, match=r"train.learning_rate.*valid keys under train: lr, pooling"):
        load_config(Outer, None, ["train.learning_rate=3"])


@pytest.mark.parametrize("override,pattern", [
    ("epochs=three", r"epochs: expected an integer, got 'three'"),
    ("epochs=0", r"epochs must be positive"),
    ("amp=maybe", r"amp: expected true or false"),
    ("train.pooling=max", r"train.pooling: 'max' is not one of \['mean', 'last'\]"),
    ("ks=5", r"ks: expected a list"),
    ("nodot", r"must look like key=value"),
])
def test_bad_values_explained(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(Outer, None, [override])


def test_bad_yaml_names_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Outer, p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_option_requires_help():
    with pytest.raises(TypeError):
        option(1)


def test_keys_that_moved_into_resources_say_where_they_went():
    from ray_rec.eval.config import EvalConfig
    from ray_rec.train.config import SFTConfig

    with pytest.raises(ConfigError, match=r"scaling is now resources \(workers"):
        load_config(SFTConfig, None, ["scaling.num_workers=4"])
    with pytest.raises(ConfigError, match="num_actors is now resources.workers"):
        load_config(EvalConfig, None, ["num_actors=4"])
    cfg = load_config(EvalConfig, None, ["resources.workers=4", "resources.use_gpu=true"])
    assert cfg.resources.workers == 4 and cfg.resources.device == "cuda"


def test_the_cli_sets_the_project_environment_before_any_command_imports_ray():
    import subprocess
    import sys

    # a fresh interpreter without the variables: the CLI entry point must set them before dispatching
    code = ("import os, sys\n"
            "for k in ('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', 'HF_HUB_OFFLINE'): os.environ.pop(k, None)\n"
            "from ray_rec.cli import main\n"
            "assert 'ray' not in sys.modules, 'the CLI imported ray before setting up the environment'\n"
            "try:\n    main(['toy', 'train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'], os.environ['HF_HUB_OFFLINE'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 1"

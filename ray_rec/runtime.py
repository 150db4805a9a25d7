"""Process environment and Ray start-up, set by the project rather than by hand.

Every entry point calls :func:`setup_env` before importing heavy libraries and :func:`init_ray`
before launching Ray work. They make a local Ray bind to 127.0.0.1, switch off usage stats,
keep Hugging Face offline (nothing is downloaded at run time) and pin torch thread counts so two
processes sharing a small machine do not thrash.
"""

from __future__ import annotations

import os
from typing import Any

# Defaults only: a value the user exported wins.
_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Binds every Ray socket of a local cluster to the loopback interface (see docs/running.md).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # ray.train.report blocks ~2 s per call on the default interval.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def setup_env(detect_gpu: bool = True) -> dict[str, str]:
    """Set the project's environment defaults; return the variables workers must inherit.
    ``detect_gpu=False`` skips choosing DeepSpeed's accelerator (it imports torch, ~1.5 s), which
    :func:`init_ray` does before any work starts."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if detect_gpu and "DS_ACCELERATOR" not in os.environ and not _cuda_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        # A persistent cache spares DeepSpeed's ~30 s op compilation on later runs.
        os.environ["TORCH_EXTENSIONS_DIR"] = os.path.expanduser("~/.cache/ray_rec/torch_extensions")
    keys = list(_ENV_DEFAULTS) + ["DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR"]
    return {k: os.environ[k] for k in keys if k in os.environ}


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # torch missing or broken: treat as no GPU
        return False


def set_threads(n: int = 1) -> None:
    """Pin torch intra-op threads; with 2 cores shared by 2 processes, more threads run ~12x slower."""
    import torch
    torch.set_num_threads(max(1, n))


def init_ray(num_cpus: int | None = None, address: str | None = None, dashboard: bool = True,
             **kwargs: Any) -> Any:
    """Connect to the cluster at ``address`` (or ``RAY_ADDRESS``, as under ``ray job submit``),
    else start a local Ray bound to 127.0.0.1. Idempotent."""
    env = setup_env()
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # Under `ray job submit` the job's runtime env already applies; Ray refuses to merge a second
        # env_vars dict into it, so workers get the project's variables from jobs/runtime_env.yaml.
        return ray.init(address=address, log_to_driver=True, **kwargs)
    runtime_env = {"env_vars": env}
    return ray.init(
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        runtime_env=runtime_env,
        configure_logging=True,
        logging_level="WARNING",
        **kwargs,
    )

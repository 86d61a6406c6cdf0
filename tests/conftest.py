"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent (a user's machine);
.ci/run refuses to start without it, so CI never skips them."""

from __future__ import annotations

import os

# Before any Hugging Face import: a Hub lookup without network stalls for over a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# Knowledge indexes built by tests go to a cache inside the checkout (git-ignored), not the user's home; one per
# pytest-xdist worker, since two processes building one signal cache at once would write the same rows.
os.environ.setdefault(
    "ECGLANG_CACHE",
    os.path.join(
        os.path.dirname(os.path.dirname(__file__)), ".cache", "tests", os.environ.get("PYTEST_XDIST_WORKER", "main")
    ),
)

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes (`make test`): one thread each, so
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # two processes on two cores do not spin-wait on each other

from pathlib import Path

import pytest

from ecglang.core.paths import shared_data_dir

SHARED = shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} not found (it ships beside the repo for development and CI)")
    return SHARED


@pytest.fixture(scope="session")
def ptbxl_dir(shared_data: Path) -> Path:
    return shared_data / "ptbxl-sample"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests, restored afterwards. CI cores are shared: with another job on the
    second core, two OpenMP threads spin-wait on each other and small ops get ~10× slower."""
    import torch  # here: tests that never touch torch do not pay for it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A small beat tower (with or without age/sex fusion) on the real MiniLM text tower: fast enough for many tests.
TINY_TOWER = {
    "ecg_tower": {"d_model": 32, "n_layers": 1, "n_heads": 2, "mlp_ratio": 2.0, "cnn_channels": [8, 16],
                  "dropout": 0.0},
    "text_tower": {"max_length": 32, "max_sentences": 4, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    "projection": {"dim": 32},
}  # fmt: skip


@pytest.fixture
def tiny_model():
    """`tiny_model(demographics: bool)`: a seeded, eval-mode `ecglang-small` with `TINY_TOWER` sizes."""
    import torch

    from ecglang.encoders.registry import create_model

    def make(demographics: bool):
        torch.manual_seed(0)
        tower = {**TINY_TOWER["ecg_tower"], "demographics": demographics}
        return create_model("ecglang-small", **{**TINY_TOWER, "ecg_tower": tower}).eval()

    return make


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained model (`ecglang-small`, seed 0) saved as a complete checkpoint, one per test module:
    tests must not depend on the bundled one, and a module may alter its copy."""
    import torch

    from ecglang.encoders.registry import create_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "ecglang-small"
    create_model("ecglang-small").save_pretrained(out)
    return out

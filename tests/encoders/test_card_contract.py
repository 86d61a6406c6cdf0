"""The model card's preprocessing contract shows every setting that changes the model's input, and its Usage section
scores a file. Before: the table said "band-pass 0.5–40 Hz (zero-phase)" with neither the filter's type and order nor
the edge padding (`edge_pad`, which moves scores by up to 0.05), and Usage showed only how to load the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.registry import create_model
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.signal.simulate import simulate_ecg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_ECG_TOWER = {"d_model": 32, "n_layers": 1, "n_heads": 2, "mlp_ratio": 2.0, "cnn_channels": [8, 16], "dropout": 0.0}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small beat-tower model saved with a contract that differs from the defaults where the card was silent."""
    torch.manual_seed(0)
    model = create_model("ecglang-small", ecg_tower=TINY_ECG_TOWER, projection={"dim": 32}).eval()
    processor = EcgProcessor.from_dict({"preprocess": {"edge_pad": "odd", "filter_order": 3, "max_gap_s": 0.1}})
    folder = tmp_path_factory.mktemp("card") / "model"
    model.save_pretrained(folder, processor=processor)
    return folder


def section(card: str, name: str) -> str:
    return card.split(f"\n## {name}\n")[1].split("\n## ")[0]


def test_the_contract_names_the_filter_and_its_edge_padding(saved: Path) -> None:
    contract = section((saved / "README.md").read_text(encoding="utf-8"), "Preprocessing contract")
    row = next(line for line in contract.splitlines() if line.startswith("| filtering |"))
    assert "Butterworth band-pass 0.5–40 Hz, order 3, zero-phase" in row, row
    assert 'edge_pad "odd"' in row, row


def test_the_contract_lists_every_setting_of_processor_config(saved: Path) -> None:
    contract = section((saved / "README.md").read_text(encoding="utf-8"), "Preprocessing contract")
    saved_settings = json.loads((saved / "processor_config.json").read_text(encoding="utf-8"))
    for part in ("preprocess", "beats"):  # the beat tower reads both
        line = next(line for line in contract.splitlines() if line.startswith(f"- `{part}`: "))
        for key, value in saved_settings[part].items():
            assert f"`{key}={json.dumps(value)}`" in line, (part, key)
    assert "`max_gap_s=0.1`" in contract and '`edge_pad="odd"`' in contract and "`filter_order=3`" in contract


def test_the_usage_example_scores_a_file_and_gives_features(saved: Path, tmp_path: Path) -> None:
    card = (saved / "README.md").read_text(encoding="utf-8")
    usage = section(card, "Usage")
    code = re.search(r"```python\n(.*?)```", usage, flags=re.S).group(1)
    assert "ZeroShotClassifier" in code and "get_ecg_features" in code
    ecg = simulate_ecg(heart_rate=72, seed=0)
    wfdb.wrsamp("record", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                p_signal=ecg.signal.T.astype(float), fmt=["16"] * 12, write_dir=str(tmp_path))  # fmt: skip
    code = code.replace("path/or/hub-id", str(saved)).replace("path/to/record.hea", str(tmp_path / "record.hea"))
    names: dict = {}
    exec(compile(code, "model card usage", "exec"), names)  # the card's own example, placeholders filled in
    assert names["result"].scores.shape == (1, 2) and not names["result"].failures
    features = names["ecg_features"]
    assert features.shape == (1, 32) and np.allclose(features.norm(dim=-1).detach().numpy(), 1.0, atol=1e-5)
    assert names["cosine"].shape == (1, 2)

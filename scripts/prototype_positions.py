"""What the nearest prototype of a beat shares with it: its position, and the record's clinical picture.

Beat embeddings are contextual: the rhythm model lets every beat attend to the others, and each carries its beat
index and time. This script measures what that means for case-based explanations, on the PTB-XL sample:
records are split 2:1 (seeded) into a reference set and queries; for every query beat it takes the nearest
reference beat (cosine) and reports how often the two sit at the same beat index, and how often their records
agree on PTB-XL's NORM superclass (beside the agreement expected by chance): by the plain cosine of the
embeddings, and through `PrototypeIndex.search`, which centres each beat on its position's reference mean.

    python scripts/prototype_positions.py --ptbxl ../shared/data/ptbxl-sample [--model checkpoints/ecglang-mini]

The README's prototype paragraph quotes its output. Labels are read only to describe the matches.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ecglang.embeddings.pipeline import default_processor, encode_batches
from ecglang.embeddings.prototypes import PrototypeIndex
from ecglang.embeddings.sources import ItemSource
from ecglang.encoders.modeling import load_model


def beat_embeddings(model_path: str | None, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(unit embeddings [n, D], beat index [n], record id [n])` of every beat of `paths`."""
    model = load_model(model_path, "cpu")
    emb, index, record = [], [], []
    for batch in encode_batches(ItemSource(paths), model, default_processor(model), full=True, progress=True):
        out = batch.outputs["model"]
        for row, (rid, view) in enumerate(zip(batch.record_ids, batch.views, strict=True)):
            n = view[1].n_beats
            emb.append(out.beat_embeds[row, :n].float().numpy())
            index.append(np.arange(n))
            record += [rid] * n
    return np.concatenate(emb), np.concatenate(index), np.array(record)


def nearest_agreement(
    emb: np.ndarray,
    index: np.ndarray,
    record: np.ndarray,
    reference: np.ndarray,
    normal: dict[str, bool],
    centre: bool,
) -> tuple[float, float]:
    """(same beat index, same NORM status) of each query beat and its nearest reference beat: through
    `PrototypeIndex.search` (position-centred), or by the plain cosine of the embeddings (`centre=False`)."""
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    if centre:
        ids = sorted(set(record[reference]))
        row = {rid: i for i, rid in enumerate(ids)}
        protos = PrototypeIndex(
            unit[reference], [{"id": rid} for rid in ids], np.array([row[r] for r in record[reference]]),
            index[reference], np.ones((int(reference.sum()), 12), bool), None, {},
        )  # fmt: skip
        top = np.array([h[0].row for h in protos.search(unit[~reference], k=1, positions=index[~reference])])
    else:
        top = (unit[~reference] @ unit[reference].T).argmax(1)
    same_index = float(np.mean(index[~reference] == index[reference][top]))
    pairs = zip(record[~reference], record[reference][top], strict=True)
    return same_index, float(np.mean([normal[a] == normal[b] for a, b in pairs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ptbxl", type=Path, required=True, help="PTB-XL folder with ptbxl_database.csv")
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled ecglang-mini)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    db = pd.read_csv(args.ptbxl / "ptbxl_database.csv")
    scp = pd.read_csv(args.ptbxl / "scp_statements.csv", index_col=0)
    superclass = scp[scp["diagnostic"] == 1]["diagnostic_class"].to_dict()
    normal = {
        Path(f).name: "NORM" in {superclass.get(c) for c in ast.literal_eval(codes)}
        for f, codes in zip(db["filename_hr"], db["scp_codes"], strict=True)
    }
    emb, index, record = beat_embeddings(args.model, [args.ptbxl / f for f in db["filename_hr"]])
    ids = np.array(sorted(set(record)))
    np.random.default_rng(args.seed).shuffle(ids)
    reference_ids = set(ids[: len(ids) * 2 // 3])
    reference = np.array([r in reference_ids for r in record])
    p_ref = np.mean([normal[r] for r in record[reference]])
    p_query = np.mean([normal[r] for r in record[~reference]])
    chance = p_query * p_ref + (1 - p_query) * (1 - p_ref)
    print(f"{(~reference).sum()} query beats of {len(ids) - len(reference_ids)} records; "
          f"{reference.sum()} reference beats of {len(reference_ids)} records")  # fmt: skip
    for name, centre in (("plain cosine", False), ("PrototypeIndex.search (position-centred)", True)):
        same_index, same_norm = nearest_agreement(emb, index, record, reference, normal, centre)
        print(f"{name}: nearest prototype at the same beat index {same_index:.3f}; "
              f"records agree on NORM {same_norm:.3f} (chance {chance:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()

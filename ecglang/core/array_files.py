"""Arrays that an index folder keeps on disk (knowledge and prototype indexes), read no further than its metadata
says.

The indexes are rebuilt from their vectors when they are opened instead of being read back with
`faiss.read_index`: FAISS's readers allocate (and zero) whatever size a few header bytes declare before they
find the file too short, so a 15 KB `index.faiss` made faiss take 2 GB, and a larger claim exhausts the machine.
Each array is a plain NPY file; its header must declare exactly the shape and dtype that the folder's metadata
implies, and the file must hold exactly those bytes, before any value is read. Rebuilding a flat index is one
copy of the vectors; the IVF and HNSW knowledge indexes are re-trained from them (a fraction of a second for
10,000 snippets). No torch here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ecglang.core.jsonio import is_count

__all__ = ["ArrayFileError", "read_array", "write_array"]


class ArrayFileError(ValueError):
    """An array file that is not what its folder's metadata implies; each reader re-raises it naming its index."""


def write_array(path: str | os.PathLike, array: np.ndarray, dtype: str | np.dtype) -> None:
    """Write `array` as a C-order NPY file of `dtype` (give a byte order, e.g. "<f4", so that it reads anywhere)."""
    np.save(Path(path), np.ascontiguousarray(array, dtype=np.dtype(dtype)), allow_pickle=False)


def read_array(
    path: str | os.PathLike, shape: tuple[object, ...], dtype: str | np.dtype, finite: bool = False
) -> np.ndarray:
    """The array in `path`, after its header and size are checked against `shape` and `dtype` (from metadata:
    each dimension must be a count); with `finite`, NaN or infinite values are refused. `ArrayFileError` else."""
    path, want = Path(path), np.dtype(dtype)
    for value in shape:  # values read from a JSON file: checked, not trusted
        if not is_count(value):
            raise ArrayFileError(f"the metadata gives {shape!r:.80} as the shape; each dimension must be a count")
    try:
        with path.open("rb") as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                found, fortran, dtype_found = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                found, fortran, dtype_found = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ArrayFileError(f"unsupported NPY format version {version}")
            offset = fp.tell()
    except FileNotFoundError:
        raise ArrayFileError("file not found") from None
    except ArrayFileError:
        raise
    except (OSError, ValueError) as exc:  # numpy's answer to a header that is not one
        raise ArrayFileError(f"not an NPY file: {exc}") from exc
    if tuple(found) != tuple(shape) or dtype_found != want or (fortran and len(shape) > 1):
        raise ArrayFileError(f"holds {found} {dtype_found}; the metadata says {tuple(shape)} {want}")
    count = math.prod(shape)
    expected = offset + count * want.itemsize
    if path.stat().st_size != expected:
        raise ArrayFileError(f"is {path.stat().st_size} bytes, not the {expected} that its header declares")
    array = np.fromfile(path, dtype=want, count=count, offset=offset).reshape(shape)
    if finite and not np.isfinite(array).all():
        raise ArrayFileError("holds NaN or infinite values")
    return array

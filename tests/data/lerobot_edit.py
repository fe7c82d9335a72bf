"""Test helpers: copy a LeRobot v3.0 folder and damage it on disk (a column's values, meta/stats.json),
and snapshot a folder to check that nothing was written into it."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_column(root: Path, column: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace the (rows, dim) values of ``column`` in every data parquet of a v3.0 folder by
    ``edit(values)`` (same shape), keeping the column's Arrow type."""
    for path in sorted((root / "data").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path)
        i = table.column_names.index(column)
        old = table.column(i).combine_chunks()
        dim = old.type.list_size
        values = old.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        new = np.asarray(edit(values.copy()), dtype=values.dtype).reshape(-1)
        arr = pa.FixedSizeListArray.from_arrays(pa.array(new, old.type.value_type), dim)
        pq.write_table(table.set_column(i, table.field(i), arr), path)


def edit_meta_stats(root: Path, edit: Callable[[dict], None]) -> None:
    """Edit LeRobot's ``meta/stats.json`` in place (``edit`` mutates the parsed dict)."""
    path = root / "meta" / "stats.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under ``folder``: (size, mtime_ns, sha1 of the content) by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(folder))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns, digest)
    return out

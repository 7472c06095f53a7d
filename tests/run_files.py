"""What "never a corrupt output" means, checked the same way everywhere: every visible file a
command left opens with the reader its format calls for."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import yaml


def assert_every_file_opens(root: Path, *, killed: bool = False) -> None:
    """Each visible file under `root` opens; files still being written are hidden
    (`.name.tmp`) until renamed into place, and hidden spools hold whole JSON lines. With
    `killed` (a SIGKILL), a JSON-lines file may end in the write the kill cut."""
    if not root.exists():
        return
    for path in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if path.is_dir():
            if path.suffix == ".parquet" and not hidden:
                ds.dataset(path, format="parquet").to_table()
            continue
        if hidden:
            if path.suffix == ".jsonl":
                _json_lines(path, killed)
            continue
        suffix = path.suffix
        if suffix == ".parquet":
            ds.dataset(path, format="parquet").to_table()
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            _json_lines(path, killed)
        elif suffix in (".yaml", ".yml"):
            yaml.safe_load(path.read_text())
        elif suffix == ".png":
            assert path.read_bytes()[:4] == b"\x89PNG", path
        elif suffix in (".csv", ".md", ".html", ".txt", ".prom", ".safetensors", ".npz"):
            assert path.stat().st_size >= 0
        else:
            raise AssertionError(f"unexpected file {path}")


def _json_lines(path: Path, killed: bool) -> None:
    """Every line parses. After a SIGKILL the write under way may be cut (a regular file's
    write can stop part-way on a fatal signal, twin/telemetry/files.py): text after the last
    newline is that cut write, which the readers skip and say so; nowhere else."""
    text = path.read_text()
    lines = text.split("\n")
    tail = lines.pop()
    if tail and not killed:
        raise AssertionError(f"{path}: ends in a cut line {tail[:40]!r}")
    for line in lines:
        if line:
            json.loads(line)

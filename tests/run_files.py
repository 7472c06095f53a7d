"""What "never a corrupt output" means, checked the same way everywhere: every visible file a
command left opens with the reader its format calls for."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import yaml


def assert_every_file_opens(root: Path) -> None:
    """Each visible file under `root` opens; files still being written are hidden
    (`.name.tmp`) until renamed into place, and hidden spools hold whole JSON lines up to
    the batch a kill cut."""
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
                # a spool of an unfinished run: every whole line parses; a kill may cut the
                # batch being written, so text after the last newline is that cut batch
                # (twin/telemetry/files.py), never read back
                for line in path.read_text().split("\n")[:-1]:
                    json.loads(line)
            continue
        suffix = path.suffix
        if suffix == ".parquet":
            ds.dataset(path, format="parquet").to_table()
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif suffix in (".yaml", ".yml"):
            yaml.safe_load(path.read_text())
        elif suffix == ".png":
            assert path.read_bytes()[:4] == b"\x89PNG", path
        elif suffix in (".csv", ".md", ".html", ".txt", ".prom", ".safetensors", ".npz"):
            assert path.stat().st_size >= 0
        else:
            raise AssertionError(f"unexpected file {path}")

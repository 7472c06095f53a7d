"""The compiled kernel's cache follows every compiled source, not only each function's own."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numba
import pytest

import twin.flow.queueing  # noqa: F401  (the kernel is loaded, so the cache is keyed)
from twin.jit_cache import TWIN_ROOT, compiled_sources, key_numba_cache, source_digest


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "twin"
    for path in compiled_sources():
        target = root / path.relative_to(TWIN_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return root


@pytest.mark.parametrize("edited", ["flow/queueing.py", "infra/node_metrics.py", "fields.py"])
def test_an_edit_to_one_compiled_or_constant_module_changes_the_cache_folder(tmp_path, edited):
    root = _copy(tmp_path)
    before = source_digest(root)
    assert source_digest(root) == before  # stable
    helper = root / edited
    helper.write_text(helper.read_text() + "\n# edited\n")
    assert source_digest(root) != before


def test_every_module_that_compiles_with_numba_keys_the_cache():
    imports_numba = re.compile(r"^(from numba|import numba)", re.MULTILINE)
    compiling = {path for path in TWIN_ROOT.rglob("*.py") if imports_numba.search(path.read_text())}
    assert TWIN_ROOT / "flow" / "kernel.py" in compiling
    assert compiling <= set(compiled_sources())


def test_numba_caches_under_the_digest_of_the_loaded_sources():
    assert numba.config.CACHE_DIR.endswith(f"numba-{source_digest()}")


def test_a_users_cache_folder_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert key_numba_cache() is None

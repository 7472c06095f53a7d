"""The compiled kernel's cache follows every compiled source, not only each function's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numba

import twin.flow.queueing  # noqa: F401  (the kernel is loaded, so the cache is keyed)
from twin.jit_cache import TWIN_ROOT, key_numba_cache, source_digest


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "twin"
    for folder in ("flow", "envs"):
        (root / folder).mkdir(parents=True)
        for path in (TWIN_ROOT / folder).glob("*.py"):
            shutil.copy(path, root / folder / path.name)
    return root


def test_an_edit_to_one_helper_module_changes_the_cache_folder(tmp_path):
    root = _copy(tmp_path)
    before = source_digest(root)
    assert source_digest(root) == before  # stable
    helper = root / "flow" / "queueing.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    assert source_digest(root) != before


def test_numba_caches_under_the_digest_of_the_loaded_sources():
    assert numba.config.CACHE_DIR.endswith(f"numba-{source_digest()}")


def test_a_users_cache_folder_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert key_numba_cache() is None

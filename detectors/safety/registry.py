"""A versioned model registry on disk, so a deployed detector can be reproduced and rolled back.

Layout under ``root``::

    <name>/v000001/meta.json     version, created, class path, params, metrics, parent, hash
    <name>/v000001/state.npz     the fitted detector as data, or state.safetensors (a torch module)
    <name>/promoted.json         the mutable pointer: which version is deployed, and the one before

A version directory is written under a temporary name and published with one atomic
rename, so a crash never leaves a half-written version visible; an existing version is
never overwritten. Each version carries a SHA-256 over its state bytes and its metadata,
checked on every load, so a corrupt or edited file fails loudly instead of scoring silently.

State formats: nothing is pickled, so loading a registry runs no code it holds.

- ``arrays`` (``state.npz``): any other detector, as numpy arrays and a JSON tree of its
  attributes (`detectors.safety.state`), loaded with ``allow_pickle=False``. A detector whose
  state is not plain data (a scikit-learn forest, an open file) is refused when saving, unless
  its class says what to keep (`state_as_data`).
- ``safetensors`` (``state.safetensors``): a ``torch.nn.Module``, as its ``state_dict``;
  rebuilt as ``cls(**params)`` then ``load_state_dict`` (strict), so its constructor params
  must rebuild it.

Only storable classes are rebuilt (the project's detectors, and classes passed to
`register_storable`): a class path in ``meta.json`` is looked up in that list, never imported
at will. The hash guards against corruption; the formats guard against code.
Versions an earlier Firebreak pickled (``pickle``, ``torch``) are refused, not loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectors.safety.state import StateError, class_path, decode, encode, storable_class
from twin.errors import FirebreakError

FORMAT = 2
STATE_FILES = {"arrays": "state.npz", "safetensors": "state.safetensors"}
LEGACY = ("pickle", "torch")  # format 1: pickled, so never loaded
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VDIR = re.compile(r"^v(\d{6})$")
META = "meta.json"
POINTER = "promoted.json"


class RegistryError(FirebreakError):
    """A registry operation cannot be done (bad name, overwrite, unsaveable params)."""


class UnknownModelError(RegistryError):
    """The model name or version is not in the registry."""


class CorruptModelError(RegistryError):
    """A stored version fails to parse or its content hash does not match."""


class UnsafeModelError(RegistryError):
    """A stored version is in a format that runs code when loaded (a pickle): refused."""


@dataclass(frozen=True)
class ModelVersion:
    """The metadata of one immutable saved version."""

    name: str
    version: int
    created: float
    class_path: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    parent: int | None
    format: str
    sha256: str
    path: Path = field(compare=False)

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILES[self.format]


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON types only (numpy scalars and arrays converted), so params stay readable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise RegistryError(f"{where}: key {k!r} is not a string; params must be JSON")
            out[k] = _jsonable(v, f"{where}.{k}")
        return out
    raise RegistryError(
        f"{where}: {type(value).__name__} value {value!r} is not JSON; "
        "constructor params must be plain data (numbers, strings, lists, dicts)"
    )


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to find out
    return torch is not None and isinstance(obj, torch.nn.Module)


def _class_path(obj: Any) -> str:
    return class_path(type(obj))


def _digest(meta: Mapping[str, Any], state: bytes) -> str:
    """Hash over the state bytes and every metadata field except the hash itself."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update(state)
    return h.hexdigest()


def _write_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class ModelRegistry:
    """Versioned, immutable detector storage with a promoted pointer per model name."""

    def __init__(self, root: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.clock = clock

    # ---- paths and names -------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(
                f"model name {name!r} is not valid: use letters, digits, '.', '_' or '-' "
                "(starting with a letter or digit, at most 128 characters)"
            )
        return self.root / name

    def _version_numbers(self, name: str) -> list[int]:
        d = self._model_dir(name)
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for p in d.iterdir() if (m := _VDIR.match(p.name)))

    def names(self) -> list[str]:
        """Every model name with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if self._version_numbers(p.name))

    # ---- save ----------------------------------------------------------------------------
    def save(
        self,
        name: str,
        detector: Any,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        parent: int | None = None,
        version: int | None = None,
    ) -> ModelVersion:
        """Write a new immutable version (the next number unless ``version`` pins one).

        ``params`` default to ``detector.get_params()`` (scikit-learn's rule) when it has one.
        """
        model_dir = self._model_dir(name)
        existing = self._version_numbers(name)
        if parent is not None and parent not in existing:
            raise UnknownModelError(f"model {name!r}: parent version {parent} does not exist")
        if version is None:
            version = (existing[-1] + 1) if existing else 1
        elif not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RegistryError(
                f"model {name!r}: version must be a positive integer, not {version!r}"
            )
        final = model_dir / f"v{version:06d}"
        if version in existing:
            raise RegistryError(
                f"model {name!r} version {version} already exists at {final}; "
                "versions are immutable, save a new one instead"
            )
        if params is None:
            get_params = getattr(detector, "get_params", None)
            params = get_params() if callable(get_params) else {}
        fmt = "safetensors" if _is_torch_module(detector) else "arrays"
        try:
            storable_class(_class_path(detector))
        except StateError as exc:
            raise RegistryError(f"model {name!r}: {exc}") from None
        state = self._serialise(detector, fmt, name)
        meta: dict[str, Any] = {
            "format_version": FORMAT,
            "name": name,
            "version": version,
            "created": float(self.clock()),
            "class_path": _class_path(detector),
            "params": _jsonable(dict(params), "params"),
            "metrics": _jsonable(dict(metrics or {}), "metrics"),
            "parent": parent,
            "format": fmt,
        }
        meta["sha256"] = _digest(meta, state)

        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            _write_durable(tmp / STATE_FILES[fmt], state)
            _write_durable(tmp / META, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
            for p in tmp.iterdir():
                p.chmod(0o444)
            try:
                os.rename(tmp, final)  # atomic; fails if another writer published it first
            except OSError as exc:
                raise RegistryError(
                    f"model {name!r} version {version} already exists at {final}; "
                    "versions are immutable, save a new one instead"
                ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self._meta_to_version(meta, final)

    @staticmethod
    def _serialise(detector: Any, fmt: str, name: str) -> bytes:
        """The state bytes: data only, or a clear refusal naming what is not data."""
        if fmt == "arrays":
            try:
                return encode(detector, where=f"model {name!r}")
            except StateError as exc:
                raise RegistryError(f"{exc}; nothing was saved") from None
        from safetensors.torch import save as save_tensors

        state = {k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}
        try:
            return save_tensors(state)
        except (RuntimeError, ValueError) as exc:
            raise RegistryError(f"model {name!r}: tensors cannot be saved: {exc}") from None

    # ---- read ----------------------------------------------------------------------------
    @staticmethod
    def _meta_to_version(meta: Mapping[str, Any], path: Path) -> ModelVersion:
        return ModelVersion(
            name=meta["name"],
            version=int(meta["version"]),
            created=float(meta["created"]),
            class_path=meta["class_path"],
            params=dict(meta["params"]),
            metrics=dict(meta["metrics"]),
            parent=meta["parent"],
            format=meta["format"],
            sha256=meta["sha256"],
            path=path,
        )

    def _read_meta(self, name: str, version: int) -> tuple[dict[str, Any], Path]:
        path = self._model_dir(name) / f"v{version:06d}"
        try:
            meta = json.loads((path / META).read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            required = {"name", "version", "created", "class_path", "params", "metrics"}
            required |= {"parent", "format", "sha256"}
            missing = required - set(meta)
            if missing:
                raise ValueError(f"missing fields {sorted(missing)}")
            for key, kind in (("params", dict), ("metrics", dict), ("created", int | float)):
                if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
                    raise ValueError(f"{key}: unexpected value {meta[key]!r:.60}")
            if meta["format"] in LEGACY:
                raise UnsafeModelError(
                    f"model {name!r} version {version}: {path}: stored by an earlier Firebreak "
                    f"in its {meta['format']!r} format, a pickle; pickles can run code when "
                    "loaded, so it is refused (fit the detector again and save a new version)"
                )
            if meta["format"] not in STATE_FILES:
                raise ValueError(f"unknown state format {meta['format']!r}")
        except (OSError, ValueError, RecursionError) as exc:
            raise CorruptModelError(
                f"model {name!r} version {version}: {path / META}: {exc}"
            ) from None
        if meta["name"] != name or meta["version"] != version:
            raise CorruptModelError(
                f"model {name!r} version {version}: {path / META} describes "
                f"{meta['name']!r} version {meta['version']}"
            )
        return meta, path

    def versions(self, name: str) -> list[ModelVersion]:
        """All saved versions of ``name``, oldest first."""
        return [self.info(name, v) for v in self._version_numbers(name)]

    def info(self, name: str, version: int | None = None) -> ModelVersion:
        """The metadata of one version (the promoted one when ``version`` is None)."""
        if version is None:
            promoted = self.promoted(name)
            if promoted is None:
                raise UnknownModelError(
                    f"model {name!r} has no promoted version; pass version= "
                    f"(saved: {self._version_numbers(name) or 'none'})"
                )
            return promoted
        numbers = self._version_numbers(name)
        if not numbers:
            known = ", ".join(self.names()) or "none"
            raise UnknownModelError(f"unknown model {name!r} (known models: {known})")
        if version not in numbers:
            raise UnknownModelError(f"model {name!r} has no version {version} (saved: {numbers})")
        meta, path = self._read_meta(name, version)
        return self._meta_to_version(meta, path)

    def load(self, name: str, version: int | None = None) -> Any:
        """The detector of one version (the promoted one by default), after checking its hash."""
        mv = self.info(name, version)
        meta, _ = self._read_meta(name, mv.version)
        try:
            state = mv.state_file.read_bytes()
        except OSError as exc:
            raise CorruptModelError(f"model {name!r} version {mv.version}: {exc}") from exc
        if _digest(meta, state) != mv.sha256:
            raise CorruptModelError(
                f"model {name!r} version {mv.version}: content hash mismatch in {mv.path} "
                "(the state or metadata was changed or damaged after saving)"
            )
        obj = self._deserialise(mv, state)
        if _class_path(obj) != mv.class_path:
            raise CorruptModelError(
                f"model {name!r} version {mv.version}: loaded a {_class_path(obj)}, "
                f"expected {mv.class_path}"
            )
        return obj

    @staticmethod
    def _deserialise(mv: ModelVersion, state: bytes) -> Any:
        where = f"model {mv.name!r} version {mv.version}"
        if mv.format == "arrays":
            try:
                return decode(state, where=where)
            except StateError as exc:
                raise CorruptModelError(str(exc)) from None
            except (TypeError, RuntimeError) as exc:  # a storable class refusing its state
                raise CorruptModelError(f"{where}: cannot rebuild: {exc}") from None
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load as load_tensors

        try:
            cls = storable_class(mv.class_path)
        except StateError as exc:
            raise CorruptModelError(f"{where}: {exc}") from None
        if not issubclass(cls, torch.nn.Module):
            raise CorruptModelError(f"{where}: {mv.class_path} is not a torch module")
        try:
            tensors = load_tensors(state)
            module = cls(**mv.params)
            module.load_state_dict(tensors, strict=True)
        except (SafetensorError, TypeError, ValueError, RuntimeError) as exc:
            raise CorruptModelError(f"{where}: cannot rebuild torch module: {exc}") from None
        module.eval()
        return module

    # ---- promoted pointer ---------------------------------------------------------------
    def promoted(self, name: str) -> ModelVersion | None:
        """The deployed version of ``name``, or None when none was promoted yet."""
        pointer = self._model_dir(name) / POINTER
        if not pointer.exists():
            if not self._version_numbers(name):
                raise UnknownModelError(f"unknown model {name!r}")
            return None
        try:
            version = int(json.loads(pointer.read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptModelError(f"model {name!r}: promoted pointer {pointer}: {exc}") from exc
        return self.info(name, version)

    def promote(self, name: str, version: int, *, reason: str = "") -> ModelVersion:
        """Point ``name`` at ``version`` (atomic replace), remembering the version before."""
        mv = self.info(name, version)
        previous = self.promoted(name)
        record = {
            "version": version,
            "previous": previous.version if previous else None,
            "time": float(self.clock()),
            "reason": reason,
        }
        pointer = self._model_dir(name) / POINTER
        tmp = pointer.with_name(f".{POINTER}.{uuid.uuid4().hex}")
        _write_durable(tmp, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.replace(tmp, pointer)
        return mv

"""A fitted detector as data: numpy arrays plus a JSON tree, rebuilt without running stored code.

The model registry stores detectors this way instead of pickling them (loading a pickle runs
whatever code it names). `encode(obj)` walks the object's attributes and writes one ``.npz``
(``np.savez``; loaded with ``allow_pickle=False``): every array is an entry, and the entry
``__tree__`` is a JSON tree that says how the attributes nest. Each JSON value is either a
plain scalar or a one-key object naming its kind::

    {"array": "a3"}  {"scalar": "a4"}  {"tensor": "a5"}      arrays in the npz (0-d for scalars)
    {"list": [...]}  {"tuple": [...]}  {"set": [...]}  {"frozenset": [...]}
    {"dict": [[key, value], ...]}      {"float": "nan" | "inf" | "-inf"}
    {"generator": "PCG64", "state": ...}                  a numpy Generator and its position
    {"object": "module:Class", "state": {"attr": ...}}    a storable object

Only *storable* classes are ever rebuilt: the project's detectors listed in `BUILTIN`, and any
class registered with `register_storable` in the running process. A class path in a file is
looked up in that list, never imported at will, and the object is made with ``__new__`` and
its attributes set (or `load_state_data(state)` when the class defines it), so no constructor
or other code named by the file runs. A class whose state is not plain data can define
`state_as_data()` to say what to keep; anything else that is not data is refused when saving.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import zipfile
from typing import Any

import numpy as np

from twin.errors import FirebreakError

TREE = "__tree__"
MAX_DEPTH = 64
BUILTIN = (
    "detectors.anomaly.tier1:RobustZ",
    "detectors.anomaly.tier1:Ewma",
    "detectors.anomaly.tier1:Seasonal",
    "detectors.anomaly.multivariate:ServiceScaler",
    "detectors.anomaly.multivariate:PcaDetector",
    "detectors.anomaly.multivariate:IsolationForestDetector",
    "detectors.anomaly.autoencoder:AutoencoderDetector",
)
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
_registered: dict[str, type] = {}


class StateError(FirebreakError):
    """An object cannot be stored as data, or stored data cannot be rebuilt."""


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_storable(cls: type) -> type:
    """Allow `cls` to be saved and rebuilt as data in this process (usable as a decorator)."""
    if not isinstance(cls, type):
        raise StateError(f"register_storable expects a class, got {cls!r}")
    _registered[class_path(cls)] = cls
    return cls


def storable_class(path: str) -> type:
    """The class a stored path names, if it is storable; importing only the project's own."""
    if not isinstance(path, str):
        raise StateError(f"class path must be a string, got {path!r:.80}")
    if path in _registered:
        return _registered[path]
    if path not in BUILTIN:
        raise StateError(
            f"class {path!r} is not a storable model class (storable: the detectors in "
            "detectors.safety.state.BUILTIN and classes passed to register_storable)"
        )
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    _registered[path] = cls
    return cls


def is_storable(cls: type) -> bool:
    try:
        return storable_class(class_path(cls)) is cls
    except StateError:
        return False


# ---- encoding -------------------------------------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._seen: dict[int, str] = {}  # an array held twice is stored once, shared on load
        self._open: set[int] = set()  # containers on the current path (a cycle is refused)

    def _array(self, a: np.ndarray, where: str, held: bool = False) -> str:
        """The npz key of `a`; `held`: `a` lives as long as the object (safe to key by id)."""
        if held and id(a) in self._seen:
            return self._seen[id(a)]
        if a.dtype.hasobject:  # np.save would pickle it
            raise StateError(f"{where}: an array of Python objects cannot be stored as data")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = a  # np.save keeps shape, dtype and order (0-d included)
        if held:
            self._seen[id(a)] = key
        return key

    def value(self, v: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise StateError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        kind = type(v)
        if v is None or kind in (bool, int, str):
            return v
        if kind is float:
            return v if math.isfinite(v) else {"float": repr(v)}
        if kind is np.ndarray:
            return {"array": self._array(v, where, held=True)}
        if isinstance(v, np.generic):
            return {"scalar": self._array(np.asarray(v), where)}
        if isinstance(v, np.random.Generator):
            name = type(v.bit_generator).__name__
            if name not in BIT_GENERATORS:
                raise StateError(f"{where}: a Generator over {name} cannot be stored as data")
            return {"generator": name, "state": self.value(v.bit_generator.state, where, depth)}
        torch = _torch_if_loaded()
        if torch is not None and kind is torch.Tensor:
            try:
                array = v.detach().cpu().numpy()
            except (TypeError, RuntimeError) as exc:
                raise StateError(f"{where}: tensor cannot be stored: {exc}") from None
            return {"tensor": self._array(array, where)}
        if id(v) in self._open:
            raise StateError(f"{where}: refers back to an object that contains it (a cycle)")
        self._open.add(id(v))
        try:
            return self._container(v, kind, where, depth)
        finally:
            self._open.discard(id(v))

    def _container(self, v: Any, kind: type, where: str, depth: int) -> Any:
        if kind in (list, tuple, set, frozenset):
            items = sorted(v, key=repr) if kind in (set, frozenset) else v
            out = [self.value(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(items)]
            return {kind.__name__: out}
        if kind is dict:
            return {
                "dict": [
                    [
                        self.value(k, f"{where} key", depth + 1),
                        self.value(x, f"{where}.{k}", depth + 1),
                    ]
                    for k, x in v.items()
                ]
            }
        if is_storable(kind):
            return self.object(v, where, depth)
        raise StateError(
            f"{where}: a {kind.__module__}.{kind.__qualname__} cannot be stored as data "
            "(plain numbers, strings, containers, numpy arrays, tensors, Generators and "
            "storable objects can)"
        )

    def object(self, obj: Any, where: str, depth: int = 0) -> dict[str, Any]:
        cls = type(obj)
        if not is_storable(cls):
            raise StateError(
                f"{where}: {class_path(cls)} is not a storable model class; register it with "
                "detectors.safety.state.register_storable if its state is plain data"
            )
        getter = getattr(obj, "state_as_data", None)
        state = getter() if callable(getter) else getattr(obj, "__dict__", None)
        if not isinstance(state, dict):
            raise StateError(f"{where}: {class_path(cls)} keeps no attribute dictionary")
        return {
            "object": class_path(cls),
            "state": {
                str(k): self.value(x, f"{where}.{k}", depth + 1)
                for k, x in state.items()
                if isinstance(k, str)
            },
        }


def _torch_if_loaded() -> Any:
    import sys

    return sys.modules.get("torch")  # a tensor can only exist if torch is already imported


def encode(obj: Any, where: str = "detector") -> bytes:
    """The bytes of one ``.npz`` holding `obj` (a storable object) as data."""
    enc = _Encoder()
    tree = enc.object(obj, where)
    text = json.dumps(tree, separators=(",", ":"), sort_keys=True, allow_nan=False)
    buf = io.BytesIO()
    np.savez(
        buf, allow_pickle=False, **enc.arrays, **{TREE: np.frombuffer(text.encode(), np.uint8)}
    )
    return buf.getvalue()


# ---- decoding -------------------------------------------------------------------------------
class _Decoder:
    def __init__(self, npz: Any) -> None:
        self.npz = npz
        self._loaded: dict[str, np.ndarray] = {}

    def _array(self, key: Any, where: str) -> np.ndarray:
        if not isinstance(key, str) or key == TREE or key not in self.npz.files:
            raise StateError(f"{where}: names array {key!r:.40}, which is not in the file")
        if key not in self._loaded:
            self._loaded[key] = self.npz[key]  # read with allow_pickle=False (np.load below)
        return self._loaded[key]

    def value(self, node: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise StateError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if node is None or type(node) in (bool, int, float, str):
            return node
        if not isinstance(node, dict) or not 1 <= len(node) <= 2:
            raise StateError(f"{where}: unexpected value {node!r:.80}")
        if len(node) == 1:
            ((kind, body),) = node.items()
            return self._single(kind, body, where, depth)
        if set(node) == {"object", "state"}:
            return self.object(node, where, depth)
        if set(node) == {"generator", "state"}:
            return self._generator(node, where, depth)
        raise StateError(f"{where}: unexpected value {node!r:.80}")

    def _single(self, kind: str, body: Any, where: str, depth: int) -> Any:
        if kind == "array":
            return self._array(body, where)
        if kind == "scalar":
            return self._array(body, where)[()]
        if kind == "tensor":
            import torch

            return torch.from_numpy(self._array(body, where))
        if kind == "float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if kind in ("list", "tuple", "set", "frozenset") and isinstance(body, list):
            items = [self.value(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(body)]
            try:
                return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](
                    items
                )
            except TypeError as exc:
                raise StateError(f"{where}: {exc}") from None
        if kind == "dict" and isinstance(body, list):
            out = {}
            for pair in body:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise StateError(f"{where}: a dict entry must be a [key, value] pair")
                key = self.value(pair[0], f"{where} key", depth + 1)
                try:
                    out[key] = self.value(pair[1], f"{where}.{key}", depth + 1)
                except TypeError as exc:  # an unhashable key
                    raise StateError(f"{where}: {exc}") from None
            return out
        raise StateError(f"{where}: unexpected value {{{kind!r:.40}: ...}}")

    def _generator(self, node: dict, where: str, depth: int) -> np.random.Generator:
        name = node["generator"]
        if name not in BIT_GENERATORS:
            raise StateError(f"{where}: unknown bit generator {name!r:.40}")
        bit = getattr(np.random, name)()
        try:
            bit.state = self.value(node["state"], f"{where}.state", depth + 1)
        except (TypeError, ValueError, KeyError) as exc:
            raise StateError(f"{where}: bad {name} state: {exc}") from None
        return np.random.Generator(bit)

    def object(self, node: Any, where: str, depth: int = 0) -> Any:
        if not isinstance(node, dict) or set(node) != {"object", "state"}:
            raise StateError(f"{where}: expected a stored object")
        try:
            cls = storable_class(node["object"])
        except StateError as exc:
            raise StateError(f"{where}: {exc}") from None
        if not isinstance(node["state"], dict):
            raise StateError(f"{where}.state: expected an object")
        state = {k: self.value(v, f"{where}.{k}", depth + 1) for k, v in node["state"].items()}
        obj = cls.__new__(cls)
        loader = getattr(obj, "load_state_data", None)
        if callable(loader):
            loader(state)
        else:
            obj.__dict__.update(state)
        return obj


def decode(data: bytes, where: str = "detector") -> Any:
    """The object `encode` stored; nothing named in the file is imported or called."""
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile) or TREE not in npz.files:
            raise StateError(f"{where}: not a stored detector (no {TREE} entry)")
        with npz:
            tree = json.loads(npz[TREE].tobytes().decode("utf-8"))
            return _Decoder(npz).object(tree, where)
    except StateError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, RecursionError) as exc:
        raise StateError(f"{where}: unreadable state ({type(exc).__name__}: {exc})") from None

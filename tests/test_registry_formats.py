"""The model registry stores detectors as data and loads them without running stored code.

Round trips for every storable detector (the same scores after loading, and after learning
on as before), the data codec's value kinds, refusals at save time for what is not data,
and crafted registry versions (a pickle, a class path naming `subprocess`, a pickled object
array) that must execute nothing: each payload here really runs when unpickled.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted import evil_pickle

from detectors.anomaly.autoencoder import AutoencoderDetector
from detectors.anomaly.multivariate import IsolationForestDetector, PcaDetector, ServiceScaler
from detectors.anomaly.tier1 import Ewma, RobustZ, Seasonal
from detectors.safety.registry import (
    CorruptModelError,
    ModelRegistry,
    RegistryError,
    UnsafeModelError,
    _digest,
)
from detectors.safety.state import StateError, decode, encode, register_storable


def _rows(rng: np.random.Generator, n: int, d: int = 6) -> np.ndarray:
    base = rng.normal(size=(n, 2))
    return np.c_[base, base @ rng.normal(size=(2, d - 2))] + 0.1 * rng.normal(size=(n, d))


def _stream(det, rng, n: int, d: int) -> None:
    for x in rng.normal(size=(n, d)):
        det.score_one(x)
        det.learn_one(x)


TIER1 = {
    "robust-z": lambda: RobustZ(4, window=200, refresh=10, stride=2),
    "ewma": lambda: Ewma(4, half_life=30.0),
    "seasonal": lambda: Seasonal(4, period_s=600.0, bin_s=60.0),
}
TIER2 = {
    "pca": lambda: PcaDetector(forget=0.01, refit_every=50),
    "iforest": lambda: IsolationForestDetector(n_estimators=20, refit_every=100, buffer=256),
    "autoencoder": lambda: AutoencoderDetector(hidden=8, code=2, epochs=3, online_lr=1e-3),
}


@pytest.mark.parametrize("name", TIER1)
def test_tier1_detectors_round_trip(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(1)
    det = TIER1[name]()
    if name == "seasonal":  # learns by time of day
        for t, x in enumerate(rng.normal(size=(100, 4))):
            det.learn_one(x, 30.0 * t)
    else:
        _stream(det, rng, 300, 4)
    reg = ModelRegistry(tmp_path)
    mv = reg.save(name, det)
    assert mv.format == "arrays" and mv.state_file.name == "state.npz"
    loaded = reg.load(name, 1)
    assert type(loaded) is type(det) and loaded is not det
    _same_state(det, loaded)


def _same_state(a, b) -> None:
    assert set(vars(a)) == set(vars(b))
    for key, value in vars(a).items():
        other = vars(b)[key]
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, other) and value.dtype == other.dtype, key
        else:
            assert value == other and type(value) is type(other), key


@pytest.mark.parametrize("name", TIER2)
def test_tier2_detectors_round_trip_and_learn_on_alike(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(2)
    det = TIER2[name]().fit(_rows(rng, 400))
    reg = ModelRegistry(tmp_path)
    mv = reg.save(name, det, metrics={"threshold": 1.0})
    assert mv.params == det.get_params()
    loaded = reg.load(name, 1)
    assert type(loaded) is type(det)
    rows = _rows(rng, 300)
    rows[::7] += 4.0  # some anomalous rows among them
    np.testing.assert_array_equal(det.score_many(rows), loaded.score_many(rows))
    if name == "iforest":
        assert not hasattr(loaded, "forest_")  # documented: only the flattened arrays travel
    for x in rows[:150]:  # online updates (and, for the forest, a refit) stay identical
        det.learn_one(x)
        loaded.learn_one(x)
    np.testing.assert_array_equal(det.score_many(rows), loaded.score_many(rows))


def test_service_scaler_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scaler = ServiceScaler(forget=0.05).fit(rng.random((50, 3, 4)))
    reg = ModelRegistry(tmp_path)
    reg.save("sc", scaler)
    loaded = reg.load("sc", 1)
    frame = rng.random((3, 4))
    np.testing.assert_array_equal(scaler.transform(frame), loaded.transform(frame))


@register_storable
class Holder:
    """Every kind of value the codec stores, and a nested storable object."""

    def __init__(self, **attrs) -> None:
        self.__dict__.update(attrs)


def test_codec_keeps_every_kind_of_value() -> None:
    rng = np.random.default_rng(4)
    rng.random(3)  # a Generator part-way through its stream
    inner = Holder(weights=np.arange(6, dtype=np.int16).reshape(2, 3))
    obj = Holder(
        none=None,
        flag=True,
        count=7,
        ratio=0.25,
        bad=float("nan"),
        big=float("-inf"),
        name="x",
        items=[1, (2, 3), {4, 5}, frozenset({6})],
        table={1: "a", (2, "b"): [np.float32(1.5)], "k": {"nested": np.int64(3)}},
        rng=rng,
        tensor=torch.arange(4, dtype=torch.float64),
        inner=inner,
    )
    back = decode(encode(obj))
    assert type(back) is Holder and type(back.inner) is Holder
    assert back.none is None and back.flag is True and back.count == 7 and back.name == "x"
    assert np.isnan(back.bad) and back.big == float("-inf")
    assert back.items == [1, (2, 3), {4, 5}, frozenset({6})]
    assert back.table[(2, "b")][0] == np.float32(1.5)
    assert type(back.table[(2, "b")][0]) is np.float32
    assert back.table["k"]["nested"] == 3 and type(back.table["k"]["nested"]) is np.int64
    assert np.array_equal(back.inner.weights, inner.weights)
    assert back.inner.weights.dtype == np.int16
    assert torch.equal(back.tensor, obj.tensor)
    assert np.array_equal(back.rng.random(5), rng.random(5))  # the stream continues
    shared = np.zeros(3)
    again = decode(encode(Holder(a=shared, b=shared, c=shared.copy())))
    assert again.a is again.b and again.c is not again.a  # aliasing kept, copies stay apart


def test_what_is_not_data_is_refused_when_saving(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)

    class Unregistered:
        pass

    with pytest.raises(RegistryError, match="is not a storable model class"):
        reg.save("u", Unregistered())
    with pytest.raises(RegistryError, match=r"model 'f'\.fn: a builtins\.function cannot be"):
        reg.save("f", Holder(fn=lambda x: x))
    with pytest.raises(RegistryError, match=r"model 'o'\.bank: an array of Python objects"):
        reg.save("o", Holder(bank=np.array([object()])))
    looped = Holder(items=[])
    looped.items.append(looped.items)
    with pytest.raises(RegistryError, match=r"a cycle"):
        reg.save("c", looped)
    with pytest.raises(RegistryError, match="IsolationForest cannot be stored as data"):
        reg.save("if", Holder(model=IsolationForestDetector(n_estimators=5).fit(
            _rows(np.random.default_rng(0), 50)).forest_))  # fmt: skip
    assert reg.names() == []  # nothing was written for any of them
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ---- crafted registries ---------------------------------------------------------------
def _publish(root: Path, meta: dict, state_name: str, state: bytes) -> None:
    """A version directory as an attacker would write it, with a correct content hash."""
    folder = root / meta["name"] / f"v{meta['version']:06d}"
    folder.mkdir(parents=True)
    meta["sha256"] = _digest(meta, state)
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / state_name).write_bytes(state)


def _meta(fmt: str, class_path: str, params: dict | None = None) -> dict:
    return {
        "format_version": 1,
        "name": "evil",
        "version": 1,
        "created": 0.0,
        "class_path": class_path,
        "params": params or {},
        "metrics": {},
        "parent": None,
        "format": fmt,
    }


def test_the_payload_is_live(tmp_path: Path) -> None:
    pickle.loads(evil_pickle(tmp_path / "ran"))
    assert (tmp_path / "ran").exists()


def test_a_pickled_version_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _publish(tmp_path / "reg", _meta("pickle", "x:Y"), "state.pkl", evil_pickle(marker))
    with pytest.raises(UnsafeModelError, match=r"'pickle' format, a pickle; .* refused"):
        ModelRegistry(tmp_path / "reg").load("evil", 1)
    assert not marker.exists()


def test_a_class_path_naming_other_code_is_refused(tmp_path: Path) -> None:
    """The old loader imported `class_path` and called it with `params`: a shell command."""
    marker = tmp_path / "pwned"
    meta = _meta("safetensors", "subprocess:getoutput", {"cmd": f"touch {marker}"})
    from safetensors.torch import save

    _publish(tmp_path / "reg", meta, "state.safetensors", save({"w": torch.zeros(1)}))
    with pytest.raises(CorruptModelError, match="'subprocess:getoutput' is not a storable"):
        ModelRegistry(tmp_path / "reg").load("evil", 1)
    assert not marker.exists()


def test_a_crafted_state_file_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    reg = tmp_path / "reg"
    # an object class in the tree that is not storable
    tree = {"object": "os:system", "state": {}}
    buf = io.BytesIO()
    np.savez(buf, __tree__=np.frombuffer(json.dumps(tree).encode(), np.uint8))
    _publish(reg, _meta("arrays", "os:system"), "state.npz", buf.getvalue())
    with pytest.raises(CorruptModelError, match="'os:system' is not a storable model class"):
        ModelRegistry(reg).load("evil", 1)
    # a pickled object array inside the npz, reached from a storable object
    tree = {"object": f"{Holder.__module__}:Holder", "state": {"x": {"array": "a0"}}}
    buf = io.BytesIO()
    np.savez(
        buf,
        a0=np.array([_Reducer(marker)], dtype=object),
        __tree__=np.frombuffer(json.dumps(tree).encode(), np.uint8),
    )
    meta = _meta("arrays", "x:Y") | {"name": "evil2"}
    _publish(reg, meta, "state.npz", buf.getvalue())
    with pytest.raises(CorruptModelError, match=r"'evil2' version 1: .*allow_pickle=False"):
        ModelRegistry(reg).load("evil2", 1)
    assert not marker.exists()
    # and a raw pickle where the npz should be
    _publish(reg, _meta("arrays", "x:Y") | {"name": "evil3"}, "state.npz", evil_pickle(marker))
    with pytest.raises(CorruptModelError, match="unreadable state"):
        ModelRegistry(reg).load("evil3", 1)
    assert not marker.exists()


class _Reducer:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pickle.loads, (evil_pickle(self.marker),)


def test_damaged_state_is_a_clear_error() -> None:
    data = encode(Holder(a=np.arange(3)))
    for bad in (data[: len(data) // 2], b"", b"PK\x03\x04garbage"):
        with pytest.raises(StateError, match="unreadable state"):
            decode(bad)
    tree = {"object": f"{Holder.__module__}:Holder", "state": {"x": {"array": "a9"}}}
    buf = io.BytesIO()
    np.savez(buf, __tree__=np.frombuffer(json.dumps(tree).encode(), np.uint8))
    with pytest.raises(StateError, match="names array 'a9', which is not in the file"):
        decode(buf.getvalue())
    deep: dict = {"list": []}
    node = deep
    for _ in range(200):
        node["list"].append({"list": []})
        node = node["list"][0]
    tree = {"object": f"{Holder.__module__}:Holder", "state": {"x": deep}}
    buf = io.BytesIO()
    np.savez(buf, __tree__=np.frombuffer(json.dumps(tree).encode(), np.uint8))
    with pytest.raises(StateError, match="nested deeper than 64 levels"):
        decode(buf.getvalue())

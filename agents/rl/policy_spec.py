"""A policy network described as plain data: spaces, algorithm and constructor settings.

`agents.rl.policy_files` writes this description beside the weights and rebuilds the SB3
policy from it. Every field is checked on the way in, and constructor settings that are
classes (activation, optimiser, features extractor) are saved by name and rebuilt only from
fixed lists, so a description can name no code of its own. Sizes are bounded before a network
is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.errors import FirebreakError

ALGOS = ("ppo", "maskable-ppo", "dqn")

# constructor settings that are classes: saved by name, rebuilt only from these lists
ACTIVATIONS = ("Tanh", "ReLU", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid", "Identity")
OPTIMIZERS = ("Adam", "AdamW", "RMSprop", "SGD")
EXTRACTORS = ("FlattenExtractor",)
_CLASS_PARAMS = {
    "activation_fn": ACTIVATIONS,
    "optimizer_class": OPTIMIZERS,
    "features_extractor_class": EXTRACTORS,
}
_NOT_SAVED = ("observation_space", "action_space", "lr_schedule")  # spaces apart; no training
_DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)
MAX_ELEMENTS = 1_000_000  # observation values, actions or space entries a description may ask for
MAX_PARAMETERS = 50_000_000  # a network larger than this is refused before it is allocated


class PolicyFileError(FirebreakError):
    """A policy file is missing, unreadable, inconsistent, unsafe to load, or cannot be saved."""


# ---- spaces as plain data -------------------------------------------------------------------
def _number(x: float) -> float | str:
    """A float for JSON: infinities as strings, so the file stays strict JSON."""
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        raise PolicyFileError("a space bound is NaN; it cannot be saved")
    return x


def _float(x: Any, where: str) -> float:
    if x in ("inf", "-inf"):
        return float(x)
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise PolicyFileError(f"{where}: expected a finite number, 'inf' or '-inf', got {x!r}")
    return float(x)


def _int(x: Any, where: str, low: int, high: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not low <= x <= high:
        raise PolicyFileError(f"{where}: expected an integer in [{low}, {high}], got {x!r}")
    return x


def _ints(x: Any, where: str, low: int, high: int) -> list[int]:
    if not isinstance(x, list) or not 1 <= len(x) <= MAX_ELEMENTS:
        raise PolicyFileError(f"{where}: expected a non-empty list of integers, got {x!r:.80}")
    return [_int(v, f"{where}[{i}]", low, high) for i, v in enumerate(x)]


def _dtype(x: Any, where: str) -> np.dtype:
    if x not in _DTYPES:
        raise PolicyFileError(f"{where}: unknown dtype {x!r} (known: {', '.join(_DTYPES)})")
    return np.dtype(x)


def space_to_data(space: Any) -> dict[str, Any]:
    """A gymnasium space as JSON-ready data (Box, Discrete, MultiDiscrete, MultiBinary)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": [_number(v) for v in np.ravel(space.low)],
            "high": [_number(v) for v in np.ravel(space.high)],
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "shape": list(space.shape),
            "nvec": [int(v) for v in np.ravel(space.nvec)],
            "start": [int(v) for v in np.ravel(space.start)],
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    raise PolicyFileError(
        f"a {type(space).__name__} space cannot be saved as data "
        "(supported: Box, Discrete, MultiDiscrete, MultiBinary)"
    )


def space_from_data(data: Any, where: str) -> Any:
    """The gymnasium space `space_to_data` described; every field checked."""
    from gymnasium import spaces

    if not isinstance(data, dict):
        raise PolicyFileError(f"{where}: expected an object, got {data!r:.80}")
    kind = data.get("type")
    if kind == "Discrete":
        n = _int(data.get("n"), f"{where}.n", 1, MAX_ELEMENTS)
        start = _int(data.get("start", 0), f"{where}.start", -(2**31), 2**31)
        return spaces.Discrete(n, start=start)
    if kind not in ("Box", "MultiDiscrete", "MultiBinary"):
        raise PolicyFileError(
            f"{where}.type: expected Box, Discrete, MultiDiscrete or MultiBinary, got {kind!r}"
        )
    shape = _ints(data.get("shape"), f"{where}.shape", 1, MAX_ELEMENTS)
    size = math.prod(shape)
    if size > MAX_ELEMENTS:
        raise PolicyFileError(f"{where}.shape: {shape} holds more than {MAX_ELEMENTS} values")
    if kind == "MultiBinary":
        return spaces.MultiBinary(shape)

    def flat(name: str, convert) -> np.ndarray:
        values = data.get(name)
        if not isinstance(values, list) or len(values) != size:
            raise PolicyFileError(f"{where}.{name}: expected {size} values for shape {shape}")
        return np.array([convert(v, f"{where}.{name}[{i}]") for i, v in enumerate(values)])

    if kind == "Box":
        dtype = _dtype(data.get("dtype"), f"{where}.dtype")
        low = flat("low", _float).astype(dtype).reshape(shape)
        high = flat("high", _float).astype(dtype).reshape(shape)
        if np.any(low > high):
            raise PolicyFileError(f"{where}: a low bound exceeds its high bound")
        return spaces.Box(low=low, high=high, shape=tuple(shape), dtype=dtype)
    dtype = _dtype(data.get("dtype", "int64"), f"{where}.dtype")
    nvec = flat("nvec", lambda v, w: _int(v, w, 1, 2**31)).reshape(shape)
    start = flat("start", lambda v, w: _int(v, w, -(2**31), 2**31)).reshape(shape)
    return spaces.MultiDiscrete(nvec, dtype=dtype, start=start)


# ---- the policy classes and their settings ---------------------------------------------------
def policy_class(algo: str) -> type:
    """The SB3 policy class `MlpPolicy` resolves to for each algorithm Firebreak trains."""
    if algo == "maskable-ppo":
        from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

        return MaskableActorCriticPolicy
    if algo == "dqn":
        from stable_baselines3.dqn.policies import DQNPolicy

        return DQNPolicy
    if algo == "ppo":
        from stable_baselines3.common.policies import ActorCriticPolicy

        return ActorCriticPolicy
    raise PolicyFileError(f"unknown algo {algo!r} (algorithms: {', '.join(ALGOS)})")


def _named_class(param: str, name: Any, where: str) -> type:
    allowed = _CLASS_PARAMS[param]
    if name not in allowed:
        raise PolicyFileError(f"{where}: {name!r} is not one of {', '.join(allowed)}")
    if param == "activation_fn":
        from torch import nn

        return getattr(nn, name)
    if param == "optimizer_class":
        import torch

        return getattr(torch.optim, name)
    from stable_baselines3.common import torch_layers

    return getattr(torch_layers, name)


def _plain(value: Any, where: str) -> Any:
    """`value` if it is plain JSON (finite numbers, strings, lists, string-keyed dicts)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise PolicyFileError(f"{where}: {value!r:.80} is not plain data; it cannot be saved")


def kwargs_to_data(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _NOT_SAVED:
            continue
        if key in _CLASS_PARAMS:
            name = getattr(value, "__name__", None)
            if name not in _CLASS_PARAMS[key] or _named_class(key, name, key) is not value:
                raise PolicyFileError(
                    f"policy setting {key}: {value!r} cannot be saved as data "
                    f"(supported: {', '.join(_CLASS_PARAMS[key])})"
                )
            out[key] = name
        else:
            out[key] = _plain(value, f"policy setting {key}")
    return out


def kwargs_from_data(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PolicyFileError(f"{where}: expected an object, got {data!r:.80}")
    out = {}
    for key, value in data.items():
        if key in _NOT_SAVED:
            raise PolicyFileError(f"{where}.{key}: not a setting this file may carry")
        out[key] = (
            _named_class(key, value, f"{where}.{key}")
            if key in _CLASS_PARAMS
            else _plain(value, f"{where}.{key}")
        )
    return out


def _widths(net_arch: Any, where: str) -> list[int]:
    """Every layer width in net_arch (a list, or a dict of lists), bounded."""
    if net_arch is None:
        return [64, 64]
    lists = net_arch.values() if isinstance(net_arch, dict) else [net_arch]
    widths: list[int] = []
    for layers in lists:
        if not isinstance(layers, list) or len(layers) > 64:
            raise PolicyFileError(f"{where}: expected at most 64 layer widths, got {layers!r:.80}")
        widths += [_int(w, where, 1, 65_536) for w in layers]
    return widths


def size_bound(obs: Any, act: Any, kwargs: Mapping[str, Any], where: str) -> int:
    """A generous upper bound on the network's parameter count, before building it."""
    widths = _widths(kwargs.get("net_arch"), f"{where}.net_arch")
    widest = max([math.prod(obs.shape or (1,)), *widths])
    outputs = int(np.sum(getattr(act, "nvec", getattr(act, "n", 1)))) + math.prod(act.shape or (1,))
    return 4 * ((len(widths) + 2) * widest * widest + widest * (outputs + 1))

"""The deep tier-2 model: a small MLP autoencoder in torch over robust-standardised signals.

An autoencoder learns the normal joint shape of a vector of signals through a narrow code;
a vector it cannot reconstruct breaks that shape. Training is deterministic (a private torch
RNG state seeded from `seed`, one CPU thread, the caller's torch settings restored after),
and scoring runs on numpy copies of the weights: a per-frame forward pass through torch
costs tens of microseconds of dispatch per layer, numpy a few.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from detectors.anomaly.tier2_base import Tier2Base


@contextmanager
def _private_torch(seed: int) -> Iterator[None]:
    """Seeded RNG and one thread inside, the caller's global torch state untouched outside."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def _network(d: int, hidden: int, code: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d, hidden),
        nn.Tanh(),
        nn.Linear(hidden, code),
        nn.Tanh(),
        nn.Linear(code, hidden),
        nn.Tanh(),
        nn.Linear(hidden, d),
    )


class AutoencoderDetector(Tier2Base):
    """MLP autoencoder (d → hidden → code → hidden → d); score = mean squared reconstruction error.

    `learn_one` takes one small gradient step (rate `online_lr`; 0 makes it a no-op) on a
    normal vector, so the model follows slow drift with fixed memory; the calibration
    threshold stays as fitted.
    """

    def __init__(
        self,
        hidden: int = 64,
        code: int = 8,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        quantile: float = 0.995,
        calibration: float = 0.2,
        clip: float = 10.0,
        seed: int = 0,
        online_lr: float = 0.0,
    ) -> None:
        self.hidden = hidden
        self.code = code
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.quantile = quantile
        self.calibration = calibration
        self.clip = clip
        self.seed = seed
        self.online_lr = online_lr

    def fit(self, X: np.ndarray) -> AutoencoderDetector:
        train, cal = self._split(X)
        Z = torch.as_tensor(self._z(train), dtype=torch.float32)
        d = Z.shape[1]
        with _private_torch(self.seed):
            net = _network(d, self.hidden, min(self.code, d))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(self.seed)
            for _ in range(self.epochs):
                order = torch.randperm(len(Z), generator=gen)
                for lo in range(0, len(Z), self.batch_size):
                    batch = Z[order[lo : lo + self.batch_size]]
                    opt.zero_grad()
                    loss = ((net(batch) - batch) ** 2).mean()
                    loss.backward()
                    opt.step()
        self.net_ = net
        self._online_opt = None
        self._cache()
        self.threshold_ = self._threshold(self._raw(self._z(cal)))
        return self

    def state_as_data(self) -> dict:
        """What the model registry stores: the network as its tensors, not the module.

        The optimiser is dropped: online SGD without momentum keeps no state of its own."""
        state = {k: v for k, v in vars(self).items() if k not in ("net_", "_online_opt")}
        state.pop("weights_", None)  # re-derived from the network
        if hasattr(self, "net_"):
            state["net_"] = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
        return state

    def load_state_data(self, state: dict) -> None:
        """Rebuild from `state_as_data`: the same network, the tensors loaded strictly."""
        tensors = state.pop("net_", None)
        self.__dict__.update(state)
        if tensors is not None:
            d = int(self.n_features_in_)
            first, middle = tensors.get("0.weight"), tensors.get("2.weight")
            if first is None or middle is None or tuple(first.shape) != (self.hidden, d):
                raise ValueError(f"net_: the stored layers do not fit d={d}, hidden={self.hidden}")
            if middle.shape[0] != min(self.code, d):  # checked before anything is allocated
                raise ValueError(f"net_: the stored code layer does not fit code={self.code}")
            self.net_ = _network(d, self.hidden, min(self.code, d))
            self.net_.load_state_dict(tensors, strict=True)
            self._online_opt = None
            self._cache()

    def _cache(self) -> None:
        """numpy copies of the weights for the scoring path."""
        layers = [m for m in self.net_ if isinstance(m, nn.Linear)]
        self.weights_ = [
            (m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(float))
            for m in layers
        ]

    def _raw(self, Z: np.ndarray) -> np.ndarray:
        h = Z
        last = len(self.weights_) - 1
        for i, (W, b) in enumerate(self.weights_):
            h = h @ W + b
            if i < last:
                h = np.tanh(h)
        return ((h - Z) ** 2).mean(axis=1)

    def learn_one(self, x: np.ndarray) -> None:
        """One SGD step on a normal vector (no-op when online_lr is 0)."""
        if self.online_lr <= 0.0:
            return
        z = torch.as_tensor(self._z(np.asarray(x, dtype=float)[None, :]), dtype=torch.float32)
        with _private_torch(self.seed):
            if self._online_opt is None:
                self._online_opt = torch.optim.SGD(self.net_.parameters(), lr=self.online_lr)
            self._online_opt.zero_grad()
            ((self.net_(z) - z) ** 2).mean().backward()
            self._online_opt.step()
        self._cache()

"""A VecEnv whose envs are split over a few worker processes, each stepping its share in turn.

Why: on two cores, stable-baselines3's `DummyVecEnv` steps every env on one core, and its
`SubprocVecEnv` gives every env a process of its own (sixteen processes, sixteen pipe round
trips a step, for two cores). Here `n_shards` workers (one per core by default) each hold a
`DummyVecEnv` over a contiguous slice of the envs; a step sends each worker its slice of the
actions and the workers step their slices at the same time. Each slice is stepped exactly as
`DummyVecEnv` steps it (auto-reset, `terminal_observation`, `TimeLimit.truncated`), and
seeds and options reach each env as they would in one process, so a run is the same as with
`DummyVecEnv` over the same env functions: same observations, rewards, dones and infos
(tested step for step), hence the same trained weights.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing as mp
import operator
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    CloudpickleWrapper,
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)


class _Shard:
    """A DummyVecEnv over one slice, answering (command, data) messages."""

    def __init__(self, fns: Sequence[Callable[[], gym.Env]]) -> None:
        from stable_baselines3.common.vec_env import DummyVecEnv

        envs = self.envs = DummyVecEnv(list(fns))
        self.policy: Any = None  # a copy of the learner's policy, for whole-rollout pieces
        self.handlers: dict[str, Callable[[Any], Any]] = {
            "step": lambda actions: (*envs.step(actions), list(envs.reset_infos)),
            "reset": lambda data: _reset(envs, *data),
            "env_method": lambda d: envs.env_method(d[0], *d[1], indices=d[3], **d[2]),
            "get_attr": lambda d: envs.get_attr(d[0], indices=d[1]),
            "set_attr": lambda d: envs.set_attr(d[0], d[1], indices=d[2]),
            "has_attr": lambda name: envs.has_attr(name),
            "is_wrapped": lambda d: envs.env_is_wrapped(d[0], indices=d[1]),
            "spaces": lambda _: (envs.observation_space, envs.action_space, envs.render_mode),
            "get_images": lambda _: envs.get_images(),
            "cpu": lambda _: time.process_time(),
            "policy": lambda d: self._set_policy(d[0].var, d[1]),
            "rollout": lambda d: self._rollout(*d),
        }

    def _set_policy(self, spec: tuple[type, dict[str, Any]], seed: int) -> None:
        from agents.rl.rollouts import build_policy

        self.policy = build_policy(spec, seed)

    def _rollout(self, policy: Any, *args: Any) -> dict[str, Any]:
        """A piece of a rollout (`rollouts.collect_piece`) under `policy`: the learner's own
        in this process, else its weights, loaded into this worker's copy."""
        from agents.rl.rollouts import collect_piece, load_weights

        if isinstance(policy, dict):
            if self.policy is None:
                raise RuntimeError("rollout: no policy was handed to this worker first")
            load_weights(self.policy, policy)
            policy = self.policy
        return collect_piece(self.envs, policy, *args)

    def answer(self, command: str, data: Any) -> tuple[str, Any]:
        try:
            return "ok", self.handlers[command](data)
        except Exception as exc:  # handed to the caller, who raises it there
            return "error", _portable(exc)


class _InProcess:
    """The pipe end of a shard stepped in this process: `send` keeps the message (a new one
    replaces one never read, as a reset cancels a step not yet waited for), `recv` works it
    out, so this shard steps while the workers step theirs."""

    def __init__(self, fns: Sequence[Callable[[], gym.Env]]) -> None:
        self._shard = _Shard(fns)
        self._pending: tuple[str, Any] | None = None

    def send(self, message: tuple[str, Any]) -> None:
        self._pending = message

    def recv(self) -> Any:
        command, data = self._pending or ("", None)
        self._pending = None
        if command == "close":
            self._shard.envs.close()
            return None
        return self._shard.answer(command, data)


CLOSE_WAIT_S = 10.0  # how long `close` waits on a worker before ending it


def _shard_worker(remote: Any, parent: Any, fns: CloudpickleWrapper) -> None:
    """One worker process: a `_Shard` driven by messages over its pipe."""
    parent.close()
    shard = _Shard(fns.var)
    # what the worker imported and built lives as long as it does: out of the collector's
    # full passes (about 380k objects, ~0.25 s a pass, against ~0.03 s once frozen)
    gc.freeze()
    try:
        while True:
            command, data = remote.recv()
            if command == "close":
                shard.envs.close()
                remote.send(None)
                break
            reply = shard.answer(command, data)
            try:
                remote.send(reply)
            except Exception as exc:  # the answer would not pickle: nothing was sent
                why = f"{command}: the answer cannot be sent back ({type(exc).__name__}: {exc})"
                remote.send(("error", RuntimeError(why)))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        remote.close()


def _portable(exc: Exception) -> Exception:
    """`exc` itself if it can be sent down the pipe, else a RuntimeError that names it."""
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _reset(envs: Any, seeds: list, options: list) -> tuple[Any, list]:
    envs._seeds = list(seeds)
    envs._options = list(options)
    return envs.reset(), list(envs.reset_infos)


class ShardedVecEnv(VecEnv):
    """`env_fns` split over `n_shards` worker processes (see the module docstring)."""

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        n_shards: int = 2,
        start_method: str | None = None,
        in_process: bool = True,
    ) -> None:
        """`in_process`: the first shard steps in this process (which waits for the workers
        anyway), so `n_shards` shards take `n_shards - 1` worker processes."""
        n = len(env_fns)
        if not isinstance(n_shards, int) or not 1 <= n_shards <= n:
            raise ValueError(f"n_shards: must be an integer in [1, {n}], got {n_shards!r}")
        bounds = np.linspace(0, n, n_shards + 1).round().astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        if start_method is None:
            methods = mp.get_all_start_methods()
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        context = mp.get_context(start_method)
        self._remotes: list[Any] = []
        self._processes: list[Any] = []
        self._owed: list[int] = []  # replies each shard still owes (read before anything new)
        self._policy: Any = None  # the policy the workers hold a copy of (`collect_rollout`)
        self.closed = False
        try:
            for k, part in enumerate(self._slices):
                self._owed.append(0)
                if k == 0 and in_process:
                    self._remotes.append(_InProcess(env_fns[part]))
                    self._processes.append(None)
                    continue
                remote, work = context.Pipe()
                fns = CloudpickleWrapper(list(env_fns[part]))
                process = context.Process(
                    target=_shard_worker, args=(work, remote, fns), daemon=True
                )
                self._remotes.append(remote)
                self._processes.append(process)
                process.start()
                work.close()
            observation_space, action_space, render_mode = self._ask(0, "spaces", None)
            super().__init__(n, observation_space, action_space)
        except BaseException:
            self.close()  # every shard started so far
            raise
        self.render_mode = render_mode

    # -- messages --------------------------------------------------------------------------
    def _send(self, shard: int, command: str, data: Any) -> None:
        remote = self._remotes[shard]
        if isinstance(remote, _InProcess):
            self._owed[shard] = 0  # a message never read is replaced, not worked out
        while self._owed[shard]:
            self._message(shard)  # an answer nobody waited for (an interrupted call)
        try:
            remote.send((command, data))
        except (OSError, EOFError) as exc:
            raise self._ended(shard) from exc
        self._owed[shard] += 1

    def _receive(self, shard: int) -> Any:
        status, value = self._message(shard)
        if status == "error":
            raise value
        return value

    def _receive_all(self, shards: Sequence[int] | None = None) -> list[Any]:
        """Every shard's answer, each read even when another fails (so none is left in a
        pipe), or the first error."""
        if shards is None:
            shards = range(len(self._slices))
        messages, failure = [], None
        for shard in shards:
            try:
                messages.append(self._message(shard))
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        for status, value in messages:
            if status == "error":
                raise value
        return [value for _, value in messages]

    def _message(self, shard: int) -> tuple[str, Any]:
        self._owed[shard] = max(self._owed[shard] - 1, 0)
        try:
            return self._remotes[shard].recv()
        except (OSError, EOFError) as exc:
            self._owed[shard] = 0
            raise self._ended(shard) from exc

    def _ended(self, shard: int) -> RuntimeError:
        process = self._processes[shard]
        process.join(timeout=5.0)
        return RuntimeError(
            f"shard {shard}: its worker process ended (exit code {process.exitcode}); its own "
            "error is on stderr above (a script that starts training needs an "
            "`if __name__ == '__main__':` guard)"
        )

    def _ask(self, shard: int, command: str, data: Any) -> Any:
        self._send(shard, command, data)
        return self._receive(shard)

    def _positions(self, indices: VecEnvIndices) -> list[int]:
        """`indices` as env positions, negative ones counted from the end as a list would;
        IndexError for one out of range (as `DummyVecEnv` raises)."""
        out = []
        for index in self._get_indices(indices):
            i = operator.index(index)
            i += self.num_envs if i < 0 else 0
            if not 0 <= i < self.num_envs:
                raise IndexError(f"env index {index} is out of range for {self.num_envs} envs")
            out.append(i)
        return out

    def _by_shard(self, indices: VecEnvIndices) -> list[tuple[int, list[int], list[int]]]:
        """(shard, global positions, the shard's own indices) for each shard `indices` touch."""
        wanted = self._positions(indices)
        out = []
        for shard, part in enumerate(self._slices):
            inside = range(part.start, part.stop)
            mine = [(k, i - part.start) for k, i in enumerate(wanted) if i in inside]
            if mine:
                out.append((shard, [k for k, _ in mine], [local for _, local in mine]))
        return out

    def _gather(self, indices: VecEnvIndices, command: str, data: Callable[[list[int]], Any]):
        """Send `command` to each shard with its own indices, then collect in `indices` order."""
        plan = self._by_shard(indices)
        for shard, _, local in plan:
            self._send(shard, command, data(local))
        answers = self._receive_all([shard for shard, _, _ in plan])
        out: list[Any] = [None] * sum(len(k) for _, k, _ in plan)
        for (_, positions, _), values in zip(plan, answers, strict=True):
            for k, value in zip(positions, values, strict=True):
                out[k] = value
        return out

    # -- VecEnv ----------------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        for shard, part in enumerate(self._slices):
            self._send(shard, "step", actions[part])

    def step_wait(self) -> VecEnvStepReturn:
        results = self._receive_all()
        obs = _concat_obs([r[0] for r in results], self.observation_space)
        rewards = np.concatenate([r[1] for r in results])
        dones = np.concatenate([r[2] for r in results])
        infos = [info for r in results for info in r[3]]
        self.reset_infos = [info for r in results for info in r[4]]
        return obs, rewards, dones, infos

    def reset(self) -> VecEnvObs:
        for shard, part in enumerate(self._slices):
            self._send(shard, "reset", (self._seeds[part], self._options[part]))
        results = self._receive_all()
        self.reset_infos = [info for _, infos in results for info in infos]
        self._reset_seeds()
        self._reset_options()
        return _concat_obs([obs for obs, _ in results], self.observation_space)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for shard, remote in enumerate(self._remotes):
            try:
                if isinstance(remote, _InProcess):
                    remote.send(("close", None))
                    remote.recv()
                    continue
                while self._owed[shard] and remote.poll(CLOSE_WAIT_S):
                    remote.recv()  # answers never read (a step in flight)
                    self._owed[shard] -= 1
                remote.send(("close", None))
                if remote.poll(CLOSE_WAIT_S):
                    remote.recv()
            except Exception:  # closing: every other shard is closed all the same
                continue
        for process in self._processes:
            if process is None or process.pid is None:
                continue
            process.join(timeout=CLOSE_WAIT_S)
            if process.is_alive():
                process.terminate()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._gather(indices, "get_attr", lambda local: (attr_name, local))

    def has_attr(self, attr_name: str) -> bool:
        return all(self._ask(s, "has_attr", attr_name) for s in range(len(self._slices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        plan = self._by_shard(indices)
        for shard, _, local in plan:
            self._send(shard, "set_attr", (attr_name, value, local))
        self._receive_all([shard for shard, _, _ in plan])

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        return self._gather(
            indices, "env_method", lambda local: (method_name, method_args, method_kwargs, local)
        )

    def collect_rollout(
        self, policy: Any, seed: int, last_obs: np.ndarray, last_starts: np.ndarray, ask: Any
    ) -> dict[str, Any]:
        """`ask.n_steps` steps of every env (`ask`: a `rollouts.PieceAsk`), each shard
        stepping its slice through all of them with its own copy of `policy` (the shard in
        this process with `policy` itself), all shards at once; the pieces merged in env
        order (`rollouts.merge_pieces`). A worker gets the policy's class and parameters the
        first time it meets `policy` (its sampling stream seeded from `seed` and its shard),
        then its weights each call."""
        from agents.rl.rollouts import merge_pieces, weights_of

        if self._policy is not policy:
            spec = CloudpickleWrapper((type(policy), policy._get_constructor_parameters()))
            for shard, process in enumerate(self._processes):
                if process is not None:
                    stream = int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])
                    self._ask(shard, "policy", (spec, stream))
            self._policy = policy
        weights = weights_of(policy) if self.n_workers else None
        order = sorted(range(len(self._slices)), key=lambda k: self._processes[k] is None)
        for shard in order:  # the workers first, so they step while this process does
            part = self._slices[shard]
            mine = policy if self._processes[shard] is None else weights
            self._send(shard, "rollout", (mine, last_obs[part], last_starts[part], ask))
        return merge_pieces(self._receive_all())

    @property
    def n_workers(self) -> int:
        """Worker processes (shards not stepped in this process)."""
        return sum(process is not None for process in self._processes)

    def worker_cpu_seconds(self) -> float:
        """CPU seconds the worker processes have used so far, all together (a shard stepped
        in this process counts in this process's own CPU time, not here)."""
        workers = [k for k, process in enumerate(self._processes) if process is not None]
        for shard in workers:
            self._send(shard, "cpu", None)
        return float(sum(self._receive_all(workers)))

    def get_images(self) -> list[np.ndarray | None]:
        """Each env's `render()` frame in env order (None for each when the envs do not
        render `rgb_array`), as `DummyVecEnv` answers: what `render()` tiles."""
        for shard in range(len(self._slices)):
            self._send(shard, "get_images", None)
        return [image for images in self._receive_all() for image in images]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return self._gather(indices, "is_wrapped", lambda local: (wrapper_class, local))


def _concat_obs(parts: list[Any], space: gym.Space) -> VecEnvObs:
    """The shards' observation batches as one, in env order."""
    if isinstance(space, gym.spaces.Dict):
        return {key: np.concatenate([p[key] for p in parts]) for key in space.spaces}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(space.spaces)))
    return np.concatenate(parts)

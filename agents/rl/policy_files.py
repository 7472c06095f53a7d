"""Policy files that hold data, never code: weights in safetensors, the network in JSON.

A stable-baselines3 zip unpickles its ``data`` entry when loaded, so a crafted one runs any
code it likes. Firebreak saves a policy as two files instead:

    policy.safetensors   the policy network's tensors (safetensors: a JSON header and raw
                         little-endian arrays, no pickle anywhere)
    policy.json          what rebuilds the network: algorithm, env id, observation and
                         action spaces as plain data, net_arch, activation and the other
                         constructor settings by name from a fixed list, the weights' SHA-256
                         (the description's codec: `agents.rl.policy_spec`)

Loading builds the SB3 / sb3-contrib policy class the algorithm names from that description
and loads the tensors into it (strictly: every tensor present, every shape right). The
result is the SB3 policy object itself, so `predict(obs, deterministic=True)` (with
`action_masks=` for maskable PPO) answers as the trained model did.

A zip (``policy.zip`` or any ``*.zip``) in a directory without these files is refused unless
the caller passes ``trust_pickle=True`` (the CLI's ``--trust-pickle``): that loads it with
SB3, which runs whatever code the file holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from agents.rl.envs import ENV_IDS, REMEDIATION_ID
from agents.rl.policy_spec import (
    ALGOS,
    MAX_PARAMETERS,
    PolicyFileError,
    kwargs_from_data,
    kwargs_to_data,
    policy_class,
    size_bound,
    space_from_data,
    space_to_data,
)

WEIGHTS_FILE = "policy.safetensors"
DESCRIPTION_FILE = "policy.json"
SETTINGS_FILE = "settings.json"
FORMAT = "firebreak-policy"
FORMAT_VERSION = 1


# ---- saving ---------------------------------------------------------------------------------
def _dumps(value: Any, indent: str = "") -> str:
    """JSON with one key per line and every list on one line (space bounds stay readable)."""
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return json.dumps(value)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name and rename: a crash never leaves half a file there."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot write the policy: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def save_policy(
    policy: Any, *, algo: str, env_id: str, folder: str | Path, stem: str = "policy"
) -> Path:
    """Write `<stem>.safetensors` and `<stem>.json` into `folder`; returns the JSON's path.

    The weights go first and the description (which names them and their hash) last, so a
    crash between the two leaves the previous policy, or none, never a mismatched pair.
    """
    from safetensors.torch import save as save_tensors

    expected = policy_class(algo)
    if type(policy) is not expected:
        raise PolicyFileError(
            f"a {type(policy).__name__} cannot be saved as a {algo} policy "
            f"(expected {expected.__name__}: an MlpPolicy)"
        )
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo": algo,
        "env_id": env_id,
        "policy_class": f"{expected.__module__}:{expected.__qualname__}",
        "observation_space": space_to_data(policy.observation_space),
        "action_space": space_to_data(policy.action_space),
        "policy_kwargs": kwargs_to_data(policy._get_constructor_parameters()),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    try:
        weights = save_tensors(tensors, metadata={"format": FORMAT})
    except (RuntimeError, ValueError) as exc:
        raise PolicyFileError(f"the policy's tensors cannot be saved: {exc}") from None
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PolicyFileError(f"{folder}: cannot create it: {exc.strerror or exc}") from None
    weights_path = folder / f"{stem}.safetensors"
    description["weights"] = {
        "file": weights_path.name,
        "sha256": hashlib.sha256(weights).hexdigest(),
        "bytes": len(weights),
    }
    _write_atomic(weights_path, weights)
    path = folder / f"{stem}.json"
    _write_atomic(path, (_dumps(description) + "\n").encode())
    return path


# ---- loading --------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PolicyFileError(f"{path}: the {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: the {what} must be a JSON object")
    return data


def _refuse_zip(zip_path: Path) -> PolicyFileError:
    return PolicyFileError(
        f"{zip_path}: a stable-baselines3 zip; loading one unpickles its `data` entry, which "
        "can run any code the file holds, so it is refused. `firebreak train` saves "
        f"{WEIGHTS_FILE} + {DESCRIPTION_FILE}, which hold data only; pass --trust-pickle "
        "only if you trust whoever wrote this file"
    )


def _locate(path: Path) -> tuple[Path | None, Path | None]:
    """(description, zip) for a directory or file path; exactly one is set."""
    if path.is_dir():
        if (path / DESCRIPTION_FILE).is_file():
            return path / DESCRIPTION_FILE, None
        if (path / "policy.zip").is_file():
            return None, path / "policy.zip"
        zips = sorted(p for p in path.glob("*.zip") if p.is_file())
        if len(zips) == 1:
            return None, zips[0]
        if zips:
            names = ", ".join(p.name for p in zips)
            raise PolicyFileError(f"{path}: several zips ({names}) and no {DESCRIPTION_FILE}")
        raise PolicyFileError(
            f"{path / DESCRIPTION_FILE}: no saved policy there (train one with firebreak train)"
        )
    if not path.exists():
        raise PolicyFileError(f"{path}: no saved policy there (train one with firebreak train)")
    if path.suffix == ".json":
        return path, None
    if path.suffix == ".safetensors":
        return path.with_suffix(".json"), None
    if path.suffix == ".zip":
        return None, path
    raise PolicyFileError(
        f"{path}: not a policy (expected a `firebreak train` directory or its {DESCRIPTION_FILE})"
    )


def _settings(folder: Path) -> tuple[dict[str, Any], Path]:
    """The training settings beside the policy (or one level up, for best/ and checkpoints/)."""
    path = folder / SETTINGS_FILE
    if not path.is_file() and (folder.parent / SETTINGS_FILE).is_file():
        path = folder.parent / SETTINGS_FILE
    if not path.is_file():
        raise PolicyFileError(f"{path}: the policy's settings file is missing")
    settings = _read_json(path, "settings")
    for key, kind in (("algo", str), ("env_id", str), ("env_settings", dict)):
        if not isinstance(settings.get(key), kind):
            raise PolicyFileError(
                f"{path}: {key}: expected a {kind.__name__}, got {settings.get(key)!r:.80}"
            )
    if settings["algo"] not in ALGOS:
        raise PolicyFileError(f"{path}: algo: unknown {settings['algo']!r}")
    if settings["env_id"] not in ENV_IDS:
        raise PolicyFileError(
            f"{path}: env_id: unknown {settings['env_id']!r} (envs: {', '.join(ENV_IDS)})"
        )
    if not isinstance(settings.get("env_kwargs") or {}, dict):
        raise PolicyFileError(f"{path}: env_kwargs: expected an object")
    _check_env_settings(settings["env_settings"], settings["env_id"], path)
    return settings, path


def _check_env_settings(env: dict[str, Any], env_id: str, path: Path) -> None:
    """The env settings the policy runner and `evaluate` read: present and sane."""

    def bad(key: str, want: str) -> PolicyFileError:
        return PolicyFileError(
            f"{path}: env_settings.{key}: expected {want}, got {env.get(key)!r:.80}"
        )

    if env.get("observation") not in ("ranked", "services"):
        raise bad("observation", "'ranked' or 'services'")
    decision = env.get("decision_s")
    if (
        isinstance(decision, bool)
        or not isinstance(decision, int | float)
        or not 0 < decision < 1e6
    ):
        raise bad("decision_s", "a number of seconds in (0, 1e6)")
    topologies = env.get("topologies")
    if not isinstance(topologies, list) or not all(isinstance(t, str) for t in topologies):
        raise bad("topologies", "a list of topology names")
    if env_id == REMEDIATION_ID:
        top_k = env.get("top_k")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 1000:
            raise bad("top_k", "an integer in [1, 1000]")
        share = env.get("shed_share", 0.3)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise bad("shed_share", "a share in [0, 1]")


def _weights(desc_path: Path, entry: Any) -> dict[str, Any]:
    """The tensors the description names, after checking their size and hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise PolicyFileError(f"{desc_path}: weights: expected an object naming the file")
    name = entry["file"]
    if Path(name).name != name or not name.endswith(".safetensors"):
        raise PolicyFileError(f"{desc_path}: weights.file: {name!r} is not a .safetensors name")
    path = desc_path.parent / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read the weights: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise PolicyFileError(
            f"{path}: the weights do not match the SHA-256 in {desc_path.name} "
            "(changed or damaged after saving)"
        )
    try:
        return load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise PolicyFileError(f"{path}: unreadable weights ({exc})") from None


def _load_safe(desc_path: Path) -> tuple[Any, dict[str, Any]]:
    desc = _read_json(desc_path, "policy description")
    if desc.get("format") != FORMAT or desc.get("format_version") != FORMAT_VERSION:
        raise PolicyFileError(
            f"{desc_path}: not a {FORMAT} v{FORMAT_VERSION} description (format "
            f"{desc.get('format')!r}, version {desc.get('format_version')!r})"
        )
    algo = desc.get("algo")
    if algo not in ALGOS:
        raise PolicyFileError(f"{desc_path}: algo: unknown {algo!r}")
    settings, settings_path = _settings(desc_path.parent)
    for key in ("algo", "env_id"):
        if desc.get(key) != settings[key]:
            raise PolicyFileError(
                f"{desc_path}: {key} {desc.get(key)!r} disagrees with {settings_path} "
                f"({settings[key]!r})"
            )
    obs = space_from_data(desc.get("observation_space"), f"{desc_path}: observation_space")
    act = space_from_data(desc.get("action_space"), f"{desc_path}: action_space")
    kwargs = kwargs_from_data(desc.get("policy_kwargs", {}), f"{desc_path}: policy_kwargs")
    bound = size_bound(obs, act, kwargs, f"{desc_path}: policy_kwargs")
    if bound > MAX_PARAMETERS:
        raise PolicyFileError(
            f"{desc_path}: the network it describes may hold up to {bound:,} parameters, "
            f"more than the {MAX_PARAMETERS:,} a policy may have"
        )
    tensors = _weights(desc_path, desc.get("weights"))
    try:
        policy = policy_class(algo)(obs, act, lambda _: 0.0, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise PolicyFileError(
            f"{desc_path}: the described {algo} policy cannot be built: {exc}"
        ) from None
    try:
        policy.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise PolicyFileError(
            f"{desc_path}: the weights do not fit the described network: {detail}"
        ) from None
    policy.set_training_mode(False)
    return policy, settings


def _load_zip(zip_path: Path) -> tuple[Any, dict[str, Any]]:
    """A stable-baselines3 zip through SB3 itself: this runs any code the file holds."""
    settings, _ = _settings(zip_path.parent)
    algo = settings["algo"]
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN, PPO

    cls = {"ppo": PPO, "maskable-ppo": MaskablePPO, "dqn": DQN}[algo]
    try:
        model = cls.load(zip_path, device="cpu")
    except Exception as exc:  # SB3 raises anything a damaged zip provokes; name the file
        raise PolicyFileError(
            f"{zip_path}: stable-baselines3 could not load it as {algo}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return model.policy, settings


def load_policy(path: str | Path, *, trust_pickle: bool = False) -> tuple[Any, dict[str, Any]]:
    """A saved policy and its training settings.

    `path`: a `firebreak train` directory, its `best/` directory, or a description file
    (`policy.json`, `checkpoints/policy_N_steps.json`). A stable-baselines3 zip is refused
    unless `trust_pickle`, because loading it can run code.
    """
    desc_path, zip_path = _locate(Path(path))
    if zip_path is not None:
        if not trust_pickle:
            raise _refuse_zip(zip_path)
        policy, settings = _load_zip(zip_path)
    else:
        assert desc_path is not None
        if not desc_path.is_file():
            raise PolicyFileError(f"{desc_path}: the policy description is missing")
        policy, settings = _load_safe(desc_path)
    return policy, settings

"""Crafted model files whose loading would run a shell command that touches a marker file.

Used to show that Firebreak's loaders execute nothing: every payload here really runs when
unpickled (`test_the_payload_is_live` checks that, so a refusal test cannot pass vacuously).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path


class _Touch:
    """Unpickling this calls os.system("touch MARKER")."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Touch(marker), protocol=4)


def evil_sb3_zip(path: Path, marker: Path) -> Path:
    """A `policy.zip` laid out as stable-baselines3 saves one, its `data` carrying the payload."""
    data = {
        "policy_class": {
            ":type:": "<class 'abc.ABCMeta'>",
            ":serialized:": base64.b64encode(evil_pickle(marker)).decode(),
        },
        "n_envs": 1,
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data", json.dumps(data))
        zf.writestr("_stable_baselines3_version", "2.3.0")
    return path


def crafted_policy_dir(folder: Path, marker: Path, env_id: str, algo: str = "ppo") -> Path:
    """A directory that looks like a trained policy: settings.json plus the crafted zip."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "algo": algo,
        "env_id": env_id,
        "env_settings": {
            "observation": "ranked",
            "top_k": 5,
            "decision_s": 10.0,
            "topologies": ["online-boutique"],
        },
        "env_kwargs": {},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    evil_sb3_zip(folder / "policy.zip", marker)
    return folder

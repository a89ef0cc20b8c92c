"""Where config, state and logs live, and what a stream name may be."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from streamctl.errors import UsageError

# Names become file names: keep them to a safe, portable alphabet so no write escapes the state folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"invalid stream name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Paths:
    config_file: Path
    state_dir: Path

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def state_file(self, name: str) -> Path:
        return self.state_dir / f"{validate_name(name)}.json"

    def state_lock(self, name: str) -> Path:
        """Held briefly around every read-modify-write of the state file."""
        return self.state_dir / f"{validate_name(name)}.lock"

    def run_lock(self, name: str) -> Path:
        """Held by the supervisor for its whole life: the proof that it runs."""
        return self.state_dir / f"{validate_name(name)}.run.lock"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{validate_name(name)}.log"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Paths:
        e = os.environ if env is None else env
        home = e.get("STREAMCTL_HOME")
        if home:
            base = Path(home).expanduser()
            return cls(config_file=base / "streamctl.toml", state_dir=base / "state")
        user_home = Path(e.get("HOME") or Path.home())
        config_home = Path(e.get("XDG_CONFIG_HOME") or user_home / ".config")
        state_home = Path(e.get("XDG_STATE_HOME") or user_home / ".local" / "state")
        return cls(
            config_file=config_home / "streamctl" / "streamctl.toml",
            state_dir=state_home / "streamctl",
        )

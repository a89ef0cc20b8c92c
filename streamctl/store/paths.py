"""Where config, state and logs live, and what a stream name may be."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from streamctl.errors import UsageError

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

CONFIG_NAME = "streamctl.toml"
# Root's home: a system service's config and state, in the folder the unit's StateDirectory=streamctl
# creates (0700). One default for `add`, `start`, the unit and cron, whoever's $HOME they run with.
SYSTEM_HOME = Path("/var/lib/streamctl")

# Names become file names: keep them to a safe, portable alphabet so no write escapes the state folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def under(root: Path, path: Path) -> Path:
    """PATH inside ROOT (`--root` of install-service and the checks of doctor: another system's files)."""
    return root / path.relative_to(path.anchor) if path.is_absolute() else root / path


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"invalid stream name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


# What each of a stream's files in the state folder ends with. Stream A's file A+s and stream B's B+t are
# one file only if s ends with t (B = A + what s has before t) or t with s: so no suffix may end with
# another, and none may end a fixed name (FIXED). `col.run.lock` (col's run lock, col.run's state lock)
# was such a pair. tests/test_names.py holds every pair of names built from these apart.
STATE_SUFFIXES = {
    "state": ".json",
    "corrupt": ".json.corrupt",  # a broken state file's copy (state.py)
    "state_lock": ".lock",
    "run_lock": ".runlock",
    "playlist": ".playlist.ffconcat",  # a folder or list input as ffmpeg reads it (run/playlist.py)
    "resume": ".resume.ffconcat",  # the input from where the stream was (run/resume.py)
}
FIXED = ("config.cache", "serve.token", "logs", "events")  # other entries of the state folder


@dataclass(frozen=True)
class Paths:
    config_file: Path
    state_dir: Path

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def stream_file(self, name: str, kind: str) -> Path:
        """NAME's file of KIND (a key of STATE_SUFFIXES) in the state folder."""
        return self.state_dir / f"{validate_name(name)}{STATE_SUFFIXES[kind]}"

    def state_file(self, name: str) -> Path:
        return self.stream_file(name, "state")

    def state_lock(self, name: str) -> Path:
        """Held briefly around every read-modify-write of the state file."""
        return self.stream_file(name, "state_lock")

    def run_lock(self, name: str) -> Path:
        """Held by the supervisor for its whole life: the proof that it runs."""
        return self.stream_file(name, "run_lock")

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{validate_name(name)}.log"

    @property
    def home(self) -> Path | None:
        """The STREAMCTL_HOME that gives these paths; None for the per-user XDG folders."""
        base = self.config_file.parent
        if self.config_file.name == CONFIG_NAME and self.state_dir == base / "state":
            return base
        return None

    def env(self) -> dict[str, str]:
        """The variables that make `from_env` give these paths again in another environment (a systemd
        unit, a cron line), so the service and cron use exactly the files this command uses."""
        if self.home is not None:
            return {"STREAMCTL_HOME": str(self.home)}
        cfg, state = self.config_file, self.state_dir
        if cfg.name == CONFIG_NAME and cfg.parent.name == "streamctl" and state.name == "streamctl":
            return {"XDG_CONFIG_HOME": str(cfg.parent.parent), "XDG_STATE_HOME": str(state.parent)}
        raise UsageError(f"config {cfg} and state {state} cannot be given by STREAMCTL_HOME")

    def describe(self) -> str:
        home = self.home
        return str(home) if home is not None else f"config {self.config_file}, state {self.state_dir}"

    @classmethod
    def in_home(cls, home: Path) -> Paths:
        return cls(config_file=home / CONFIG_NAME, state_dir=home / "state")

    @classmethod
    def xdg(cls, env: Mapping[str, str]) -> Paths:
        """A user's own folders: $XDG_CONFIG_HOME/streamctl/ and $XDG_STATE_HOME/streamctl/."""
        user_home = Path(env.get("HOME") or Path.home())
        config_home = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")
        state_home = Path(env.get("XDG_STATE_HOME") or user_home / ".local" / "state")
        return cls(
            config_file=(config_home / "streamctl" / CONFIG_NAME).absolute(),
            state_dir=(state_home / "streamctl").absolute(),
        )

    def leftover_config(self, env: Mapping[str, str] | None = None, euid: int | None = None) -> str | None:
        """As root, a config left in ~/.config/streamctl/ is no longer read: where it is and how to move
        it (None when there is none)."""
        if (os.geteuid() if euid is None else euid) != 0:
            return None
        old = Paths.xdg(os.environ if env is None else env)
        if old.config_file == self.config_file or not old.config_file.exists():
            return None
        if self.config_file.exists():
            how = f"copy its [streams.*] tables into {self.config_file}, then remove it"
        else:
            how = f"mkdir -p -m 700 {self.config_file.parent} && mv {old.config_file} {self.config_file}"
            if old.state_dir.exists() and not self.state_dir.exists():
                how += f" && mv {old.state_dir} {self.state_dir}"  # the runtime so far goes along
        return f"{old.config_file} is not read as root: the config is {self.config_file}; move it: {how}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, euid: int | None = None) -> Paths:
        """Where config and state live for a process with ENV and EUID (default: this one's).

        STREAMCTL_HOME always wins; then root gets SYSTEM_HOME (what the systemd unit and cron use);
        everyone else the XDG folders. The only place that decides it.
        """
        e = os.environ if env is None else env
        home = e.get("STREAMCTL_HOME")
        if home:
            return cls.in_home(Path(home).expanduser().absolute())
        if (os.geteuid() if euid is None else euid) == 0:
            return cls.in_home(SYSTEM_HOME)
        return cls.xdg(e)

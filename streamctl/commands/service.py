"""`streamctl install-service`: the systemd template unit and the cron sweep, pointing at this streamctl
and at the config and state this command uses (paths.Paths), so the service finds the streams."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamctl.errors import (
    Conflict,
    EnvironmentProblem,
    FileError,
    NotFound,
    StreamctlError,
    UsageError,
    did_you_mean,
)
from streamctl.store.fileio import atomic_write
from streamctl.store.paths import Paths, under, validate_name

UNIT_NAME = "streamctl@.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
CRON_FILE = Path("/etc/cron.d/streamctl")
SWEEP_LOG = "/var/log/streamctl-sweep.log"
SYSTEMD_RUNNING = Path("/run/systemd/system")  # what sd_booted() checks

# Paths go into a unit (where % and $ are expanded and spaces split) and a shell command line (cron):
# allow only characters that mean nothing to either, so nothing needs quoting.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/+@:,-]*")

# The same text as examples/streamctl@.service (a test keeps them equal), with the paths filled in.
UNIT_TEMPLATE = """\
# systemd template unit: one stream per instance, e.g.  systemctl enable --now streamctl@morning
# Written by `streamctl install-service NAME` (examples/streamctl@.service is a copy) with the path of the
# streamctl that wrote it and the home of its config and state. The stream must be in that config
# (streamctl add ...). After a crash of the supervisor or a reboot, systemd starts it again and streamctl
# resumes with what is left of the budget; once the budget is spent, `start` exits 5 and systemd leaves
# it stopped.

[Unit]
Description=streamctl timed stream %i
{network}StartLimitIntervalSec=600
StartLimitBurst=10

[Service]
Type=simple
Environment={environment}
ExecStart={streamctl} start %i --quiet
ExecStop={streamctl} stop %i --timeout 30
# exit 1 = gave up after its retries: try again later, the budget is kept
Restart=on-failure
RestartSec=30
# 2 bad input, 3 no such stream, 4 already running, 5 budget spent, 6 files, 7 no ffmpeg: no retry helps
RestartPreventExitStatus=2 3 4 5 6 7
# SIGTERM to streamctl only: it stops ffmpeg gracefully (q, SIGTERM, SIGKILL after its grace) and saves
# the runtime; then anything left in the cgroup is killed.
KillMode=mixed
TimeoutStopSec=40
StateDirectory=streamctl
StateDirectoryMode=0700
UMask=0077
NoNewPrivileges=yes

[Install]
WantedBy={wanted_by}
"""

CRON_HEADER = """\
# streamctl's third stop layer, written by `streamctl install-service`: every minute, stop whatever
# overran its time, even if its supervisor died. One line per home (STREAMCTL_HOME), each its own sweep.
"""
_CRON_HEADER_START = "# streamctl's third stop layer"
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def _plain(path: str, what: str) -> str:
    if not _PLAIN_PATH.fullmatch(path) or "//" in path:
        raise UsageError(
            f"{what} {path!r} cannot go into a unit or a cron line: use an absolute path of letters, "
            "digits and . _ - + @ : ,"
        )
    return path


def _assignments(paths: Paths) -> str:
    return " ".join(f"{k}={_plain(v, k)}" for k, v in paths.env().items())


def unit_text(streamctl: str, paths: Paths, system: bool = True) -> str:
    """The template unit for STREAMCTL and PATHS; SYSTEM: for the system manager, else a user's."""
    return UNIT_TEMPLATE.format(
        network="After=network-online.target\nWants=network-online.target\n" if system else "",
        environment=_assignments(paths),
        streamctl=_plain(streamctl, "streamctl"),
        wanted_by="multi-user.target" if system else "default.target",
    )


def cron_line(streamctl: str, paths: Paths, user: str | None) -> str:
    """The sweep every minute. USER: the user field of /etc/cron.d, whose line also appends what sweep
    did to SWEEP_LOG (without an MTA cron throws output away); None: a line for a user's own crontab."""
    who = f"{user} " if user else ""
    log = f" >> {SWEEP_LOG} 2>&1" if user else ""
    return f"* * * * * {who}{_assignments(paths)} {_plain(streamctl, 'streamctl')} sweep{log}"


def _cron_home(line: str) -> Paths | None:
    """The config and state a sweep line of the cron file (user root) runs for; None for any other line."""
    fields = line.split()
    if len(fields) < 8 or fields[0].startswith("#") or fields[5] != "root":
        return None
    env: dict[str, str] = {}
    rest = fields[6:]
    while rest and (m := _ASSIGN.fullmatch(rest[0])):
        env[m[1]] = m[2]
        rest = rest[1:]
    if len(rest) < 2 or Path(rest[0]).name != "streamctl" or rest[1] != "sweep":
        return None
    return Paths.from_env(env, euid=0)


def cron_text(existing: str, streamctl: str, paths: Paths) -> str:
    """The cron file with the sweep of PATHS in it: EXISTING (the file as it is, or "") with the line for
    this home put in (replacing the one there, whichever streamctl it named) and every other line kept.
    Each home gets its own line, so one home's install never takes the sweep away from another's."""
    ours = cron_line(streamctl, paths, "root")
    lines = existing.splitlines()
    if lines and lines[0].startswith(_CRON_HEADER_START):
        while lines and lines[0].startswith("#"):
            lines.pop(0)  # our header, perhaps an older wording: the current one goes first
    while lines and not lines[-1].strip():
        lines.pop()
    body: list[str] = []
    for line in lines:
        if _cron_home(line) != paths:
            body.append(line)
        elif ours not in body:
            body.append(ours)  # in place of the first line for this home; a second one goes
    if ours not in body:
        body.append(ours)
    return CRON_HEADER + "\n".join(body) + "\n"


def _unit_conflict(
    unit_path: Path, name: str, streamctl: str, paths: Paths, root: Path, euid: int, home: str
) -> None:
    """Refuse to rewrite an existing template unit for another home or another streamctl: every instance
    (every stream) shares that one file, so the streams it was written for would stop finding their
    config. The same home and streamctl: rewritten (an upgrade of this text) or unchanged."""
    from streamctl.commands.doctor import unit_uses

    if not unit_path.exists():
        return
    try:
        used = unit_uses(unit_path, root, euid, home)
    except OSError as e:
        raise FileError(f"cannot read {unit_path}: {e.strerror}") from None
    shared = "and every stream shares that unit"
    if isinstance(used, str):
        raise Conflict(f"{used}, {shared}: fix it, or remove {unit_path} first")
    theirs, their_exe = used
    if theirs != paths:
        same = (
            f"STREAMCTL_HOME={theirs.home}" if theirs.home is not None else theirs.describe()
        ) + " for every stream (one home holds many streams)"
        raise Conflict(
            f"{unit_path} runs the streams of {theirs.describe()}, not {paths.describe()}, {shared}: "
            f"use {same}, or remove {unit_path} first"
        )
    if their_exe != streamctl:
        raise Conflict(
            f"{unit_path} runs {their_exe}, not {streamctl}, {shared}: run {their_exe} install-service "
            f"{name}, or remove {unit_path} first"
        )


def streamctl_executable(argv0: str | None = None) -> str:
    """The absolute path of the streamctl script running now, for ExecStart and cron (which have no
    PATH of the user's): sys.argv[0] resolved, or bin/streamctl beside this Python (`python -m`)."""
    candidates = [Path(argv0 if argv0 is not None else sys.argv[0])]
    candidates.append(Path(sys.executable).absolute().parent / "streamctl")  # not resolved: a venv's
    for c in candidates:
        if c.name == "streamctl" and c.is_file() and os.access(c, os.X_OK):
            return str(c.resolve())
    raise EnvironmentProblem(
        "cannot find the streamctl executable to put in the unit: run the installed "
        "`streamctl` (e.g. /opt/streamctl/bin/streamctl), not python -m streamctl"
    )


def _write(path: Path, text: str) -> bool:
    """Write TEXT to PATH atomically, mode 0644 (systemd and cron read it; it holds no secret).
    False when it already was exactly that."""
    try:
        if path.read_text() == text and path.stat().st_mode & 0o777 == 0o644:
            return False
    except OSError:
        pass
    atomic_write(path, text.encode(), mode=0o644)
    return True


def check_stream(paths: Paths, name: str, euid: int, env: Mapping[str, str]) -> None:
    """Refuse NAME unless the service would find and resolve it: in the config, complete, and with no
    relative path or environment variable that only this shell has."""
    from streamctl.store.config import load_config, require_limit, resolve_spec

    validate_name(name)
    config = load_config(paths)
    table = config.streams.get(name)
    if table is None:
        hint = ""
        old = Paths.xdg(env).config_file
        if euid == 0 and old != paths.config_file and old.exists():
            hint = f" ({old} is not read as root: see streamctl doctor)"
        # only configured streams: one that has a state file alone cannot be installed either
        suggest = did_you_mean(name, config.streams) or "; add it with streamctl add"
        raise NotFound(f"no stream named {name!r} in {paths.config_file}{hint}{suggest}")
    if "key_env" in table:
        raise UsageError(
            f"stream {name!r} reads its key from ${table['key_env']}, which the service does not have: "
            f"give it a key_file (streamctl add {name} ... --key-file FILE --replace)"
        )
    where = {"key_file": table.get("key_file")}
    if not table.get("input_format") and "://" not in str(table.get("input", "")):
        where["input"] = table.get("input")
    for key, value in where.items():
        if value is not None and not Path(str(value)).expanduser().is_absolute():
            raise UsageError(
                f"stream {name!r}: {key} {value!r} is relative, and the service runs in /: "
                f"give an absolute path (streamctl add {name} ... --replace)"
            )
    try:
        require_limit(resolve_spec(paths, name, {}))
    except StreamctlError as e:
        raise type(e)(f"stream {name!r} would not start: {e}") from None


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _systemctl(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentProblem(f"{' '.join(argv)} failed: {e}") from None


@dataclass
class Installed:
    written: list[Path] = field(default_factory=list)  # changed by this run
    unchanged: list[Path] = field(default_factory=list)  # already exactly so (a re-run)
    ran: list[str] = field(default_factory=list)  # systemctl commands run
    todo: list[str] = field(default_factory=list)  # what is left for the user, one line each


def install(
    paths: Paths,
    name: str,
    root: Path = Path("/"),
    enable: bool = True,
    euid: int | None = None,
    env: Mapping[str, str] | None = None,
    streamctl: str | None = None,
    run: Runner = _systemctl,
) -> Installed:
    """Write the unit and the cron sweep for NAME (under ROOT), then enable and start streamctl@NAME
    when systemd runs here. Nothing is written unless NAME would start under the service."""
    from streamctl.store.fileio import is_locked

    uid = os.geteuid() if euid is None else euid
    e = os.environ if env is None else env
    system = uid == 0
    check_stream(paths, name, uid, e)
    exe = streamctl or streamctl_executable()
    unit = unit_text(exe, paths, system)
    user_home = e.get("HOME") or str(Path.home())
    user_config = Path(e.get("XDG_CONFIG_HOME") or Path(user_home) / ".config")
    unit_path = under(root, SYSTEM_UNIT_DIR if system else user_config / "systemd" / "user") / UNIT_NAME
    _unit_conflict(unit_path, name, exe, paths, root, uid, user_home)
    out = Installed()
    files = [(unit_path, unit)]
    if system:
        cron_path = under(root, CRON_FILE)
        try:
            existing = cron_path.read_text()
        except FileNotFoundError:
            existing = ""
        except OSError as err:
            raise FileError(f"cannot read {cron_path}: {err.strerror}") from None
        files.append((cron_path, cron_text(existing, exe, paths)))
    for path, text in files:
        (out.written if _write(path, text) else out.unchanged).append(path)
    if not system:
        line = cron_line(exe, paths, None)
        out.todo.append(f"add the sweep to your crontab: (crontab -l 2>/dev/null; echo '{line}') | crontab -")
        out.todo.append(f"to keep it running when you log out: loginctl enable-linger {_user(uid)}")
    elif root == Path("/") and not shutil.which("cron"):
        out.todo.append(f"cron is not installed, so {CRON_FILE} does nothing yet: apt-get install cron")
    ctl = ["systemctl"] + ([] if system else ["--user"])
    instance = f"streamctl@{name}"
    later = f"{' '.join(ctl)} daemon-reload && {' '.join(ctl)} enable --now {instance}"
    if root != Path("/"):
        out.todo.append(f"the files are under {root}, not in this system's /: systemctl not run")
        return out
    if not enable or not SYSTEMD_RUNNING.is_dir() or not shutil.which("systemctl"):
        why = "--no-enable" if not enable else "systemd is not running here"
        out.todo.append(f"{why}: to start it under systemd: {later}")
        return out
    steps = [[*ctl, "daemon-reload"], [*ctl, "enable", "--now", instance]]
    if is_locked(paths.run_lock(name)) and run([*ctl, "is-active", "--quiet", instance]).returncode != 0:
        # running outside systemd: a start now would exit 4 (already running) and leave the unit failed
        steps[1] = [*ctl, "enable", instance]
        out.todo.append(
            f"{name} is running outside systemd; systemd takes over at the next boot, or now: "
            f"streamctl stop {name} && {' '.join(ctl)} start {instance}"
        )
    for argv in steps:
        r = run(argv)
        if r.returncode != 0:
            detail = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            raise EnvironmentProblem(f"{' '.join(argv)} failed: {detail}")
        out.ran.append(" ".join(argv))
    return out


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)

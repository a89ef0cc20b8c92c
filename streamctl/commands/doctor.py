"""`streamctl doctor`: is this machine ready to stream, and is the safety net (cron, systemd) in place?"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from streamctl.errors import EXIT_ENVIRONMENT, StreamctlError
from streamctl.store.paths import Paths, under


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    needed: bool = True  # a failed needed check makes doctor exit non-zero...
    exit_code: int = EXIT_ENVIRONMENT  # ...with the code of the first one

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def check_ffmpeg(cli: str | None, configured: str | None) -> list[Check]:
    from streamctl.run.ffmpeg import find_ffmpeg, find_ffprobe

    try:
        ffmpeg, source = find_ffmpeg(cli, configured)
    except StreamctlError as e:
        return [Check("ffmpeg", False, str(e))]
    version = (_run([ffmpeg, "-hide_banner", "-version"]).splitlines() or ["unknown version"])[0]
    out = [Check("ffmpeg", True, f"{ffmpeg} (from {source}): {version}")]
    protocols = _run([ffmpeg, "-hide_banner", "-protocols"]).split()
    muxers = _run([ffmpeg, "-hide_banner", "-muxers"])
    encoders = _run([ffmpeg, "-hide_banner", "-encoders"])
    out.append(
        Check(
            "rtmp output",
            "rtmp" in protocols,
            "rtmp/rtmps protocol" + ("" if "rtmp" in protocols else " missing"),
        )
    )
    out.append(Check("flv muxer", " flv " in muxers, "needed for RTMP"))
    out.append(Check("libx264", "libx264" in encoders, "encode mode only", needed=False))
    out.append(Check("aac", " aac " in encoders, "encode mode only", needed=False))
    ffprobe = find_ffprobe(ffmpeg)
    out.append(
        Check(
            "ffprobe",
            ffprobe is not None,
            ffprobe or "not found: inputs are not checked before a start (the bundled ffmpeg has none)",
            needed=False,
        )
    )
    setpriv = shutil.which("setpriv")
    out.append(
        Check(
            "setpriv",
            setpriv is not None,
            setpriv
            or "not found (util-linux): an ffmpeg could outlive a SIGKILLed supervisor; run sweep from cron",
            needed=False,
        )
    )
    return out


def check_config(paths: Paths) -> list[Check]:
    """The config read as `start` reads it: one failed check per broken stream (`check` says more)."""
    from streamctl.store.config import load_config

    try:
        config = load_config(paths)
    except StreamctlError as e:
        return [Check("config", False, str(e), exit_code=e.exit_code)]
    out = []
    for name in config.streams:
        try:
            config.checked_spec(name)
        except StreamctlError as e:
            out.append(Check("config", False, str(e), exit_code=e.exit_code))
    n = len(config.streams)
    cfg = paths.config_file
    return out or [Check("config", True, f"{cfg} {_mode(cfg)}, {n} stream{'s' * (n != 1)}, all valid")]


def check_files(paths: Paths) -> list[Check]:
    out = []
    cfg = paths.config_file
    if cfg.exists():
        out += check_config(paths)
    else:
        out.append(Check("config", True, f"{cfg} (none yet: `streamctl add` creates it)", needed=False))
    d = paths.state_dir
    if d.exists():
        writable = os.access(d, os.W_OK)
        private = d.stat().st_mode & 0o077 == 0
        out.append(Check("state folder", writable, f"{d} {_mode(d)}" + ("" if writable else " not writable")))
        out.append(Check("state privacy", private, f"{d} should be 0700", needed=False))
    else:
        out.append(Check("state folder", True, f"{d} (created on the first start)", needed=False))
    return out


def check_old_config(
    paths: Paths, env: Mapping[str, str] | None = None, euid: int | None = None
) -> list[Check]:
    """As root, the config is in SYSTEM_HOME: one left in ~/.config/streamctl/ is no longer read."""
    detail = paths.leftover_config(env, euid)
    return [Check("old config", False, detail, needed=False)] if detail else []


_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
_CRON_ENV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_CRON_FILE_NAME = re.compile(r"[A-Za-z0-9_-]+")  # cron skips other names in /etc/cron.d (dpkg-old, ...)
CRON_PATH = "/usr/bin:/bin"  # cron's default PATH
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


@dataclass(frozen=True)
class _Runner:
    """A cron line or a unit that runs streamctl: with what environment, as whom, which binary."""

    where: str
    env: dict[str, str]
    euid: int
    exe: str
    path: str  # its PATH, for an exe given without one


def _split(text: str) -> list[str]:
    try:
        return list(shlex.split(text))
    except ValueError:
        return text.split()


def _account(user: str | None) -> tuple[int, str] | None:
    """uid and home of USER (None: root), or None if there is no such user."""
    name = user or "root"
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_dir


def _cron_sweeps(where: str, text: str, system: bool, euid: int, home: str) -> list[_Runner]:
    env: dict[str, str] = {}
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line[0] not in "@*0123456789":
            m = _CRON_ENV.fullmatch(line)
            if m:
                env[m[1]] = m[2].strip().strip("'\"")
            continue
        n = (1 if line.startswith("@") else 5) + (1 if system else 0)
        fields = line.split(None, n)
        if len(fields) <= n:
            continue
        uid, user_home = euid, home
        if system:
            account = _account(fields[n - 1])
            if account is None:
                continue  # cron skips a line for an unknown user too
            uid, user_home = account
        tokens = _split(fields[n])
        for i, token in enumerate(tokens[:-1]):
            if Path(token).name == "streamctl" and tokens[i + 1] == "sweep":
                inline: dict[str, str] = {}
                for t in reversed(tokens[:i]):
                    m = _ASSIGN.fullmatch(t)
                    if not m and t != "env":
                        break
                    if m:
                        inline.setdefault(m[1], m[2])
                line_env = {"HOME": user_home, **env, **inline}
                out.append(_Runner(where, line_env, uid, token, line_env.get("PATH", CRON_PATH)))
                break
    return out


def _unit_runner(where: str, files: list[Path], root: Path, euid: int, home: str) -> _Runner | str:
    """What streamctl@.service (and its drop-ins, FILES in order) runs with, or why that is unknown."""
    env: dict[str, str] = {}
    env_files: list[str] = []
    user = exe = None
    for f in files:
        section = ""
        for raw in f.read_text(errors="replace").splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line
                continue
            key, eq, value = line.partition("=")
            if section != "[Service]" or not eq:
                continue
            key, value = key.strip(), value.strip()
            if key == "Environment":
                pairs = (t.split("=", 1) for t in _split(value) if _ASSIGN.fullmatch(t))
                env = env | dict(pairs) if value else {}  # an empty Environment= resets it
            elif key == "EnvironmentFile":
                env_files = [] if not value else [*env_files, value]
            elif key == "User":
                user = value or None
            elif key == "ExecStart":
                exe = next(iter(_split(value)), None)
    for name in env_files:  # they override Environment=
        path = under(root, Path(name.lstrip("-")))
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            if not name.startswith("-"):
                return f"{where}: its EnvironmentFile {path} cannot be read"
            continue
        for ln in lines:
            m = _CRON_ENV.fullmatch(ln.strip())
            if m and not ln.lstrip().startswith("#"):
                env[m[1]] = m[2].strip().strip("'\"")
    if user is not None:
        account = _account(user)
        if account is None:
            return f"{where}: User={user} does not exist"
        euid, home = account
    if not exe:
        return f"{where} has no ExecStart"
    return _Runner(where, {"HOME": home, **env}, euid, exe.lstrip("@-:+!"), SYSTEMD_PATH)


def unit_uses(unit: Path, root: Path, euid: int, home: str) -> tuple[Paths, str] | str:
    """The config and state, and the streamctl, that UNIT (with its drop-ins) runs for a manager of EUID
    (0: the system one) whose HOME is HOME; or why that is unknown. OSError if UNIT cannot be read."""
    drop_ins = sorted(Path(f"{unit}.d").glob("*.conf"))
    r = _unit_runner(str(unit), [unit, *drop_ins], root, euid, home)
    return r if isinstance(r, str) else (Paths.from_env(r.env, r.euid), r.exe)


def _problem(r: _Runner, paths: Paths, root: Path) -> str | None:
    """Why R would not act on PATHS with a working streamctl; None when it would."""
    if os.sep in r.exe:
        found = os.access(under(root, Path(r.exe)), os.X_OK)
    else:
        found = any(os.access(under(root, Path(d) / r.exe), os.X_OK) for d in r.path.split(":") if d)
    if not found:
        return f"{r.where} runs {r.exe}, which is not there: run `streamctl install-service NAME` again"
    theirs = Paths.from_env(r.env, r.euid)
    if theirs == paths:
        return None
    given = r.env.get("STREAMCTL_HOME")
    how = f"sets STREAMCTL_HOME={given}" if given else f"sets no STREAMCTL_HOME (so {theirs.describe()})"
    return (
        f"{r.where} {how}, but this command uses {paths.describe()}: it would not find these streams; "
        "run `streamctl install-service NAME` with the streams' STREAMCTL_HOME"
    )


def _verdict(name: str, runners: list[_Runner | str], paths: Paths, root: Path, missing: str) -> Check:
    problems = []
    for r in runners:
        problem = r if isinstance(r, str) else _problem(r, paths, root)
        if problem is None:
            assert isinstance(r, _Runner)
            return Check(name, True, f"{r.where}: {r.exe}, for {paths.describe()}", needed=False)
        problems.append(problem)
    if len(problems) > 1:  # several sweep lines (one per home), none for this one: say there are more
        more = len(problems) - 1
        problems[0] += f" (and {more} more line{'s' * (more != 1)} that would not either)"
    return Check(name, False, problems[0] if problems else missing, needed=False)


def check_safety_net(
    paths: Paths,
    root: Path = Path("/"),
    env: Mapping[str, str] | None = None,
    euid: int | None = None,
    crontab: str | None = None,
) -> list[Check]:
    """Are the cron sweep and the systemd unit there, and do they use the config and state PATHS
    names (the ones this command uses)? ROOT prefixes every file read; CRONTAB is the user's crontab
    (default: `crontab -l`, only when ROOT is /)."""
    e = os.environ if env is None else env
    uid = os.geteuid() if euid is None else euid
    home = e.get("HOME") or str(Path.home())
    if crontab is None:
        crontab = _run(["crontab", "-l"]) if root == Path("/") else ""
    sweeps: list[_Runner | str] = list(_cron_sweeps("your crontab", crontab, False, uid, home))
    system_files = [under(root, Path("/etc/crontab"))]
    cron_d = under(root, Path("/etc/cron.d"))
    if cron_d.is_dir():
        system_files += sorted(f for f in cron_d.iterdir() if _CRON_FILE_NAME.fullmatch(f.name))
    for f in system_files:
        with contextlib.suppress(OSError):
            sweeps += _cron_sweeps(str(f), f.read_text(errors="replace"), True, uid, home)
    user_config = Path(e.get("XDG_CONFIG_HOME") or Path(home) / ".config")
    units: list[_Runner | str] = []
    for unit, unit_uid in (
        (under(root, Path("/etc/systemd/system/streamctl@.service")), 0),
        (under(root, user_config / "systemd/user/streamctl@.service"), uid),
    ):
        if unit.exists():
            drop_ins = sorted(Path(f"{unit}.d").glob("*.conf"))
            units.append(_unit_runner(str(unit), [unit, *drop_ins], root, unit_uid, home))
    hint = "streamctl install-service NAME writes it"
    # every unit on its own (a system one and a user's may both be there); cron: one matching line will do
    unit_checks = [_verdict("systemd unit", [u], paths, root, "") for u in units]
    return [
        _verdict("cron sweep", sweeps, paths, root, f"no `streamctl sweep` in cron ({hint})"),
        *(unit_checks or [_verdict("systemd unit", [], paths, root, f"no streamctl@.service ({hint})")]),
    ]


def run(paths: Paths, cli_ffmpeg: str | None, configured_ffmpeg: str | None) -> list[Check]:
    checks = check_ffmpeg(cli_ffmpeg, configured_ffmpeg) + check_files(paths)
    return checks + check_old_config(paths) + check_safety_net(paths)

"""`streamctl doctor`: is this machine ready to stream, and is the safety net (cron, systemd) in place?"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from streamctl.errors import StreamctlError
from streamctl.paths import Paths


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    needed: bool = True  # a failed needed check makes doctor exit non-zero

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
    from streamctl.ffmpeg import find_ffmpeg, find_ffprobe

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


def check_files(paths: Paths) -> list[Check]:
    out = []
    cfg = paths.config_file
    if cfg.exists():
        loose = cfg.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        out.append(
            Check(
                "config",
                not loose,
                f"{cfg} {_mode(cfg)}" + (" writable by others: chmod 600" if loose else ""),
            )
        )
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


def check_safety_net() -> list[Check]:
    cron = "streamctl sweep" in _run(["crontab", "-l"])
    units = [
        Path("/etc/systemd/system/streamctl@.service"),
        Path.home() / ".config/systemd/user/streamctl@.service",
    ]
    unit = next((u for u in units if u.exists()), None)
    return [
        Check(
            "cron sweep",
            cron,
            "crontab runs `streamctl sweep`"
            if cron
            else "no `streamctl sweep` in crontab (see examples/crontab)",
            needed=False,
        ),
        Check(
            "systemd unit",
            unit is not None,
            str(unit) if unit else "no streamctl@.service (see examples/)",
            needed=False,
        ),
    ]


def run(paths: Paths, cli_ffmpeg: str | None, configured_ffmpeg: str | None) -> list[Check]:
    return check_ffmpeg(cli_ffmpeg, configured_ffmpeg) + check_files(paths) + check_safety_net()

"""Where config and state live (root, a user, STREAMCTL_HOME), `install-service`, and doctor's view of
the unit and cron: the service, cron and the commands must all use the same files."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamctl.commands.doctor import check_old_config, check_safety_net
from streamctl.commands.service import cron_line, unit_text
from streamctl.store.paths import SYSTEM_HOME, Paths
from tests.conftest import Ran, run_cli

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# The installed console script, as a user runs it (pip install puts it beside the venv's python).
STREAMCTL = Path(sys.executable).parent / "streamctl"
EXE = str(STREAMCTL.resolve())
UNIT = "etc/systemd/system/streamctl@.service"
CRON = "etc/cron.d/streamctl"


def test_paths_for_root_for_a_user_and_with_streamctl_home() -> None:
    user = {"HOME": "/home/ann"}
    assert Paths.from_env(user, euid=1000) == Paths(
        Path("/home/ann/.config/streamctl/streamctl.toml"), Path("/home/ann/.local/state/streamctl")
    )
    xdg = {**user, "XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s"}
    assert Paths.from_env(xdg, euid=1000) == Paths(Path("/c/streamctl/streamctl.toml"), Path("/s/streamctl"))
    # root: the system service's folder, whatever $HOME or XDG say (sudo, cron and systemd differ there)
    for env in ({"HOME": "/root"}, xdg, {}):
        p = Paths.from_env(env, euid=0)
        assert p == Paths(Path("/var/lib/streamctl/streamctl.toml"), Path("/var/lib/streamctl/state"))
        assert p.home == SYSTEM_HOME
    for euid in (0, 1000):
        p = Paths.from_env({**xdg, "STREAMCTL_HOME": "/srv/s/"}, euid=euid)  # always wins
        assert p == Paths(Path("/srv/s/streamctl.toml"), Path("/srv/s/state"))
    # what a unit or a cron line sets gives the same paths back
    for env, euid in ((user, 1000), (xdg, 1000), ({}, 0), ({"STREAMCTL_HOME": "/x"}, 1000)):
        p = Paths.from_env(env, euid=euid)
        assert Paths.from_env(p.env(), euid=euid) == p


def _config(home: Path, tmp_path: Path, table: str | None = None) -> Path:
    input_file = tmp_path / "loop.mp4"
    input_file.write_bytes(b"x")
    key = tmp_path / "yt-key"
    key.write_text("SECRETKEY123\n")
    key.chmod(0o600)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    cfg = home / "streamctl.toml"
    cfg.write_text(
        table
        or f'[streams.morning]\ninput = "{input_file}"\nurl = "rtmp://a.rtmp.youtube.com/live2"\n'
        f'key_file = "{key}"\nbudget = "5h"\n'
    )
    cfg.chmod(0o600)
    return cfg


def install(
    *args: str, via: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed script (or VIA) in a child process: what the unit and the cron line name is its path."""
    return subprocess.run([*(via or [str(STREAMCTL)]), "install-service", *args], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip


def install_here(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The same command in this process, as if run by the installed script (run_cli's argv[0])."""
    return run_cli("install-service", *args, env=env)


def test_install_service_writes_the_unit_and_the_cron_sweep_and_is_idempotent(
    home: Path, tmp_path: Path
) -> None:
    _config(home, tmp_path)
    root = tmp_path / "root"
    r = install("morning", "--root", str(root), "--no-enable")
    assert r.returncode == 0, r.stderr
    unit, cron = root / UNIT, root / CRON
    assert r.stdout.startswith(f"wrote {unit}\nwrote {cron}\n")
    assert f"the files are under {root}, not in this system's /: systemctl not run" in r.stdout
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string(unit.read_text())
    service = parsed["Service"]
    assert service["ExecStart"] == f"{EXE} start %i --quiet" and Path(EXE).is_file()
    assert service["ExecStop"] == f"{EXE} stop %i --timeout 30"
    assert service["Environment"] == f"STREAMCTL_HOME={Paths.from_env().home}" == f"STREAMCTL_HOME={home}"
    lines = [ln for ln in cron.read_text().splitlines() if not ln.startswith("#")]
    assert lines == [f"* * * * * root STREAMCTL_HOME={home} {EXE} sweep >> /var/log/streamctl-sweep.log 2>&1"]
    for f in (unit, cron):
        assert f.stat().st_mode & 0o777 == 0o644  # systemd and cron read them; no secret in them
        assert "SECRETKEY123" not in f.read_text()
    # the example is the same text with the default paths
    example = (
        unit.read_text().replace(EXE, "/opt/streamctl/bin/streamctl").replace(str(home), str(SYSTEM_HOME))
    )
    assert example == (EXAMPLES / "streamctl@.service").read_text()
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (unit, cron)}
    again = install("morning", "--root", str(root), "--no-enable")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"unchanged {unit}\nunchanged {cron}\n")
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (unit, cron)} == before
    # run as `python -m streamctl`, it still names the installed script, not python
    r = install("morning", "--root", str(root), "--no-enable", via=[sys.executable, "-m", "streamctl"])
    assert r.returncode == 0 and r.stdout.startswith("unchanged"), r.stdout + r.stderr
    # and doctor agrees with what it wrote (the streamctl it names exists under the same root)
    (root / EXE[1:]).parent.mkdir(parents=True)
    shutil.copy(EXE, root / EXE[1:])
    checks = check_safety_net(Paths.from_env(), root=root, env={"HOME": str(tmp_path)}, euid=0, crontab="")
    assert [(c.name, c.ok) for c in checks] == [("cron sweep", True), ("systemd unit", True)], checks


def _streams(tmp_path: Path, *names: str) -> str:
    return "".join(
        f'[streams.{n}]\ninput = "{tmp_path}/loop.mp4"\nurl = "rtmp://h/live"\nbudget = "1h"\n' for n in names
    )


def test_install_service_for_a_second_home_is_refused_and_one_home_holds_many_streams(
    home: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    _config(home, tmp_path, _streams(tmp_path, "sa", "sb"))
    _config(other, tmp_path, _streams(tmp_path, "sb"))
    root = tmp_path / "root"
    unit, cron = root / UNIT, root / CRON
    first = install_here("sa", "--root", str(root), "--no-enable")
    assert first.returncode == 0 and first.stdout.startswith(f"wrote {unit}\nwrote {cron}\n"), first.stderr
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (unit, cron)}
    # every stream shares the template unit: rewriting it for another home would break 'sa'
    r = install_here(
        "sb", "--root", str(root), "--no-enable", env={**os.environ, "STREAMCTL_HOME": str(other)}
    )
    assert (r.returncode, r.stdout) == (4, "")
    assert r.stderr == (
        f"streamctl: error: {unit} runs the streams of {home}, not {other}, and every stream shares that "
        f"unit: use STREAMCTL_HOME={home} for every stream (one home holds many streams), or remove {unit} first\n"
    )
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (unit, cron)} == before
    # another stream of the same home: the same unit and cron line, nothing new written
    r = install_here("sb", "--root", str(root), "--no-enable")
    assert r.returncode == 0 and r.stdout.startswith(f"unchanged {unit}\nunchanged {cron}\n"), r.stderr
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (unit, cron)} == before
    # the old unit removed: the other home gets the unit, and the cron file a sweep for each home
    unit.unlink()
    r = install_here(
        "sb", "--root", str(root), "--no-enable", env={**os.environ, "STREAMCTL_HOME": str(other)}
    )
    assert r.returncode == 0 and r.stdout.startswith(f"wrote {unit}\nwrote {cron}\n"), r.stderr
    assert f"Environment=STREAMCTL_HOME={other}\n" in unit.read_text()
    sweep = "* * * * * root STREAMCTL_HOME={} " + EXE + " sweep >> /var/log/streamctl-sweep.log 2>&1"
    lines = [ln for ln in cron.read_text().splitlines() if not ln.startswith("#")]
    assert lines == [sweep.format(home), sweep.format(other)]
    # doctor: each home has its sweep; the unit is the other home's; a third home has neither
    (root / EXE[1:]).parent.mkdir(parents=True)
    shutil.copy(EXE, root / EXE[1:])
    env = {"HOME": str(tmp_path)}
    c, u = check_safety_net(Paths.in_home(home), root=root, env=env, euid=0, crontab="")
    assert c.ok and c.detail == f"{cron}: {EXE}, for {home}", c
    assert not u.ok and u.detail.startswith(
        f"{unit} sets STREAMCTL_HOME={other}, but this command uses {home}"
    )
    c, u = check_safety_net(Paths.in_home(other), root=root, env=env, euid=0, crontab="")
    assert c.ok and u.ok, (c, u)
    third = tmp_path / "third"
    c, _ = check_safety_net(Paths.in_home(third), root=root, env=env, euid=0, crontab="")
    assert not c.ok and c.detail == (
        f"{cron} sets STREAMCTL_HOME={home}, but this command uses {third}: it would not find these streams; "
        "run `streamctl install-service NAME` with the streams' STREAMCTL_HOME (and 1 more line that would not "
        "either)"
    )


def test_install_service_refuses_a_unit_of_another_streamctl(home: Path, tmp_path: Path) -> None:
    from streamctl.commands import service

    _config(home, tmp_path)
    paths = Paths.from_env()
    root = tmp_path / "root"
    unit, cron = root / UNIT, root / CRON
    service.install(paths, "morning", root=root, euid=0, env={"HOME": str(tmp_path)}, streamctl=EXE)
    before = {f: f.read_bytes() for f in (unit, cron)}
    other = "/opt/other/bin/streamctl"
    with pytest.raises(service.Conflict) as e:
        service.install(paths, "morning", root=root, euid=0, env={"HOME": str(tmp_path)}, streamctl=other)
    assert str(e.value) == (
        f"{unit} runs {EXE}, not {other}, and every stream shares that unit: run {EXE} install-service "
        f"morning, or remove {unit} first"
    )
    assert {f: f.read_bytes() for f in (unit, cron)} == before
    # without the unit, this home's sweep line is replaced, not doubled, and other lines are kept
    unit.unlink()
    cron.write_text(cron.read_text() + "MAILTO=ops\n0 3 * * * root /usr/bin/true\n")
    service.install(paths, "morning", root=root, euid=0, env={"HOME": str(tmp_path)}, streamctl=other)
    assert cron.read_text() == service.CRON_HEADER + (
        f"* * * * * root STREAMCTL_HOME={home} {other} sweep >> /var/log/streamctl-sweep.log 2>&1\n"
        "MAILTO=ops\n0 3 * * * root /usr/bin/true\n"
    )


@pytest.mark.parametrize(
    ("table", "code", "message"),
    [
        (None, 3, "no stream named 'evening' in "),
        ('[streams.evening]\ninput = "/nonexistent/loop.mp4"\nurl = "rtmp://h/live"\nbudget = "1h"\n', 2,
         "stream 'evening' would not start: | input file not found: /nonexistent/loop.mp4"),
        ('[streams.evening]\ninput = "loop.mp4"\nurl = "rtmp://h/live"\nbudget = "1h"\n', 2,
         "stream 'evening': input 'loop.mp4' is relative, and the service runs in /"),
        ('[streams.evening]\ninput = "testsrc"\ninput_format = "lavfi"\nurl = "rtmp://h/live"\n'
         'key_env = "HOME"\nbudget = "1h"\n', 2, "reads its key from $HOME, which the service does not have"),
        ('[streams.evening]\ninput = "testsrc"\ninput_format = "lavfi"\nurl = "rtmp://h/live"\n', 2,
         "stream 'evening' would not start: | no budget"),
    ],
)  # fmt: skip
def test_install_service_refuses_what_the_service_could_not_start(
    home: Path, tmp_path: Path, table: str | None, code: int, message: str
) -> None:
    _config(home, tmp_path, table)
    root = tmp_path / "root"
    r = install_here("evening", "--root", str(root))
    assert r.returncode == code and r.stderr.count("\n") == 1, r.stderr
    assert all(part in r.stderr for part in message.split(" | ")), r.stderr  # the config's own words follow
    assert r.stdout == "" and not root.exists()  # nothing written


def test_install_service_help_has_an_example() -> None:
    r = run_cli("install-service", "--help")
    assert r.returncode == 0 and "Example: streamctl install-service morning" in " ".join(r.stdout.split())


def test_generated_unit_passes_systemd_analyze_verify(home: Path, tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: CI must install the systemd package")
        pytest.skip("needs systemd-analyze (the systemd package)")
    _config(home, tmp_path)
    root = tmp_path / "root"
    assert install_here("morning", "--root", str(root), "--no-enable").returncode == 0
    r = subprocess.run(["systemd-analyze", "verify", str(root / UNIT)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")


def _doctor_line(name: str, detail: str) -> str:
    return f"warn  {name:<14} {detail}"


def test_doctor_flags_a_unit_with_another_streamctl_home(home: Path, tmp_path: Path) -> None:
    other = Paths.in_home(Path("/srv/other"))
    user_unit = tmp_path / "user/.config/systemd/user/streamctl@.service"
    user_unit.parent.mkdir(parents=True)
    user_unit.write_text(unit_text(EXE, other, system=False))
    env = {**os.environ, "HOME": str(tmp_path / "user")}
    env.pop("XDG_CONFIG_HOME", None)
    r = run_cli("doctor", env=env)
    detail = (
        f"{user_unit} sets STREAMCTL_HOME=/srv/other, but this command uses {home}: it would not find these "
        "streams; run `streamctl install-service NAME` with the streams' STREAMCTL_HOME"
    )
    assert _doctor_line("systemd unit", detail) in r.stdout.splitlines(), r.stdout
    # the system unit and /etc/cron.d, under a root prefix
    root = tmp_path / "root"
    (root / UNIT).parent.mkdir(parents=True)
    (root / UNIT).write_text(unit_text(EXE, other))
    (root / EXE[1:]).parent.mkdir(parents=True)
    shutil.copy(EXE, root / EXE[1:])
    (root / CRON).parent.mkdir(parents=True)
    (root / CRON).write_text(f"* * * * * root {EXE} sweep\n")  # no STREAMCTL_HOME: root's default
    paths = Paths.in_home(home)
    cron, unit = check_safety_net(paths, root=root, env={"HOME": str(tmp_path)}, euid=0, crontab="")
    assert not cron.ok and cron.detail == (
        f"{root / CRON} sets no STREAMCTL_HOME (so /var/lib/streamctl), but this command uses {home}: it would "
        "not find these streams; run `streamctl install-service NAME` with the streams' STREAMCTL_HOME"
    )
    assert not unit.ok and unit.detail.startswith(f"{root / UNIT} sets STREAMCTL_HOME=/srv/other, but ")
    # a drop-in that sets the right home fixes the unit; a user crontab line with it fixes cron
    (root / f"{UNIT}.d").mkdir()
    (root / f"{UNIT}.d/home.conf").write_text(f"[Service]\nEnvironment=STREAMCTL_HOME={home}\n")
    line = cron_line(EXE, paths, None)
    cron, unit = check_safety_net(paths, root=root, env={"HOME": str(tmp_path)}, euid=0, crontab=line)
    assert cron.ok and unit.ok, (cron, unit)
    # a sweep run by name only: cron's PATH has no /usr/local/bin
    cron, _ = check_safety_net(paths, root=root, env={"HOME": str(tmp_path)}, euid=0,
                               crontab=f"* * * * * STREAMCTL_HOME={home} streamctl sweep")  # fmt: skip
    assert cron.detail.startswith("your crontab runs streamctl, which is not there"), cron


def test_doctor_tells_root_where_an_old_config_went(tmp_path: Path) -> None:
    old = tmp_path / ".config/streamctl/streamctl.toml"
    old.parent.mkdir(parents=True)
    old.write_text("")
    (tmp_path / ".local/state/streamctl").mkdir(parents=True)
    paths = Paths.in_home(tmp_path / "sys")
    env = {"HOME": str(tmp_path)}
    [check] = check_old_config(paths, env=env, euid=0)
    assert not check.ok and not check.needed
    assert check.detail == (
        f"{old} is not read as root: the config is {paths.config_file}; move it: mkdir -p -m 700 "
        f"{tmp_path}/sys && mv {old} {paths.config_file} && mv {tmp_path}/.local/state/streamctl {paths.state_dir}"
    )
    assert check_old_config(paths, env=env, euid=1000) == []  # a user's config is where it was
    assert check_old_config(Paths.xdg(env), env=env, euid=0) == []  # STREAMCTL_HOME pointing at it


def test_nothing_refers_to_a_published_package() -> None:
    """There is no streamctl on any package index: installs are from the checkout or a wheel of it."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    bad = (
        "pip install streamctl",
        "pip install 'streamctl[",
        'pip install "streamctl[',
        "pypi.org/project/streamctl",
    )
    found = []
    for name in files:
        path = REPO / name
        if name == "tests/test_service.py" or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {b}" for b in bad if b in text]
    assert found == []


def test_install_runs_systemctl_only_where_systemd_runs(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamctl.commands import service
    from streamctl.store.fileio import HeldLock

    _config(home, tmp_path)
    paths = Paths.from_env()
    # this machine's /etc, /run/systemd and systemctl, moved into tmp_path
    monkeypatch.setattr(service, "SYSTEM_UNIT_DIR", tmp_path / "etc/systemd/system")
    monkeypatch.setattr(service, "CRON_FILE", tmp_path / "etc/cron.d/streamctl")
    monkeypatch.setattr(service, "SYSTEMD_RUNNING", tmp_path)
    monkeypatch.setattr(service.shutil, "which", lambda name: f"/usr/bin/{name}")
    ran: list[list[str]] = []

    def systemctl(argv: list[str]) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 3 if "is-active" in argv else 0, "", "")

    done = service.install(paths, "morning", euid=0, streamctl=EXE, run=systemctl)
    assert ran == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "streamctl@morning"]]
    assert done.written == [
        tmp_path / "etc/systemd/system/streamctl@.service",
        tmp_path / "etc/cron.d/streamctl",
    ]
    assert done.todo == []
    # started outside systemd (start --detach): enabled, not started (its start would exit 4 and fail)
    ran.clear()
    lock = HeldLock(paths.run_lock("morning"), "morning")
    try:
        done = service.install(paths, "morning", euid=0, streamctl=EXE, run=systemctl)
    finally:
        lock.release()
    assert ran[-1] == ["systemctl", "enable", "streamctl@morning"] and done.unchanged and not done.written
    assert done.todo == [
        "morning is running outside systemd; systemd takes over at the next boot, or now: "
        "streamctl stop morning && systemctl start streamctl@morning"
    ]
    # --no-enable: the files only, and the commands to run
    ran.clear()
    done = service.install(paths, "morning", euid=0, enable=False, streamctl=EXE, run=systemctl)
    assert ran == [] and done.todo == [
        "--no-enable: to start it under systemd: systemctl daemon-reload && systemctl enable --now streamctl@morning"
    ]
    # a failing systemctl is one clear error
    fail = lambda argv: subprocess.CompletedProcess(argv, 1, "", "Failed to connect to bus\n")  # noqa: E731
    with pytest.raises(
        service.EnvironmentProblem, match=r"^systemctl daemon-reload failed: Failed to connect"
    ):
        service.install(paths, "morning", euid=0, streamctl=EXE, run=fail)


def test_install_as_a_user_writes_a_user_unit_and_prints_the_crontab_line(tmp_path: Path) -> None:
    from streamctl.commands import service

    user = {"HOME": str(tmp_path / "ann")}
    paths = Paths.from_env(user, euid=1000)
    _config(paths.config_file.parent, tmp_path)  # the XDG config file of this user
    root = tmp_path / "root"
    done = service.install(paths, "morning", root=root, euid=1000, env=user, streamctl=EXE)
    unit = root / str(tmp_path / "ann/.config/systemd/user/streamctl@.service")[1:]
    assert done.written == [unit]
    text = unit.read_text()
    env = f"XDG_CONFIG_HOME={tmp_path}/ann/.config XDG_STATE_HOME={tmp_path}/ann/.local/state"
    assert f"Environment={env}\n" in text and "WantedBy=default.target" in text and "network" not in text
    assert (
        done.todo[0]
        == f"add the sweep to your crontab: (crontab -l 2>/dev/null; echo '* * * * * {env} {EXE} sweep') | crontab -"
    )
    cron, unit_check = check_safety_net(
        paths, root=root, env=user, euid=1000, crontab=f"* * * * * {env} {EXE} sweep"
    )
    assert not cron.ok and "runs " in cron.detail  # EXE is not under ROOT...
    (root / EXE[1:]).parent.mkdir(parents=True)
    shutil.copy(EXE, root / EXE[1:])
    cron, unit_check = check_safety_net(
        paths, root=root, env=user, euid=1000, crontab=f"* * * * * {env} {EXE} sweep"
    )
    assert cron.ok and unit_check.ok, (cron, unit_check)  # ...and once it is, both agree with PATHS

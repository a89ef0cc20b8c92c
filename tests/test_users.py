"""What a new user touches first: demo, doctor, ffmpeg discovery, detach, playlists, several
destinations, metrics, and the examples for systemd, cron and Kubernetes."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    Rtmp,
    cli,
    fake_ffmpeg,
    ffmpegs,
    lavfi_start,
    needs_media,
    read_state,
    run_cli,
    wait_for,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.e2e
@needs_media
def test_demo_shows_the_budget_held_and_leaves_nothing_running() -> None:
    r = cli("demo", "--seconds", "8", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "the budget held" in r.stdout and "1 restart(s), stop: duration_reached" in r.stdout
    recorded = float(r.stdout.split(" s by the receiver")[0].rsplit("= ", 1)[1])
    assert recorded == pytest.approx(8.0, abs=1.0)
    time.sleep(0.5)
    left = [p for p in psutil.process_iter(["cmdline"])
            if any("streamctl-demo-" in a or "demo-stream-streamkey" in a for a in p.info["cmdline"] or [])]  # fmt: skip
    assert left == []  # no ffmpeg or receiver of the demo's is left


def test_doctor_reports_and_fails_on_a_missing_ffmpeg(home: Path, tmp_path: Path) -> None:
    r = run_cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    assert {"ffmpeg", "rtmp output", "flv muxer", "config", "state folder", "cron sweep"} <= set(checks)
    assert r.returncode == (0 if checks["ffmpeg"]["ok"] else 7)
    r = run_cli("doctor", "--ffmpeg", str(tmp_path / "nope"))
    assert r.returncode == 7 and "FAIL  ffmpeg" in r.stdout


def test_ffmpeg_discovery_order_and_one_clear_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    fake = fake_ffmpeg(tmp_path, "myffmpeg", "exit 0\n")
    env = {**os.environ, "STREAMCTL_FFMPEG": str(fake)}
    r = run_cli("doctor", "--json", env=env)
    assert f"{fake} (from STREAMCTL_FFMPEG)" in json.loads(r.stdout)[0]["detail"]
    # none on PATH, no env, no config: the binary of the optional extra is next (a stand-in for it here)...
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "STREAMCTL_FFMPEG"} | {"PATH": str(bare)}
    bundled = types.ModuleType("imageio_ffmpeg")
    bundled.get_ffmpeg_exe = lambda: str(fake)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", bundled)
    r = run_cli("doctor", "--json", env=env)
    assert f"{fake} (from imageio-ffmpeg)" in json.loads(r.stdout)[0]["detail"]
    # ...and with none either (hidden, whether or not this machine has it): one error naming every way
    hidden = tmp_path / "hidden" / "imageio_ffmpeg"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    env["PYTHONPATH"] = os.pathsep.join([str(hidden.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    r = cli(*lavfi_start("s", "/tmp/x.flv", "5s", quiet=False), env=env)
    assert r.returncode == 7 and r.stderr.count("\n") == 1, r.stderr
    for where in (
        "--ffmpeg",
        "STREAMCTL_FFMPEG",
        "config",
        "apt-get install ffmpeg",
        "[ffmpeg]",  # the extra, installed from the checkout (tests/test_service.py: no package index)
    ):
        assert where in r.stderr


@pytest.mark.e2e
@needs_media
def test_detach_returns_at_once_and_streams_in_the_background(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    args = [
        "start",
        "bg",
        "--input",
        str(media),
        "--url",
        no_leftovers.url,
        "--key",
        "bg-streamkey",
        "--duration",
        "4s",
    ]
    t0 = time.monotonic()
    r = cli(*args, "--detach")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5
    pid = int(r.stdout.split("supervisor pid ")[1].split(";")[0])
    assert psutil.pid_exists(pid) and psutil.Process(pid).ppid() != os.getpid()
    again = cli(*args, "--detach")
    assert again.returncode == 4 and "already running" in again.stderr
    wait_for(lambda: read_state(home, "bg")["status"] == "offline", timeout=20)
    assert read_state(home, "bg")["stop_reason"] == "duration_reached"
    assert sum(no_leftovers.durations("bg-streamkey")) == pytest.approx(4.0, abs=0.4)


@pytest.mark.e2e
@needs_media
def test_playlist_folder_is_streamed_in_a_loop(home: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, freq in enumerate((440, 880)):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
                        "-i", f"sine=frequency={freq}", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100", str(clips / f"{i}.mp4")], check=True)  # fmt: skip
    out = tmp_path / "out.flv"
    r = cli("start", "pl", "-q", "--input", str(clips), "--url", str(out), "--duration", "5s")
    assert r.returncode == 0, r.stderr
    from streamctl.receiver import probe_duration

    # 2 s + 2 s + 1 s of the first clip again: looped, cut at the budget
    assert probe_duration(out) == pytest.approx(5.0, abs=0.3)


@pytest.mark.e2e
@needs_media
def test_several_destinations_one_failing(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    from streamctl.receiver import free_port

    dead = f"rtmp://127.0.0.1:{free_port()}/live/dead-streamkey"
    r = cli("start", "multi", "-q", "--input", str(media), "--url", no_leftovers.url, "--key", "one-streamkey",
            "--also", f"{no_leftovers.url}/two-streamkey", "--also", dead, "--duration", "4s")  # fmt: skip
    assert r.returncode == 0, r.stderr
    for key in ("one-streamkey", "two-streamkey"):
        assert sum(no_leftovers.durations(key)) == pytest.approx(4.0, abs=0.4)
    log = (home / "state" / "logs" / "multi.log").read_text()
    assert "two-streamkey" not in log and "dead-streamkey" not in log and "continuing with 2/3" in log
    assert read_state(home, "multi")["session_count"] == 1  # the dead one did not cause a restart
    assert not ffmpegs("one-streamkey")


@pytest.mark.e2e  # real ffmpeg makes the clip
def test_copy_mode_refuses_codecs_an_rtmp_ingest_will_not_take(home: Path, tmp_path: Path) -> None:
    if not shutil.which("ffprobe"):
        pytest.skip("needs ffprobe")
    old = tmp_path / "old.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
                    "-i", "sine", "-t", "1", "-c:v", "mpeg4", "-c:a", "mp2", str(old)], check=True)  # fmt: skip
    r = cli("start", "old", "--input", str(old), "--url", "rtmp://127.0.0.1:1/live", "--duration", "5s")
    assert r.returncode == 2 and "--mode encode" in r.stderr and r.stderr.count("\n") == 1
    assert not (home / "state" / "old.json").exists()


def test_prometheus_textfile_format(home: Path, input_file: Path) -> None:
    assert (
        run_cli(
            "add",
            "prom",
            "-i",
            str(input_file),
            "--url",
            "rtmp://h/live",
            "--key",
            "PROMETHEUSKEY",
            "--hours",
            "2",
        ).returncode
        == 0
    )
    r = run_cli("status", "--format", "prometheus")
    assert r.returncode == 0 and "PROMETHEUSKEY" not in r.stdout
    samples = {
        ln.split("{")[0]: ln.rsplit(" ", 1)[1] for ln in r.stdout.splitlines() if not ln.startswith("#")
    }
    assert samples["streamctl_budget_seconds"] == "7200" and samples["streamctl_up"] == "0"
    assert samples["streamctl_remaining_seconds"] == "7200"
    assert 'stream="prom",status="offline"' in r.stdout
    assert run_cli("status", "--format", "xml").returncode == 2


def test_key_env(home: Path) -> None:
    r = cli(
        *lavfi_start("k", "rtmp://127.0.0.1:1/live", "5s", "--key-env", "NO_SUCH_VARIABLE_HERE", quiet=False)
    )
    assert r.returncode == 2 and "NO_SUCH_VARIABLE_HERE is not set" in r.stderr


def test_systemd_unit_is_valid_and_resumes_after_failure() -> None:
    unit = EXAMPLES / "streamctl@.service"
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert "Unknown" not in r.stderr and "Invalid" not in r.stderr, r.stderr
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string(unit.read_text())
    service = parsed["Service"]
    assert "streamctl start %i" in service["ExecStart"]
    assert service["Restart"] == "on-failure" and service["KillMode"] == "mixed"
    assert set(service["RestartPreventExitStatus"].split()) == {
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
    }  # README exit codes
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    # the home `add` and `start` use as root (tests/test_service.py checks the rest against install-service)
    assert (
        service["Environment"] == "STREAMCTL_HOME=/var/lib/streamctl"
        and service["StateDirectory"] == "streamctl"
    )
    assert "Documentation" not in parsed["Unit"]  # it pointed at a package index streamctl is not on


def test_kubernetes_job_and_crontab_examples() -> None:
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load((EXAMPLES / "k8s-job.yaml").read_text())
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] > 5 * 3600  # an outer limit above the 5 h budget
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["STREAMCTL_HOME"]["value"] == mounts["state"]  # state survives pod restarts on the volume
    assert "secretKeyRef" in env["STREAMCTL_KEY"]["valueFrom"]
    assert container["command"] == ["streamctl"] and "--key-env STREAMCTL_KEY" in " ".join(container["args"])
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 10001  # writes /state
    # the image is built from the checkout (examples/Dockerfile), nothing installed from an index in the pod
    assert "pip" not in " ".join(container["args"]) and container["image"].endswith("/streamctl:0.1.0")
    dockerfile = (EXAMPLES / "Dockerfile").read_text()
    assert "COPY streamctl /src/streamctl" in dockerfile and "pip install --no-cache-dir /src" in dockerfile
    assert "USER 10001" in dockerfile and 'ENTRYPOINT ["streamctl"]' in dockerfile
    # every file the Dockerfile copies exists, from the top of the checkout (docker build -f ... .)
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            assert all((EXAMPLES.parent / src).exists() for src in line.split()[1:-1]), line
    cron = (EXAMPLES / "crontab").read_text()
    sweeps = [ln.split() for ln in cron.splitlines() if ln.startswith("* * * * * ")]
    assert [ln[5:9] for ln in sweeps] == [
        ["root", "STREAMCTL_HOME=/var/lib/streamctl", "/opt/streamctl/bin/streamctl", "sweep"]
    ]
    config = (EXAMPLES / "streamctl.toml").read_text()
    import tomllib

    parsed = tomllib.loads(config)
    assert {"morning", "twitch"} <= set(parsed["streams"])

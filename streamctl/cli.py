"""The command line. Commands parse and print; the library does the work and raises typed errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from streamctl import __version__, cli_read  # cli_read: the read commands, run by cli_fast too
from streamctl.cli_read import paths as _paths
from streamctl.cli_read import print_json as _print_json
from streamctl.cli_read import warn as _warn
from streamctl.cli_read import write_flushed as _write_flushed
from streamctl.errors import EXIT_USAGE, StreamctlError, UsageError, error_line, exit_with, reported

app = typer.Typer(
    name="streamctl",
    help="Run a timed live stream with FFmpeg: the budget survives crashes and restarts.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

Name = Annotated[str, typer.Argument(help="Stream name (letters, digits, '.', '_', '-').")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

# The stream options of `add` and `start`, declared once: the same help in both (for `start` they
# override the config, as its help says). Defaults stay with each command: `add` writes copy mode and
# looping, `start` keeps what the config says (None).
Input = Annotated[str | None, typer.Option("--input", "-i", help="File, URL or lavfi source to stream.")]
Url = Annotated[str | None, typer.Option(help="Ingest URL, e.g. rtmp://a.rtmp.youtube.com/live2.")]
Key = Annotated[str | None, typer.Option(help="Stream key (secret), appended to the URL.")]
KeyEnv = Annotated[
    str | None, typer.Option(help="Read the stream key from this environment variable at start (not in ps).")
]
Hours = Annotated[float | None, typer.Option(help="Budget in hours (total streamed time), e.g. 5 or 1.5.")]
Duration = Annotated[str | None, typer.Option(help="Budget as a duration: 90s, 45m, 5h, 1h30m.")]
Until = Annotated[str | None, typer.Option(help="Wall-clock deadline, e.g. 2026-12-01T22:00 (local time).")]
Mode = Annotated[str | None, typer.Option(help="copy (no re-encode) or encode (libx264 + AAC).")]
InputFormat = Annotated[str | None, typer.Option(help="Input format, e.g. lavfi.")]
Loop = Annotated[bool | None, typer.Option("--loop/--no-loop", help="Loop a file input.")]
Grace = Annotated[float | None, typer.Option(help="Seconds between SIGTERM and SIGKILL (default 5).")]
DETACHED_ENV = "_STREAMCTL_DETACHED"  # run/detach.DETACHED, without importing it for every command


def _exit(code: int) -> None:
    """A read command's exit code, as Typer is told it."""
    if code:
        raise typer.Exit(code)


def _warn_running(name: str, what: str) -> None:
    from streamctl.commands.streams import running_supervisor

    pid = running_supervisor(_paths(), name)
    if pid is not None:
        shown = f" (supervisor pid {pid})" if pid else ""
        _warn(f"stream {name!r} is running{shown}: {what}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamctl {__version__}")
        raise typer.Exit()


# cli_fast runs the read commands without this callback: it must do nothing but its eager options.
@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


@app.command()
def add(
    name: Name,
    input: Input,
    url: Url,
    key: Key = None,
    key_file: Annotated[str | None, typer.Option(help="Read the stream key from this file.")] = None,
    key_env: KeyEnv = None,
    hours: Hours = None,
    duration: Duration = None,
    until: Until = None,
    mode: Mode = "copy",
    bitrate: Annotated[str | None, typer.Option(help="Video bitrate in encode mode, e.g. 4500k.")] = None,
    resolution: Annotated[str | None, typer.Option(help="Encode mode: WIDTHxHEIGHT.")] = None,
    fps: Annotated[int | None, typer.Option(help="Encode mode: frames per second.")] = None,
    loop: Loop = True,
    input_format: InputFormat = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Shows on a schedule: 'mon-fri 20:00', a cron line, or a date-time; budget per show."
        ),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="The schedule's time zone, e.g. Europe/Berlin (default: the host's).")
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="A show ends this long after its start at the latest, e.g. 2h.")
    ] = None,
    catch_up: Annotated[
        str | None,
        typer.Option(help="How late the cron tick may still start a show (default 15m, or the window)."),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing entry.")] = False,
) -> None:
    """Add a stream to the config, checked as `start` would run it (nothing is written if it is wrong).

    Example: streamctl add morning -i show.mp4 --url rtmp://host/live --key-file ~/.yt-key --hours 5
    """
    from streamctl.store.config import add_stream, load_config
    from streamctl.store.options import StreamOptions

    options = StreamOptions(
        input=input,
        url=url,
        key=key,
        key_file=key_file,
        key_env=key_env,
        hours=hours,
        duration=duration,
        until=until,
        mode=mode,
        input_format=input_format,
        loop=loop,
        bitrate=bitrate,
        resolution=resolution,
        fps=fps,
        schedule=schedule,
        timezone=timezone,
        window=window,
        catch_up=catch_up,
    )
    table = options.table(name)
    paths = _paths()
    existed = name in load_config(paths).streams
    add_stream(paths, name, table, replace_existing=replace)
    typer.echo(f"{'replaced' if existed else 'added'} {name} in {paths.config_file}")
    if existed:
        _warn_running(name, f"it keeps its old settings until restarted (streamctl stop {name}, then start)")


@app.command("list")
def list_(as_json: Json = False) -> None:
    """List configured streams (keys are never shown).  Example: streamctl list --json"""
    _exit(cli_read.list_(as_json=as_json))


@app.command()
def remove(name: Name) -> None:
    """Remove a stream from the config (its state and logs stay).  Example: streamctl remove morning"""
    from streamctl.store.config import remove_stream

    remove_stream(_paths(), name)
    typer.echo(f"removed {name}")
    _warn_running(name, f"it streams on until its budget ends or `streamctl stop {name}`")


@app.command()
def check(
    names: Annotated[list[str] | None, typer.Argument(help="Streams to check (default: all).")] = None,
    as_json: Json = False,
    ffmpeg: Annotated[str | None, typer.Option(help="ffmpeg to check the inputs with.")] = None,
) -> None:
    """Check configured streams as `start` would run them: config, key, input (ffprobe), ingest reachable.

    Exits 2 for a problem in the config or an input, 1 if only an ingest did not answer, 7 without
    ffmpeg; nothing is written. Example: streamctl check morning
    """
    from streamctl.commands.check import check as run_check
    from streamctl.errors import EXIT_ENVIRONMENT, EXIT_FAILED

    paths = _paths()
    findings = run_check(paths, names or None, ffmpeg)
    if as_json:
        _print_json([f.as_dict() for f in findings])
    else:
        if not findings:
            typer.echo(f"no streams configured in {paths.config_file}")
        for f in findings:
            if f.ok:  # "skip": it could not be checked here (no ffprobe); not a failure
                typer.echo(f"{'ok' if f.checked else 'skip':<6}{f.name:<16} {f.what:<7} {f.detail}")
            else:
                prefix = f"{f.name}: " if f.name and not f.detail.startswith("config ") else ""
                sys.stderr.write(error_line(prefix + f.detail))
    bad = {f.what for f in findings if not f.ok}
    if bad & {"config", "input"}:
        raise typer.Exit(EXIT_USAGE)
    if "ffmpeg" in bad:
        raise typer.Exit(EXIT_ENVIRONMENT)
    if bad:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def start(
    name: Name,
    hours: Hours = None,
    duration: Duration = None,
    input: Input = None,
    url: Url = None,
    key: Key = None,
    key_env: KeyEnv = None,
    also: Annotated[
        list[str] | None, typer.Option(help="Another destination URL, key included (repeatable).")
    ] = None,
    mode: Mode = None,
    input_format: InputFormat = None,
    loop: Loop = None,
    retries: Annotated[int | None, typer.Option(help="Restarts allowed in a row (default 3).")] = None,
    restart_delay: Annotated[float | None, typer.Option(help="Seconds before a restart (default 3).")] = None,
    grace: Grace = None,
    stall_timeout: Annotated[
        float | None, typer.Option(help="Seconds without media progress before ffmpeg counts as hung (15).")
    ] = None,
    until: Until = None,
    ffmpeg: Annotated[str | None, typer.Option(help="ffmpeg binary to run.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log to the file only.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; print the pid and return.")
    ] = False,
) -> None:
    """Run the stream in the foreground until its budget is streamed (exit 0), or it gives up (exit 1).

    The options given override the stream's config; a stream not in the config needs --input and --url.

    Examples: streamctl start morning --hours 5 ; streamctl start morning --detach
    """
    from streamctl.store.options import StreamOptions

    options = StreamOptions(
        input=input,
        url=url,
        key=key,
        key_env=key_env,
        hours=hours,
        duration=duration,
        until=until,
        mode=mode,
        input_format=input_format,
        loop=loop,
        also=tuple(also) if also else None,
        retries=retries,
        restart_delay=restart_delay,
        grace=grace,
        stall_timeout=stall_timeout,
    )
    import time

    from streamctl.commands.streams import prepare_start

    paths = _paths()
    spec, which = prepare_start(paths, name, options.overrides(), time.time())
    if which and not os.environ.get(DETACHED_ENV):
        typer.echo(which)
    from streamctl.run.detach import DETACHED

    if detach and not os.environ.get(DETACHED):
        from streamctl.run.detach import start_detached

        pid, first_error = start_detached(paths, spec, ffmpeg, sys.argv[1:])
        typer.echo(f"{name}: started in the background, supervisor pid {pid}; log: {paths.log_file(name)}")
        if first_error:
            _warn(
                f"{name}: the first attempt failed: {first_error}; it retries in the background "
                f"(streamctl status {name})"
            )
        return
    from streamctl.run.entry import exec_supervisor

    exec_supervisor(paths, spec, quiet, ffmpeg)  # the supervisor runs on in this pid, without Typer


@app.command()
def stop(
    name: Annotated[str | None, typer.Argument(help="Stream to stop.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every running stream.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it to be down.")] = 30.0,
) -> None:
    """Stop a running stream gracefully and wait until it is down (recorded as `stopped`).

    Examples: streamctl stop morning ; streamctl stop --all
    """
    from streamctl.commands import streams as control

    paths = _paths()
    if all_ == (name is not None):
        raise UsageError("give a stream NAME or --all")
    from streamctl.durations import check_seconds

    check_seconds(timeout, "--timeout")
    every = [] if name else control.views(paths, warn=_warn)
    names = [name] if name else [v.name for v in every if v.running or v.state.session]
    for n in names:
        typer.echo(f"{n}: {control.stop(paths, n, timeout)}")


@app.command()
def status(
    names: Annotated[list[str] | None, typer.Argument(help="Streams (default: all).")] = None,
    as_json: Json = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Live dashboard, refreshed every second.")
    ] = False,
    format: Annotated[
        str, typer.Option("--format", help="table, json, or prometheus (node_exporter textfile collector).")
    ] = "table",
) -> None:
    """Show every stream: status, pids, runtime, remaining, expected end, restarts, last stop reason.

    Examples: streamctl status --watch ; streamctl status --format prometheus > streamctl.prom
    """
    _exit(cli_read.status(names=names, as_json=as_json, watch=watch, format=format))


@app.command()
def logs(
    name: Name,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last lines to print.")] = 50,
) -> None:
    """Print (or follow) a stream's log.  Example: streamctl logs morning -f"""
    from streamctl.commands.watch import follow as follow_log
    from streamctl.commands.watch import tail
    from streamctl.errors import NotFound, did_you_mean

    path = _paths().log_file(name)
    if not path.exists():
        # the streams that have a log: no config is read, so a broken one does not get in the way
        have = sorted(p.stem for p in path.parent.glob("*.log")) if path.parent.is_dir() else []
        raise NotFound(f"no log for stream {name!r} at {path}{did_you_mean(name, have)}")
    with path.open("r", encoding="utf-8", errors="replace") as f:
        _write_flushed("".join(tail(f, lines)))
        if follow:
            follow_log(f, _write_flushed, path=path)


@app.command()
def sweep(
    as_json: Json = False,
    grace: Grace = None,
) -> None:
    """Stop whatever overran its time, even with its supervisor dead.

    Example, from cron every minute: * * * * * streamctl sweep
    """
    _exit(cli_read.sweep(as_json=as_json, grace=grace))


@app.command()
def runtime(name: Name, as_json: Json = False) -> None:
    """Total streamed time, the current session's, what remains and the expected end.

    Example: streamctl runtime morning --json
    """
    _exit(cli_read.runtime(name=name, as_json=as_json))


@app.command("reset-runtime")
def reset_runtime(name: Name) -> None:
    """Set a stopped stream's cumulative runtime to zero, so it can stream its whole budget again.

    Example: streamctl reset-runtime morning
    """
    from streamctl.commands import streams as control
    from streamctl.durations import format_duration

    old = control.reset_runtime(_paths(), name)
    typer.echo(f"{name}: runtime reset (was {format_duration(old)})")


@app.command()
def events(
    name: Name,
    as_json: Json = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last events to print.")] = 20,
) -> None:
    """A stream's event journal: went live, restarted (and why), recovered, gave up, ending soon, ended,
    supervisor lost, swept, shows started or missed. JSON: one object a line.

    Example: streamctl events morning -f
    """
    from streamctl.commands.watch import follow_events
    from streamctl.output.alerts import format_event
    from streamctl.store.events import read

    def show(rec: dict[str, object]) -> None:
        _write_flushed((json.dumps(rec, sort_keys=True) if as_json else format_event(rec)) + "\n")

    paths = _paths()
    got = read(paths, name, lines)
    if not got and not follow:
        from streamctl.commands.streams import views

        views(paths, [name])  # an unknown stream is exit 3 with a "did you mean"
    for rec in got:
        show(rec)
    if follow:
        follow_events(paths, name, len(got), show)


notify_app = typer.Typer(help="Notifications of a stream's events (apprise URLs, an on_event command).")
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(name: Name) -> None:
    """Send a test message to every target of a stream (notify URLs and its on_event command), and say
    which got it. Exits 1 if one did not.

    Example: streamctl notify test morning
    """
    import time

    from streamctl.errors import EXIT_FAILED
    from streamctl.output.alerts import record
    from streamctl.output.deliver import send
    from streamctl.store.config import load_config

    paths = _paths()
    spec = load_config(paths).spec(name, need_env=False)
    s = spec.settings
    if not s.notify and not s.on_event:
        raise UsageError(f'stream {name!r} has no targets: add notify = ["json://host/path"] or on_event')
    rec = record(name, "test", time.time(), detail="a test message from streamctl")
    got = send(rec, tuple(s.notify), tuple(s.on_event), spec.secrets(), str(paths.log_file(name)), wait=True)
    results = got or {}
    for target, result in results.items():
        typer.echo(f"{target}: {result}")
    if any(r != "ok" for r in results.values()) or not results:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def shows(name: Name, as_json: Json = False) -> None:
    """A scheduled stream's past shows, the current one and the next ones.

    Example: streamctl shows evening --json
    """
    from streamctl.commands.shows import shows as list_shows
    from streamctl.durations import format_duration

    d = list_shows(_paths(), name)
    if as_json:
        _print_json(d)
        return
    paused = " (paused: streamctl resume " + name + ")" if d["paused"] else ""
    budget = format_duration(d["budget_seconds"]) if d["budget_seconds"] else "its window"
    typer.echo(f"{name}: {d['schedule']!r} in {d['timezone']}, {budget} a show{paused}")
    for r in [*d["past"], *([d["current"]] if d["current"] else [])]:
        ran = format_duration(r["streamed"])
        typer.echo(f"  {r['show_local']:<28} {r['end']:<17} streamed {ran:<9} restarts {r['restarts']}")
    for r in d["next"]:
        mark = "skip" if r["skip"] else "next"
        typer.echo(f"  {r['show_local']:<28} {mark:<17} in {format_duration(r['in_seconds'])}")


@app.command()
def skip(name: Name) -> None:
    """Skip a scheduled stream's next show (a running one goes on: stop it).  Example: streamctl skip eve"""
    from streamctl.commands.shows import skip as skip_show

    typer.echo(f"{name}: the show of {skip_show(_paths(), name)} will be skipped")


@app.command()
def pause(name: Name) -> None:
    """Pause a stream's schedule: no show starts until `streamctl resume NAME` (a running one goes on).

    Example: streamctl pause evening
    """
    from streamctl.commands.shows import pause as pause_shows

    pause_shows(_paths(), name, True)
    typer.echo(f"{name}: schedule paused")


@app.command()
def resume(name: Name) -> None:
    """Resume a paused schedule: the next show starts on time.  Example: streamctl resume evening"""
    from streamctl.commands.shows import pause as pause_shows

    pause_shows(_paths(), name, False)
    typer.echo(f"{name}: schedule resumed")


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="The demo stream's budget.")] = 30.0,
) -> None:
    """Stream a test pattern to a local receiver for 30 s with one real crash, and show the budget held.

    Needs only ffmpeg; nothing is configured, nothing is left running. Example: streamctl demo
    """
    from streamctl.commands.demo import run_demo
    from streamctl.durations import check_seconds

    if check_seconds(seconds, "--seconds") < 6:
        raise UsageError("--seconds must be at least 6: the demo crashes ffmpeg a third of the way in")
    result = run_demo(seconds, log=lambda m: typer.secho(m, fg="cyan", err=True))
    parts = " + ".join(f"{d:.2f}" for d in result.recorded)
    typer.echo(f"budget:    {result.budget:.2f} s")
    typer.echo(f"recorded:  {parts} = {sum(result.recorded):.2f} s by the receiver ({result.receiver})")
    typer.echo(
        f"counted:   {result.counted:.2f} s by streamctl, {result.restarts} restart(s), stop: {result.reason}"
    )
    typer.echo(
        f"{'the budget held' if result.held else 'the budget did NOT hold'}: {result.error:+.2f} s against it"
    )
    if not result.held:
        raise typer.Exit(1)


@app.command()
def doctor(
    as_json: Json = False,
    ffmpeg: Annotated[str | None, typer.Option(help="Check this ffmpeg instead.")] = None,
) -> None:
    """Check ffmpeg and where it comes from, rtmp/flv/libx264 support, permissions, cron and systemd.

    Exits 7 when something needed is missing. Example: streamctl doctor
    """
    from streamctl.commands import doctor as doc
    from streamctl.store.config import load_config

    paths = _paths()
    try:
        configured = load_config(paths).settings().ffmpeg
    except StreamctlError:
        configured = None  # the config check below reports it
    checks = doc.run(paths, ffmpeg, configured)
    if as_json:
        _print_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.needed else "warn")
            typer.echo(f"{mark}  {c.name:<14} {c.detail}")
    failed = [c for c in checks if c.needed and not c.ok]
    if failed:
        raise typer.Exit(failed[0].exit_code)


@app.command("install-service")
def install_service(
    name: Name,
    root: Annotated[
        str,
        typer.Option(help="Write the files under this folder instead of / (an image, a test); no systemctl."),
    ] = "/",
    enable: Annotated[
        bool,
        typer.Option(
            "--enable/--no-enable", help="systemctl daemon-reload and enable --now (if systemd runs)."
        ),
    ] = True,
) -> None:
    """Install the systemd unit streamctl@.service and the cron sweep for a configured stream, both with
    this streamctl's path and this config's home, then enable and start streamctl@NAME.

    As root: /etc/systemd/system and /etc/cron.d/streamctl; otherwise a user unit, and the crontab line
    is printed. Re-running changes nothing; a unit of another home or streamctl is refused (exit 4).

    Example: streamctl install-service morning
    """
    from pathlib import Path

    from streamctl.commands.service import install

    done = install(_paths(), name, root=Path(root).absolute(), enable=enable)
    for path in done.written:
        typer.echo(f"wrote {path}")
    for path in done.unchanged:
        typer.echo(f"unchanged {path}")
    for command in done.ran:
        typer.echo(f"ran {command}")
    for line in done.todo:
        typer.echo(line)


@app.command()
def serve(
    bind: Annotated[
        str, typer.Option(help="HOST:PORT to listen on; off loopback it needs TLS or --insecure-http.")
    ] = "127.0.0.1:8080",
    tls_cert: Annotated[str | None, typer.Option(help="TLS certificate (PEM): serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="The certificate's private key (PEM).")] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Allow plain HTTP off loopback (a TLS proxy in front).")
    ] = False,
) -> None:
    """Serve the JSON API and the live monitor page, in the foreground, until Ctrl-C or SIGTERM.

    Every request needs the token: $STREAMCTL_TOKEN, or the one made on the first serve (streamctl token).
    API: /api/streams, /api/streams/NAME/runtime, ... (GET /api/openapi.json lists them); /healthz; /metrics.

    Example: streamctl serve ; then open http://127.0.0.1:8080/ and paste the token
    """
    from pathlib import Path

    from streamctl.serve.auth import TOKEN_ENV, load_token, token_file
    from streamctl.serve.server import check_exposure, check_tls, listen, parse_bind
    from streamctl.serve.server import serve as run_server

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    tls = (Path(tls_cert).absolute(), Path(tls_key).absolute()) if tls_cert and tls_key else None
    host, port = parse_bind(bind)
    check_exposure(host, tls, insecure_http, _warn)
    check_tls(tls)
    paths = _paths()
    sock = listen(host, port)  # before the token is made: a refused start leaves nothing on disk
    from_env = bool(os.environ.get(TOKEN_ENV))
    token, made = load_token(paths, create=True)
    # read once: nothing this server starts (a stream's supervisor, its ffmpeg, its on_event hook) gets it
    os.environ.pop(TOKEN_ENV, None)
    if made:
        typer.echo(f"made this server's token (shown once here; `streamctl token` shows it again): {token}")
    watch = None if from_env else token_file(paths)  # the file's token is read again when it changes
    run_server(paths, token, watch, sock, tls, lambda line: typer.echo(line, err=True))


@app.command()
def token(
    new: Annotated[
        bool, typer.Option("--new", help="Make a new token: the old one and its page sessions stop working.")
    ] = False,
) -> None:
    """Print the token `streamctl serve` asks for (made by the first serve, or by --new: a running
    serve takes the new one at once, and the page's sessions of the old one end).

    Example: curl -H "Authorization: Bearer $(streamctl token)" http://127.0.0.1:8080/api/streams
    """
    from streamctl.serve.auth import TOKEN_ENV, load_token, new_token

    if os.environ.get(TOKEN_ENV):
        raise UsageError(f"the token is ${TOKEN_ENV}'s value here; change it where it is set")
    if new:
        typer.echo(new_token(_paths()))
        return
    typer.echo(load_token(_paths())[0])


def main() -> None:
    """The console script of an install made before cli_fast: the fast read commands all the same."""
    from streamctl.cli_fast import main as fast_main

    fast_main()


def typer_main() -> None:
    """Every command through the Typer app (cli_fast.main comes here for all it does not parse itself)."""
    with reported():
        try:
            rv = app(standalone_mode=False)
        except typer.TyperException as e:  # typer's usage errors: unknown option, bad value, missing argument
            exit_with(e.format_message(), getattr(e, "exit_code", EXIT_USAGE))
        except typer.Abort:
            exit_with("interrupted", 130)
    sys.exit(rv if isinstance(rv, int) else 0)

"""What the read commands print: `status`, `runtime`, `list` and `sweep`, after their options are parsed.

Typer-free, so that both ways into a command run this same code: the Typer app (cli.py, where every
command and option is declared) and the fast dispatcher (cli_fast.py), which parses these commands by
a spec generated from that declaration. Each function takes the parsed options by the names cli.py
gives them and returns the exit code; the library's typed errors go up to `errors.reported()`. The
helpers at the top are shared with every command of cli.py.
"""

from __future__ import annotations

import sys
from typing import Any

from streamctl.errors import EXIT_FILES, EXIT_USAGE, FileError, StreamctlError, error_line

# store.config.Settings().grace, which `sweep` defaults to, without importing the config module for it
# (a test holds the two equal).
DEFAULT_GRACE = 5.0
YELLOW = "\x1b[33m"  # what typer.secho(fg="yellow") wrote
RESET = "\x1b[0m"


def paths() -> Any:
    from streamctl.store.paths import Paths

    return Paths.from_env()


def echo(text: str) -> None:
    """TEXT and a newline on stdout, flushed (as typer.echo did): stdout and stderr keep their order."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(dumps(data) + "\n")


_SCALARS = {str, int, float, bool, type(None)}


def _flat(data: Any) -> bool:
    return (
        type(data) is dict
        and all(type(k) is str for k in data)
        and all(type(v) in _SCALARS for v in data.values())
    )


def dumps(data: Any) -> str:
    """json.dumps(DATA, indent=2), the same text: with an indent json encodes in Python, ten times
    slower, so a dict of plain values, or a list of them (a row per stream), is encoded by the C encoder
    with the indent as its item separator. JSON strings never hold a raw newline, so it can only fall
    between items."""
    import json

    if type(data) is list and data and all(_flat(r) for r in data):
        encode = json.JSONEncoder(separators=(",\n    ", ": ")).encode
        return (
            "[\n  " + ",\n  ".join("{\n    " + encode(r)[1:-1] + "\n  }" if r else "{}" for r in data) + "\n]"
        )
    if _flat(data) and data:
        return "{\n  " + json.JSONEncoder(separators=(",\n  ", ": ")).encode(data)[1:-1] + "\n}"
    return json.dumps(data, indent=2)


def write_flushed(text: str) -> None:
    """TEXT on stdout at once: a dashboard frame, a followed log line."""
    sys.stdout.write(text)
    sys.stdout.flush()


def warn(message: str) -> None:
    """One warning line on stderr: the command goes on."""
    sys.stderr.write("streamctl: warning: " + " ".join(message.split()) + "\n")


def list_(as_json: bool) -> int:
    from streamctl.durations import format_duration
    from streamctl.masking import mask_url
    from streamctl.store.config import load_config

    config = load_config(paths())
    rows: list[dict[str, Any]] = []
    broken = []
    for name in config.streams:
        try:
            spec = config.spec(name)
        except StreamctlError as e:
            broken.append(str(e))  # the others are still listed
            continue
        rows.append(
            {
                "name": name,
                "input": spec.input,
                "url": mask_url(spec.output_url, spec.secrets()),
                "mode": spec.mode,
                "budget_seconds": spec.budget_seconds,
                "schedule": spec.schedule,
                "timezone": spec.timezone,
            }
        )
    if as_json:
        print_json(rows)
        return 0
    if not rows and not broken:
        from streamctl.store.config import old_config_hint

        echo(f"no streams configured in {config.path}{old_config_hint(paths())}")
    for r in rows:
        shows = f"\tshows {r['schedule']!r} ({r['timezone'] or 'host time'})" if r["schedule"] else ""
        line = f"{r['name']}\t{format_duration(r['budget_seconds'])}\t{r['mode']}\t{r['input']} -> {r['url']}"
        echo(line + shows)
    for message in broken:
        sys.stderr.write(error_line(message))
    return EXIT_USAGE if broken else 0


def status(names: list[str] | None, as_json: bool, watch: bool, format: str) -> int:
    from streamctl.commands import streams as control
    from streamctl.errors import UsageError

    if format not in ("table", "json", "prometheus"):
        raise UsageError(f"--format must be table, json or prometheus, got {format!r}")
    where = paths()
    rows = [v.as_dict() for v in control.views(where, names or None, warn=warn)]
    broken = [r["broken"] for r in rows if r["broken"]]
    for message in broken:
        warn(message)  # its row says "broken"; every other stream is shown as usual
    if as_json or format == "json":
        print_json(rows)
    elif format == "prometheus":
        from streamctl.output.metrics import prometheus

        sys.stdout.write(prometheus(rows))
    elif watch:
        from streamctl.commands.watch import watch_status

        watch_status(
            rows,
            lambda warn: [v.as_dict() for v in control.views(where, names or None, warn=warn)],
            write_flushed,
        )
    elif not rows:
        echo("no streams")
    else:
        from streamctl.output.table import render_status, terminal_width, use_colour

        sys.stdout.write(render_status(rows, use_colour(), terminal_width()))
    # a stream asked for by name that cannot be read is an error (as for runtime); in the list, a row
    return EXIT_FILES if names and broken else 0


def sweep(as_json: bool, grace: float | None) -> int:
    from streamctl.commands.sweep import sweep as do_sweep

    actions = do_sweep(paths(), grace=DEFAULT_GRACE if grace is None else grace)
    if as_json:
        print_json([a.as_dict() for a in actions])
        return 0
    for a in actions:
        echo(f"{a.name}: {a.action}: {a.detail}")
    return 0


RUNTIME_KEYS = (
    "name",
    "status",
    "runtime_seconds",
    "session_runtime_seconds",
    "budget_seconds",
    "remaining_seconds",
    "expected_end",
    "warning",
)


def runtime(name: str, as_json: bool) -> int:
    from streamctl.commands import streams as control
    from streamctl.durations import format_duration

    d = control.views(paths(), [name], warn=warn)[0].as_dict()
    if d["broken"]:
        raise FileError(d["broken"])
    if as_json:
        print_json({k: d[k] for k in RUNTIME_KEYS})
        return 0
    echo(f"{name}: {d['status']}")
    echo(f"  total runtime:   {format_duration(d['runtime_seconds'])}")
    echo(f"  current session: {format_duration(d['session_runtime_seconds'])}")
    echo(f"  budget:          {format_duration(d['budget_seconds'])}")
    echo(f"  remaining:       {format_duration(d['remaining_seconds'])}")
    echo(f"  expected end:    {d['expected_end'] or '-'}")
    if d["warning"]:
        line = "  warning: under 5 minutes remain"
        echo(f"{YELLOW}{line}{RESET}" if sys.stdout.isatty() else line)  # typer.secho's colour rule
    return 0

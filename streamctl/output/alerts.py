"""The events worth telling people about, as one record each in the stream's event journal
(store/events.py), from whichever process saw them: the supervisor's run (AlertListener), `sweep` and the
cron tick (record_action).

| event | when | figures |
|---|---|---|
| live | the stream went live (first time in a run) | |
| recovered | live again after failures | restarts |
| restarted | a session failed and another follows | why, attempt, retries, delay, remaining |
| gave_up | retries exhausted | failures, last |
| ending_soon | under 5 minutes left, once a run | remaining |
| ended | the run ended | reason, status, streamed, budget, sessions, restarts |
| supervisor_lost | a supervisor was found gone (by `sweep`, or the next `start`) | detail / streamed |
| swept | `sweep` stopped an ffmpeg past its time | detail |
| show_started, show_resumed, show_missed, show_skipped, show_paused | the schedule (shows.py) | detail |

One record per change, never repeated for the same state. The figures are masked by the writer.
"""

from __future__ import annotations

import contextlib
from typing import Any

from streamctl.errors import StreamctlError
from streamctl.masking import mask_text
from streamctl.run.events import Event, Kind
from streamctl.store.paths import Paths
from streamctl.store.state import iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from streamctl.commands.sweep import Action
    from streamctl.store.config import Config, Settings

_FIGURES = {
    Kind.RESTARTING: ("why", "attempt", "retries", "delay", "remaining"),
    Kind.GAVE_UP: ("failures", "last"),
    Kind.ENDING_SOON: ("remaining",),
    Kind.RUN_ENDED: ("status", "streamed", "budget", "sessions", "restarts"),
    Kind.RECOVERED: ("streamed",),
}
_NAMES = {
    Kind.RESTARTING: "restarted",
    Kind.GAVE_UP: "gave_up",
    Kind.ENDING_SOON: "ending_soon",
    Kind.RUN_ENDED: "ended",
    Kind.RECOVERED: "supervisor_lost",  # the next `start` found the last one's supervisor gone
}


def format_event(rec: dict[str, Any]) -> str:
    """One journal record as a line: its local time, the event, then its figures."""
    import time

    from streamctl.durations import format_duration

    t = rec.get("t")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, int | float) else "?"
    parts = []
    for k, v in rec.items():
        if k in ("t", "time", "stream", "event") or v is None:
            continue
        if k in ("streamed", "budget", "remaining", "delay") and isinstance(v, int | float):
            v = format_duration(v)
        parts.append(f"{k}={v}")
    return f"{when}  {rec.get('stream', '?')}  {rec.get('event', '?'):<16} {' '.join(parts)}".rstrip()


def record(stream: str, event: str, at: float, reason: str | None = None, **figures: Any) -> dict[str, Any]:
    """One journal record: the same shape from every writer."""
    return {"time": iso(at), "t": round(at, 3), "stream": stream, "event": event, "reason": reason, **figures}


class AlertListener:
    """Turns a supervisor's run events into journal records (and, later, messages)."""

    def __init__(self, paths: Paths, name: str, secrets: list[str], settings: Settings | None = None) -> None:
        self.paths, self.name, self.secrets = paths, name, [s for s in secrets if s]
        self.settings = settings
        self._failed = False  # a session failed since the stream was last live

    def __call__(self, event: Event) -> None:
        if event.kind == Kind.LIVE:
            name = "recovered" if self._failed else "live"
            self._failed = False
            self._write(record(self.name, name, event.time))
            return
        if event.kind == Kind.RESTARTING:
            self._failed = True
        public = _NAMES.get(event.kind)
        if public is None:
            return
        figures = {k: event.figures.get(k) for k in _FIGURES[event.kind]}
        self._write(record(self.name, public, event.time, event.reason, **figures))

    def _write(self, rec: dict[str, Any]) -> None:
        from streamctl.store.events import append

        rec = _masked(rec, self.secrets)
        # neither a journal that cannot be written (a full disk, a lock held too long) nor a helper that
        # cannot be forked may touch the run: the event is then not recorded, or not told, and that is all
        with contextlib.suppress(OSError, StreamctlError):
            append(self.paths, self.name, rec)
        if self.settings is not None:
            with contextlib.suppress(OSError, StreamctlError):
                tell(self.paths, rec, self.settings, self.secrets)


def tell(paths: Paths, rec: dict[str, Any], settings: Settings, secrets: list[str]) -> None:
    """REC to the targets SETTINGS name for its event, from a helper process (output/deliver.py)."""
    from streamctl.output.deliver import wanted

    event = rec["event"]
    notify = settings.notify if wanted(event, settings.notify_events) else ()
    hook = settings.on_event if wanted(event, settings.on_event_events) else ()
    if notify or hook:
        from streamctl.output.deliver import send

        size = (int(settings.log_max_mb * 1024 * 1024), settings.log_keep)
        send(rec, tuple(notify), tuple(hook), secrets, str(paths.log_file(rec["stream"])), log_size=size)


def _masked(rec: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    return {k: mask_text(v, secrets) if isinstance(v, str) else v for k, v in rec.items()}


# sweep's and the tick's actions, as events
_ACTIONS = {
    "marked_lost": "supervisor_lost",
    "adopted_orphan": "supervisor_lost",
    "stopped_orphan": "swept",
    "stopped_overrun": "swept",
}


def record_action(paths: Paths, action: Action, at: float, config: Config | None) -> None:
    """A `sweep` or tick ACTION in its stream's journal, and to the targets CONFIG gives it (errors are not
    events: they are sweep's output)."""
    from streamctl.store.events import append

    name = action.name
    event = _ACTIONS.get(action.action, action.action if action.action.startswith("show_") else None)
    if event is None or not name:
        return
    rec = record(name, event, at, detail=action.detail)
    append(paths, name, rec)
    if config is None or name not in config.streams:
        return  # not configured, or a broken config (`sweep` and `check` name the mistake)
    try:
        spec = config.spec(name, need_env=False, read_key=False)
    except StreamctlError:
        return
    tell(paths, rec, spec.settings, spec.secrets())

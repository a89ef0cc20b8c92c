"""The stream's life as an explicit state machine: statuses, stop reasons, and the legal moves."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    STARTING = "starting"  # ffmpeg launched, no media out yet
    LIVE = "live"  # ffmpeg reports media going out
    BACKOFF = "backoff"  # ffmpeg failed; waiting before the next try
    STOPPING = "stopping"  # we asked ffmpeg to end
    OFFLINE = "offline"  # ended on purpose (budget streamed, stopped) or never started
    FAILED = "failed"  # gave up
    # never in a state file: what the views show for a stream whose state file is not streamctl's
    # (corrupt, too big, a link), so that the other streams are still shown (state.BrokenState)
    BROKEN = "broken"

    @property
    def running(self) -> bool:
        return self in _RUNNING


_RUNNING = frozenset({Status.STARTING, Status.LIVE, Status.BACKOFF, Status.STOPPING})


class StopReason(StrEnum):
    DURATION_REACHED = "duration_reached"  # the budget was streamed
    DEADLINE_REACHED = "deadline_reached"  # the wall-clock deadline (--until) passed
    STOPPED = "stopped"  # `streamctl stop`, SIGTERM or SIGINT to the supervisor
    INPUT_ENDED = "input_ended"  # ffmpeg ended normally before the budget (input not looped)
    RETRIES_EXHAUSTED = "retries_exhausted"  # too many failures in a row
    START_FAILED = "start_failed"  # ffmpeg could not be launched at all
    SUPERVISOR_LOST = "supervisor_lost"  # supervisor died; found by status/sweep/resume
    SWEPT = "swept"  # stopped by `streamctl sweep`


class SessionEnd(StrEnum):
    """How one ffmpeg session ended: the `end` of each entry in the state's session history."""

    FINISHED = "finished"  # exit 0: -t reached, or the input ended
    FAILED = "failed"  # any other exit: crash, signal, network error
    STALLED = "stalled"  # no media progress, or the ingest stopped reading: replaced; a failure
    OVERRAN = "overran"  # the backup timer or the watchdog stopped it past its time
    STOPPED = "stopped"  # asked to stop: `streamctl stop`, a signal to the supervisor
    SWEPT = "swept"  # `streamctl sweep` stopped it
    SUPERVISOR_LOST = "supervisor_lost"  # its supervisor died; closed by the next start, stop or sweep
    NOT_STARTED = "not_started"  # ffmpeg could not be launched (never in the history: no session)


# Where each status may go next. Anything else is a bug in the supervisor, not a user error.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OFFLINE: frozenset({Status.STARTING}),
    Status.FAILED: frozenset({Status.STARTING}),
    Status.STARTING: frozenset({Status.LIVE, Status.BACKOFF, Status.STOPPING, Status.OFFLINE, Status.FAILED}),
    Status.LIVE: frozenset({Status.BACKOFF, Status.STOPPING, Status.OFFLINE, Status.FAILED}),
    Status.BACKOFF: frozenset({Status.STARTING, Status.STOPPING, Status.OFFLINE, Status.FAILED}),
    Status.STOPPING: frozenset({Status.OFFLINE, Status.FAILED}),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: Status, new: Status) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"illegal transition {old} -> {new}")

"""The API's OpenAPI description, served at /api/openapi.json: written out, not generated, so it says what
the routes do (api.py) in the words of the CLI; a schemathesis run in the tests holds the two together."""

from __future__ import annotations

from typing import Any

from streamctl import __version__
from streamctl.store.lifecycle import Status


def _n(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **more}


NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "A stream name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
    # paths.validate_name's rule, ".." (no name has it) included
    "schema": {"type": "string", "pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
}
STREAM: dict[str, Any] = {
    "type": "object",
    "description": "A stream as `streamctl status --json` shows it.",
    "required": ["name", "status", "runtime_seconds", "remaining_seconds", "restarts", "warning"],
    "properties": {
        "name": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in Status]},
        "supervisor_pid": _n("integer"),
        "ffmpeg_pid": _n("integer"),
        "budget_seconds": _n("number"),
        "until": _n("string", format="date-time"),
        "limit": _n("string", description="what ends the run: budget or deadline"),
        "runtime_seconds": {"type": "number", "description": "streamed time counted against the budget"},
        "session_runtime_seconds": _n("number"),
        "session_started_at": _n("string", format="date-time"),
        "uptime_seconds": _n("number"),
        "remaining_seconds": _n("number"),
        "restarts": {"type": "integer"},
        "sessions": {"type": "integer"},
        "started_at": _n("string", format="date-time"),
        "expected_end": _n("string", format="date-time"),
        "end_time": _n("string", format="date-time"),
        "stop_reason": _n("string"),
        "last_exit_code": _n("integer"),
        "last_error": _n("string", description="masked: no key, token or URL secret"),
        "bitrate": {"nullable": True},
        "speed": {"nullable": True},
        "slow": {"type": "boolean"},
        "warning": {"type": "boolean", "description": "under 5 minutes remain"},
        "orphan": {"type": "boolean"},
        "broken": _n("string", description="why the stream's state file cannot be read (status broken)"),
        "schedule": _n("string"),
        "show": _n("string"),
        "next_show": _n("string"),
        "next_show_local": _n("string"),
        "next_show_in_seconds": _n("integer"),
        "schedule_paused": _n("boolean"),
    },
}
RUNTIME_PROPS = (
    "name",
    "status",
    "runtime_seconds",
    "session_runtime_seconds",
    "budget_seconds",
    "remaining_seconds",
    "expected_end",
    "warning",
)
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "the CLI's message for it"},
        "exit_code": {"type": "integer", "description": "the CLI's exit code for it"},
    },
}
EVENT = {
    "type": "object",
    "description": "One record of a stream's event journal (`streamctl events NAME --json`).",
    "required": ["event", "stream", "t"],
    "properties": {
        "event": {"type": "string"},
        "stream": {"type": "string"},
        "t": {"type": "number"},
        "time": {"type": "string"},
    },
}


def _json(schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"description": what, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "bad input (an invalid name, a bad parameter)",
        401: "no token, or a wrong one",
        403: "a cross-site request",
        404: "no such stream",
        409: "it would disturb a running stream, or its budget is spent",
        429: "too many failed logins",
        500: "a state or config file cannot be read or written",
        502: "the stream failed",
        503: "ffmpeg is missing or unusable",
    }
    return {str(c): _json(_ref("Error"), why[c]) for c in (401, 429, *codes)}


def _op(
    summary: str, ok: dict[str, Any], *codes: int, status: int = 200, name: bool = False
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {str(status): ok, **_errors(*codes)}}
    if name:
        op["parameters"] = [NAME]
    return op


def description() -> dict[str, Any]:
    streams = {"type": "array", "items": _ref("Stream")}
    runtime = {
        "type": "object",
        "required": list(RUNTIME_PROPS),
        "properties": {k: STREAM["properties"][k] for k in RUNTIME_PROPS},
    }
    verdict = {
        "type": "object",
        "required": ["ok", "streams", "running", "problems"],
        "properties": {
            "ok": {"type": "boolean"},
            "streams": {"type": "integer"},
            "running": {"type": "integer"},
            "problems": {"type": "array"},
        },
    }
    health = _op(
        "200 when every stream that should run runs, else 503 with the ones that do not (given up, "
        "supervisor lost)",
        _json(verdict, "healthy"),
        500,
    )
    health["responses"]["503"] = _json(verdict, "a stream that should run does not")
    write = (400, 403, 404, 409, 500, 502, 503)
    events_op = _op(
        "The stream's last N events; with Accept: text/event-stream, the new ones as they come "
        "(Server-Sent Events, `event: event`; Last-Event-ID resumes)",
        {
            "description": "the events, oldest first",
            "content": {
                "application/json": {"schema": {"type": "array", "items": _ref("Event")}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        400,
        404,
        500,
        name=True,
    )
    events_op["parameters"].append(
        {
            "name": "n",
            "in": "query",
            "required": False,
            "description": "how many (1-1000, default 20)",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        }
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "streamctl",
            "version": __version__,
            "description": "Timed live streams. Every request needs the token: `Authorization: Bearer TOKEN` "
            "(`streamctl token` shows it), or the cookie the page gets from POST /api/login.",
        },
        "components": {
            "schemas": {"Stream": STREAM, "Error": ERROR, "Event": EVENT},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "streamctl_session"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": {
            "/api/streams": {
                "get": _op("Every stream (`streamctl status --json`)", _json(streams, "the streams"), 500)
            },
            "/api/streams/active/status": {
                "get": _op(
                    "The streams that run now, with their runtime", _json(streams, "the running streams"), 500
                )
            },
            "/api/streams/{name}": {
                "get": _op("One stream", _json(_ref("Stream"), "the stream"), 400, 404, 500, name=True)
            },
            "/api/streams/{name}/runtime": {
                "get": _op(
                    "Runtime, session, budget, remaining, expected end (`streamctl runtime --json`)",
                    _json(runtime, "the runtime"),
                    400,
                    404,
                    500,
                    name=True,
                )
            },
            "/api/streams/{name}/reset-runtime": {
                "post": _op(
                    "Set a stopped stream's runtime to zero (refused while it runs)",
                    _json({"type": "object"}, "reset; was_seconds is what it had"),
                    *write,
                    name=True,
                )
            },
            "/api/streams/{name}/stop": {
                "post": _op(
                    "Stop the stream and wait until it is down",
                    _json({"type": "object"}, "stopped"),
                    *write,
                    name=True,
                )
            },
            "/api/streams/{name}/start": {
                "post": _op(
                    "Start the stream as configured, with a supervisor in the background",
                    _json({"type": "object"}, "started"),
                    *write,
                    status=202,
                    name=True,
                )
            },
            "/api/streams/{name}/events": {"get": events_op},
            "/api/events": {
                "get": _op(
                    "Everything the monitor page shows, as it changes (Server-Sent Events): `streams` "
                    "(every stream, on a change and every 5 s) and `event` (each new journal record)",
                    {
                        "description": "an endless event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    500,
                )
            },
            "/healthz": {"get": health},
            "/metrics": {
                "get": _op(
                    "Prometheus exposition: the series of `status --format prometheus`",
                    {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    500,
                )
            },
            "/api/openapi.json": {"get": _op("This description", _json({"type": "object"}, "OpenAPI 3.0"))},
        },
    }

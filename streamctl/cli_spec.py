"""Generated from the Typer app (cli.py) by
`python -m streamctl.cli_fast > streamctl/cli_spec.py`: do not edit. A test fails when this is not
what the app declares now.

For each command of cli_fast.FAST_COMMANDS: the function of cli_read that runs it, its parameters'
defaults, its options by what is typed, its arguments in order."""

from typing import Any

COMMANDS: dict[str, dict[str, Any]] = {
    "status": {
        "function": "status",
        "defaults": {"names": None, "as_json": False, "watch": False, "format": "table"},
        "options": {
            "--json": {"name": "as_json", "type": "flag", "value": True},
            "--watch": {"name": "watch", "type": "flag", "value": True},
            "-w": {"name": "watch", "type": "flag", "value": True},
            "--format": {"name": "format", "type": "str"},
        },
        "arguments": [
            {"name": "names", "type": "str", "nargs": -1, "required": False},
        ],
    },
    "runtime": {
        "function": "runtime",
        "defaults": {"name": None, "as_json": False},
        "options": {
            "--json": {"name": "as_json", "type": "flag", "value": True},
        },
        "arguments": [
            {"name": "name", "type": "str", "nargs": 1, "required": True},
        ],
    },
    "list": {
        "function": "list_",
        "defaults": {"as_json": False},
        "options": {
            "--json": {"name": "as_json", "type": "flag", "value": True},
        },
        "arguments": [],
    },
    "sweep": {
        "function": "sweep",
        "defaults": {"as_json": False, "grace": None},
        "options": {
            "--json": {"name": "as_json", "type": "flag", "value": True},
            "--grace": {"name": "grace", "type": "float"},
        },
        "arguments": [],
    },
}

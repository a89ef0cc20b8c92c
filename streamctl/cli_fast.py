"""The entry point: the read commands without importing Typer, everything else through the Typer app.

`status`, `runtime`, `list` and `sweep` are what cron, monitoring and people type most, and Typer costs
more than they do (it imports pydantic and rich to run). So `main` parses these commands itself, by
cli_spec.COMMANDS, and calls the same functions of cli_read the Typer app calls: the same library, the
same printing, the same errors and exit codes.

cli.py stays the one declaration of every command and option: cli_spec.py is generated from the live
Typer app by `generate` (`python -m streamctl.cli_fast > streamctl/cli_spec.py` rewrites it), and a
test fails when it is not what the app says now. Whatever the parser here does not fully understand
goes to Typer, which says what is wrong in its own words: no arguments, another command, an option
before the command (--version, --install-completion), --help, -h, an unknown option, a short-option
cluster, `--`, a missing or extra argument, a value starting with "-", a number not written plainly,
an argument that is not valid Unicode, a completion request (_..._COMPLETE in the environment), or
STREAMCTL_TYPER=1 (set by the tests to run the Typer way).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin

FORCE_TYPER = "STREAMCTL_TYPER"
FAST_COMMANDS = ("status", "runtime", "list", "sweep")  # the ones cli_spec describes

# Numbers only as plainly written as both parsers read them alike (pydantic's and Python's differ on
# "inf", "1e3", "1_000", spaces): anything else is left to Typer.
_NUMBER = {"int": re.compile(r"0|[1-9]\d{0,17}"), "float": re.compile(r"(0|[1-9]\d{0,14})(\.\d{1,15})?")}
_CONVERT = {"int": int, "float": float}


class Unsupported(Exception):
    """A command of FAST_COMMANDS declares something this parser does not know: teach it, or drop the
    command from FAST_COMMANDS."""


def _value(text: str, kind: str) -> tuple[bool, Any]:
    """(True, TEXT as a KIND) when it reads the same as Typer would read it, else (False, None)."""
    try:
        text.encode("utf-8")  # a lone surrogate (an argv byte that is not UTF-8): pydantic refuses it
    except UnicodeEncodeError:
        return False, None
    if kind == "str":
        return True, text
    if _NUMBER[kind].fullmatch(text) is None:
        return False, None
    return True, _CONVERT[kind](text)


def plan(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    """What to call for ARGV: (the name of a function of cli_read, its keyword arguments), or None when
    the Typer app must run it."""
    if not argv or environ.get(FORCE_TYPER) or any(k[:1] == "_" and k.endswith("_COMPLETE") for k in environ):
        return None
    from streamctl.cli_spec import COMMANDS

    spec = COMMANDS.get(argv[0])
    if spec is None:
        return None
    kwargs: dict[str, Any] = dict(spec["defaults"])
    options: dict[str, dict[str, Any]] = spec["options"]
    words: list[str] = []
    rest = list(argv[1:])
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            words.append(token)  # options and arguments may come in any order, as Typer takes them
            continue
        opt, eq, attached = token.partition("=")
        option = options.get(opt)
        if option is None:
            return None
        if option["type"] == "flag":
            if eq:
                return None
            kwargs[option["name"]] = option["value"]
            continue
        if not eq:
            if not rest:
                return None
            attached = rest.pop(0)
        ok, value = _value(attached, option["type"])
        if not ok or attached.startswith("-"):
            return None
        kwargs[option["name"]] = value  # given twice, the last one counts, as in Typer
    for argument in spec["arguments"]:
        if argument["nargs"] == -1:
            taken, words = words, []
        else:
            taken, words = words[: argument["nargs"]], words[argument["nargs"] :]
        if not taken:
            if argument["required"]:
                return None
            continue
        values = []
        for word in taken:
            ok, value = _value(word, argument["type"])
            if not ok:
                return None
            values.append(value)
        kwargs[argument["name"]] = values if argument["nargs"] == -1 else values[0]
    if words:
        return None
    return spec["function"], kwargs


def main() -> None:
    """`streamctl` and `python -m streamctl`."""
    planned = plan(sys.argv[1:], os.environ)
    if planned is None:
        from streamctl.cli import typer_main

        typer_main()
        return
    from streamctl import cli_read
    from streamctl.errors import reported

    function, kwargs = planned
    with reported():
        code = getattr(cli_read, function)(**kwargs)
    sys.exit(code)


# --- the spec, from the Typer app --------------------------------------------------------------------------


def _kind(annotation: Any) -> str:
    for kind, t in (("str", str), ("float", float), ("int", int)):
        if annotation is t or (get_origin(annotation) is list and get_args(annotation) == (t,)):
            return kind
    raise Unsupported(f"type {annotation!r}")


def generate() -> dict[str, dict[str, Any]]:
    """cli_spec.COMMANDS as the Typer app declares FAST_COMMANDS now."""
    import inspect

    import typer.main

    from streamctl import cli_read
    from streamctl.cli import app

    group = typer.main.get_command(app)
    out: dict[str, dict[str, Any]] = {}
    for name in FAST_COMMANDS:
        command = group.commands[name]  # type: ignore[attr-defined]
        if command.context_settings or command.allow_extra_args or command.ignore_unknown_options:
            raise Unsupported(f"{name}: context settings")
        if not command.allow_interspersed_args:
            raise Unsupported(f"{name}: options only before arguments")
        assert command.callback is not None
        function = command.callback.__name__
        defaults: dict[str, Any] = {}
        options: dict[str, dict[str, Any]] = {}
        arguments: list[dict[str, Any]] = []
        for p in command.params:
            where = f"{name} {p.name}"
            desc = p.type_descriptor
            if p.envvar or p.callback or p.is_eager or not p.expose_value or desc.is_choice or desc.is_ranged:
                raise Unsupported(f"{where}: envvar, callback, eager, choices or a range")
            if desc.file_annotation is not None or p.multiple or getattr(p, "prompt", None):
                raise Unsupported(f"{where}: a file, a repeated option or a prompt")
            assert p.name is not None
            defaults[p.name] = p.default
            if p.param_type_name == "argument":
                if arguments and arguments[-1]["nargs"] == -1:
                    raise Unsupported(f"{where}: an argument after a variadic one")
                arguments.append(
                    {"name": p.name, "type": _kind(desc.annotation), "nargs": p.nargs, "required": p.required}
                )
            elif p.is_flag:
                if desc.annotation is not bool or p.default not in (False, None):
                    raise Unsupported(f"{where}: a flag that is not a plain bool")
                for opt in p.opts:
                    options[opt] = {"name": p.name, "type": "flag", "value": True}
                for opt in p.secondary_opts:
                    options[opt] = {"name": p.name, "type": "flag", "value": False}
            else:
                if p.nargs != 1 or p.secondary_opts or getattr(p, "count", False):
                    raise Unsupported(f"{where}: nargs, secondary options or a count")
                for opt in p.opts:
                    options[opt] = {"name": p.name, "type": _kind(desc.annotation)}
        impl = inspect.signature(getattr(cli_read, function))
        if list(impl.parameters) != list(defaults):
            raise Unsupported(f"{name}: cli_read.{function}{impl} takes other parameters: {list(defaults)}")
        out[name] = {"function": function, "defaults": defaults, "options": options, "arguments": arguments}
    return out


def _literal(value: Any, indent: int = 0) -> str:
    """VALUE as Python source, laid out as `ruff format` leaves it."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        inner = ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items())
        if len(pad) + len(inner) + 2 <= 100 and all(not isinstance(v, (dict, list)) for v in value.values()):
            return "{" + inner + "}"
        items = "".join(f"{pad}{_literal(k)}: {_literal(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + items + " " * indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = "".join(f"{pad}{_literal(v, indent + 4)},\n" for v in value)
        return "[\n" + items + " " * indent + "]"
    if isinstance(value, str):
        import json

        return json.dumps(value)
    return repr(value)


def source() -> str:
    """The text of cli_spec.py."""
    return (
        '"""Generated from the Typer app (cli.py) by\n'
        "`python -m streamctl.cli_fast > streamctl/cli_spec.py`: do not edit. A test fails when this is not\n"
        "what the app declares now.\n\n"
        "For each command of cli_fast.FAST_COMMANDS: the function of cli_read that runs it, its parameters'\n"
        'defaults, its options by what is typed, its arguments in order."""\n\n'
        "from typing import Any\n\n"
        f"COMMANDS: dict[str, dict[str, Any]] = {_literal(generate())}\n"
    )


if __name__ == "__main__":
    sys.stdout.write(source())

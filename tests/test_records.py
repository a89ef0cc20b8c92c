"""streamctl.records behaves as dataclasses for what streamctl uses: each case runs against both."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streamctl import records


def kinds(mod: Any) -> tuple[type, type]:
    @mod.dataclass
    class Open:
        a: int
        b: str = "x"
        c: list[int] = mod.field(default_factory=list)
        d: Any = mod.field(default=None, repr=False)

    @mod.dataclass(frozen=True)
    class Shut:
        a: int
        inner: Any = None

        @property
        def twice(self) -> int:
            return self.a * 2

    return Open, Shut


@pytest.mark.parametrize("mod", [dataclasses, records], ids=["dataclasses", "records"])
def test_the_same_behaviour(mod: Any) -> None:
    Open, Shut = kinds(mod)
    o = Open(1)
    assert (o.a, o.b, o.c, o.d) == (1, "x", [], None)
    assert Open(1).c is not Open(1).c  # a fresh list each
    assert Open(1, "y", [2]) == Open(a=1, b="y", c=[2]) and Open(1) != Open(2)
    assert repr(Open(1, "y")) == "test_the_same_behaviour.<locals>.Open(a=1, b='y', c=[])".replace(
        "test_the_same_behaviour.<locals>", "kinds.<locals>"
    )
    with pytest.raises(TypeError):
        hash(o)
    o.a = 5
    assert o.a == 5
    s = Shut(3, Open(1))
    assert s.twice == 6 and hash(Shut(3)) == hash(Shut(3)) and {Shut(3), Shut(3)} == {Shut(3)}
    with pytest.raises(AttributeError):
        s.a = 4  # type: ignore[misc]
    assert [f.name for f in mod.fields(Open)] == ["a", "b", "c", "d"] == [f.name for f in mod.fields(o)]
    assert records.replace(s, a=9) == Shut(9, Open(1))
    assert mod.asdict(Shut(3, Open(1, c=[1]))) == {"a": 3, "inner": {"a": 1, "b": "x", "c": [1], "d": None}}
    with pytest.raises(TypeError):
        Open()  # a is required


def test_records_replace_takes_standard_dataclasses_too() -> None:
    Open, _ = kinds(dataclasses)
    assert records.replace(Open(1), b="z") == Open(1, "z")


def test_the_supervisor_path_does_without_dataclasses() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import streamctl.run.entry, streamctl.run.supervisor, streamctl.output.logs, "
        "streamctl.run.playlist, streamctl.store.config; "
        "print(sorted({'dataclasses', 'inspect', 'psutil', 'shutil', 'secrets', 'logging', 'hashlib', 'datetime', "
        "'tempfile', 'tomllib', 'typer', 'rich'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

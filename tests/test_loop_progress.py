"""run_chunks' progress bar: "compiling..." from the start of a run until the first chunk is done,
drawn during a long first chunk only on a terminal."""

import io
import time

import pytest
from tqdm import tqdm

from jaxnets import loop


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _bars(monkeypatch, file: io.StringIO, delay: float | None = None) -> list[tqdm]:
    """Every bar run_chunks makes from now on, written to ``file`` (with ``delay`` if given)."""
    bars = []

    def make(**kw):
        bars.append(tqdm(**kw | {"file": file} | ({} if delay is None else {"delay": delay})))
        return bars[-1]

    monkeypatch.setattr(loop, "tqdm", make)
    return bars


def test_the_bar_says_compiling_until_the_first_chunk_is_done(monkeypatch):
    bars, seen = _bars(monkeypatch, io.StringIO()), []

    def chunk(state):
        seen.append((bars[0].postfix, bars[0].n))
        return state + 1, state

    r = loop.run_chunks(0, chunk, 3)
    assert seen == [("compiling...", 0), ("", 1), ("", 2)]  # chunk i is called after i - 1 ran
    assert bars[0].postfix == "" and bars[0].n == bars[0].total == 3 and r.state == 3


@pytest.mark.parametrize("file, drawn", [(Terminal(), True), (io.StringIO(), False)])
def test_a_long_first_chunk_shows_compiling_on_a_terminal_only(monkeypatch, file, drawn):
    _bars(monkeypatch, file, delay=0.2)  # past tqdm's mininterval (0.1 s)

    def chunk(state):
        time.sleep(0.8 if state == 0 else 0)
        return state + 1, state

    loop.run_chunks(0, chunk, 2)
    assert ("compiling..." in file.getvalue()) is drawn
    assert "2/2" in file.getvalue()  # the bar drawn after the run, as tqdm does anyway


def test_on_a_terminal_compiling_is_drawn_before_the_first_chunk_returns(monkeypatch):
    file, seen = Terminal(), []
    _bars(monkeypatch, file)  # tqdm's own delay (3 s) left as run_chunks sets it

    def chunk(state):
        seen.append("compiling..." in file.getvalue())
        return state + 1, state

    loop.run_chunks(0, chunk, 2)
    assert seen[0] is True

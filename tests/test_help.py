"""Every experiment's ``--help``: each flag's text on one line as its docstring says it, not broken
where the source wraps the docstring."""

import contextlib
import dataclasses
import importlib
import io
import pkgutil

import docstring_parser
import pytest

import experiments
from experiments import common

MODULES = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                 if not m.name.startswith("_")
                 and hasattr(importlib.import_module(f"experiments.{m.name}"), "Config"))


def _docstrings(config_cls: type) -> dict[str, str]:
    """Each field's attribute docstring, whitespace normalised (a subclass's wins)."""
    docs = {}
    for cls in reversed(config_cls.__mro__):
        if dataclasses.is_dataclass(cls):
            docs |= {p.arg_name: " ".join(p.description.split())
                     for p in docstring_parser.parse_from_object(cls).params if p.description}
    return docs


@pytest.mark.parametrize("name", MODULES)
def test_help_shows_each_docstring_unbroken(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping by tyro: a line break is the source's
    module, out = importlib.import_module(f"experiments.{name}"), io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    docs = _docstrings(module.Config)
    assert docs
    for field, doc in docs.items():
        assert doc in out.getvalue(), (field, doc)


def test_plain_help_joins_wrapped_lines_and_keeps_given_help():
    @dataclasses.dataclass(frozen=True)
    class Config:
        wrapped: int = 1
        """One sentence
        over two lines."""
        given: int = dataclasses.field(default=2, metadata={"help": "as given"})
        """Not this."""

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(common.plain_help(Config))}
    assert helps == {"wrapped": "One sentence over two lines.", "given": "as given"}

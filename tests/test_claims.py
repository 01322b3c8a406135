"""Every claim of the report is a test; the report gathers them, and its CLI behaves."""

import json

import pytest
from conftest import run_experiment

from experiments import claims as exp
from jaxnets.theory import claims as C
from jaxnets.theory.claim import Claim, Outcome


@pytest.mark.parametrize("claim", C.ALL, ids=[c.name[:80] for c in C.ALL])
def test_claim(claim):
    o = claim.check()
    assert o.passed, f"{claim.name}: {o.measured}"
    assert o.measured  # every row says what was measured
    if o.stated_value is not None:  # a problem set's number is always set beside the computed one
        assert o.computed is not None, claim.name


def test_every_topic_contributes_and_names_are_unique():
    from importlib import import_module

    for t in C.TOPICS:
        assert import_module(f"jaxnets.theory.{t}").CLAIMS, t
    names = [c.name for c in C.ALL]
    assert len(set(names)) == len(names), [n for n in names if names.count(n) > 1]
    assert [c.problem_set for c in C.ALL] == sorted(c.problem_set for c in C.ALL)


def _fake(passed, stated_value=None, computed=None, question="Q1"):
    return Claim("001", question, "a | b", "how", lambda: Outcome(passed, "m", stated_value,
                                                                  computed))


def test_rows_flags_and_markdown():
    def boom():
        raise RuntimeError("no")

    rows = [C.check(_fake(True, "10", "8, 9, 10")), C.check(_fake(True, "2", "2")),
            C.check(_fake(False)), C.check(Claim("002", "Q1", "s", "h", boom))]
    assert [r.outcome.differs for r in rows] == [True, False, False, False]
    assert not rows[3].outcome.passed and "RuntimeError: no" in rows[3].outcome.measured
    md = C.markdown(rows).splitlines()
    assert len(md) == 2 + 4 and "a \\| b" in md[2] and "DIFFERS" in md[2]
    assert md[4].endswith("| FAIL |") and md[2].endswith("| pass |")
    assert C.summary(rows).startswith("4 claims: 2 pass, 2 fail; 1 where")


def test_report_run_folder_and_selection(tmp_path):
    res = exp.run(exp.Config(problem_sets=("004",), match="Q6", run_dir=tmp_path), progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"claims.md", "results.json"}
    picked = [c for c in C.ALL
              if c.problem_set == "004" and "q6" in (c.question + c.statement).lower()]
    assert len(res["rows"]) == len(picked) >= 2 and res["failed"] == 0
    md = (tmp_path / "claims.md").read_text()
    assert md.count("\n| 004 Q") == len(picked) and md.count("\n| 004 Q6 |") >= 2
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == res["rows"]
    assert "the problem set says" in exp.table(res)


def test_cli_help_errors_and_exit_status(tmp_path, monkeypatch):
    help_text = run_experiment("claims", "--help").stdout
    for flag in ("--problem-sets", "--match", "--out", "--run-dir"):
        assert flag in help_text
    bad = run_experiment("claims", "--seeds", "007")
    assert bad.returncode == 1 and "unknown problem set" in bad.stderr
    bad = run_experiment("claims", "--match", "no such claim anywhere")
    assert bad.returncode == 1 and "no claim matches" in bad.stderr
    # a failing claim makes the report exit 1
    monkeypatch.setattr(C, "ALL", [_fake(False)])
    with pytest.raises(SystemExit) as e:
        exp.main(["--run-dir", str(tmp_path)])
    assert e.value.code == 1

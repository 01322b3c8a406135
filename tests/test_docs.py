"""The docs site: it builds in strict mode (broken links and references fail), its claims table
is computed, every Python example on its pages runs, and its pages speak to users."""

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jaxnets.theory import claims as C

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1",
                                                               "PATH": str(mkdocs.parent)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_site_builds_strict_with_the_api_reference(site):
    api = (site / "api" / "models" / "index.html").read_text()
    for name in ("jaxnets.models.rnn.lstm_value_and_bptt", "jaxnets.models.sin_mlp.manual_grads"):
        assert f'id="{name}"' in api, name
    assert (site / "benchmarks" / "index.html").exists()


def test_the_claims_table_is_computed_at_build_time(site):
    page = (site / "theory" / "index.html").read_text()
    assert "<!-- claims-table -->" not in page
    for claim in C.ALL:  # every claim's statement is a row
        assert html.escape(claim.statement, quote=False) in page, claim.name


@pytest.mark.parametrize("page", [p for p in PAGES if "```python" in p.read_text()],
                         ids=lambda p: str(p.relative_to(DOCS)))
def test_page_python_examples_run(page):
    namespace: dict = {}
    for code in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 (our own docs)


def test_pages_speak_to_users():
    for page in PAGES:
        text = page.read_text().lower()
        assert "the issue" not in text and "this session" not in text, page

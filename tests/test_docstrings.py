"""One docstring style across the package: numpydoc, as scikit-image writes it.

Google-style section headers (``Args:``, ``Returns:``) next to numpydoc ones (``Parameters``
underlined with dashes) make a package read as two; Sphinx's napoleon renders both, but only
if each docstring sticks to one. The check reads every docstring through ``ast``, so code and
comments that happen to contain such words are not flagged.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import dineuro

PACKAGE = Path(dineuro.__file__).parent
GOOGLE_SECTION = re.compile(r"^\s*(Args|Arguments|Returns|Raises|Yields|Attributes|Examples?|"
                            r"Notes?|Warns|See Also):{1,2}\s*$", re.MULTILINE)
NUMPYDOC_SECTION = re.compile(r"^\s*(Parameters|Returns|Raises|Yields|Attributes|Examples|Notes|"
                              r"Warns|See Also)\n\s*(-+)$", re.MULTILINE)


def _docstrings(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=False)
            if text:
                yield getattr(node, "name", "<module>"), text


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_docstrings_use_numpydoc_sections(path):
    for name, text in _docstrings(path):
        google = GOOGLE_SECTION.search(text)
        assert google is None, f"{name}: Google-style section {google.group(0).strip()!r}"
        for match in NUMPYDOC_SECTION.finditer(text):
            header, underline = match.group(1), match.group(2)
            assert len(underline) == len(header), f"{name}: {header!r} underline length"


def test_the_check_tells_the_two_styles_apart(tmp_path):
    """A hand-made module of each style: the check flags one and passes the other."""
    google = tmp_path / "google.py"
    google.write_text('def f(a):\n    """Do.\n\n    Args:\n        a: thing.\n    """\n')
    numpy = tmp_path / "numpy.py"
    numpy.write_text('def f(a):\n    """Do.\n\n    Parameters\n    ----------\n    a : int\n'
                     '        Thing.\n    """\n')
    assert [GOOGLE_SECTION.search(t) is not None for _, t in _docstrings(google)] == [True]
    assert [GOOGLE_SECTION.search(t) is not None for _, t in _docstrings(numpy)] == [False]

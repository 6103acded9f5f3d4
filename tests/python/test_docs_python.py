"""The python examples in docs/python.md run, in order, against a real screed
whose socket is in $SCREE_SOCKET, and their asserts hold."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 10


def test_examples_run_in_order(screed, monkeypatch):
    monkeypatch.setenv("SCREE_SOCKET", screed.socket)
    namespace: dict = {"__name__": "python_md"}
    for i, block in enumerate(BLOCKS):
        code = compile(block, f"{DOC.name} block {i + 1}", "exec")
        exec(code, namespace)  # a failing assert names the block in its traceback
    assert namespace["client"].closed


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(screed, monkeypatch):
    # Issue 16: the README's example must run unchanged on a CPU and a GPU
    # daemon; here, on host memory.
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1
    monkeypatch.setenv("SCREE_SOCKET", screed.socket)
    exec(compile(blocks[0], "README.md python block", "exec"), {"__name__": "readme"})

"""The python examples in docs/bridges.md run, in order, and their asserts hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "bridges.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 10


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_examples_run_in_order():
    namespace: dict = {"__name__": "bridges_md"}
    for i, block in enumerate(BLOCKS):
        code = compile(block, f"{DOC.name} block {i + 1}", "exec")
        exec(code, namespace)  # a failing assert names the block in its traceback

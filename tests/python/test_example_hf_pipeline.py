"""examples/hf_pipeline end to end: the worker starts first and watches, the
trainer puts a few steps, the worker checks and deletes each one; then the
daemon holds no batch and no lease."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import scree

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hf_pipeline"


def test_trainer_to_worker(screed):
    env = dict(os.environ, SCREE_SOCKET=screed.socket, PYTHONPATH=os.pathsep.join(sys.path))
    steps = "4"
    worker = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "worker.py"), "--steps", steps, "--timeout", "120"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        trainer = subprocess.run(
            [sys.executable, str(EXAMPLE / "trainer.py"), "--steps", steps, "--device", "cpu"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert trainer.returncode == 0, trainer.stdout
        assert "trainer: put 4 steps" in trainer.stdout
        out, _ = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, out
    assert "worker: checked 4 batches" in out
    with scree.Client(screed.socket) as c:
        assert c.list() == []
        s = c.stats()
        assert (s.batches, s.leases) == (0, 0)

import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

@pytest.fixture
def cli():
    "Run the `compress-papers` console script; returns the CompletedProcess."
    import subprocess
    def run(*args, env=None, timeout=120):
        exe = BIN / "compress-papers"
        return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    return run

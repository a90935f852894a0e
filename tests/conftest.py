import os, sys
from pathlib import Path
from types import SimpleNamespace
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

@pytest.fixture
def cli_process():
    "Run the installed `compress-papers` console script in a new process; returns the CompletedProcess."
    import subprocess
    def run(*args, env=None, timeout=120):
        return subprocess.run([str(BIN / "compress-papers"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    return run

@pytest.fixture
def cli(monkeypatch):
    """Run `compress-papers ARGS` in this process (what the console script calls: `reproduce.main`), without the
    3 s of a fresh interpreter; returns an object with `returncode`, `stdout` and `stderr` like a CompletedProcess."""
    import contextlib, io
    from compress_papers.reproduce import main
    def run(*args, env=None, timeout=None):
        for k, v in (env or {}).items(): monkeypatch.setenv(k, v)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main(list(args))
            except SystemExit as e: code = e.code
        return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    return run

"The README's numbers come from the committed results: its generated blocks must equal what `readme_blocks` builds."
from compress_papers.core import project_root
from compress_papers.reproduce import PAPERS, update_readme


def test_readme_has_a_generated_block_for_every_paper():
    text = (project_root() / "README.md").read_text()
    for name in ["runtimes", "baselines", *(f"claims-{p}" for p in PAPERS)]:
        assert f"<!-- generated:{name} -->" in text and f"<!-- /generated:{name} -->" in text, f"README lacks the {name} block"


def test_readme_numbers_match_the_committed_results():
    stale = update_readme(write=False)
    assert stale == [], f"README blocks differ from figures/: {stale}; run `compress-papers report` and commit"


def _params(cell_source: str) -> dict:
    "The values a `parameters` cell assigns (its lines are plain assignments)."
    ns = {}; exec(cell_source, {}, ns); return ns

def _full_run_changed(old_text: str, new_text: str, paper) -> str:
    """Why the full run of `paper` may differ between two versions of its notebook ('' when it cannot): any cell but the
    `parameters` cell changed, or a default changed there that the full run does not override (`paper.full`)."""
    import json
    cells = lambda t: [("".join(c["source"]), "parameters" in c.get("metadata", {}).get("tags", [])) for c in json.loads(t)["cells"]]
    old, new = cells(old_text), cells(new_text)
    if [s for s, par in old if not par] != [s for s, par in new if not par]: return "a cell other than the parameters cell"
    po, pn = (_params("".join(s for s, par in c if par)) for c in (old, new))
    full = paper.params("full", "mnist5k")
    moved = sorted(k for k in set(po) | set(pn) if k not in full and po.get(k, ...) != pn.get(k, ...))
    return f"defaults the full run does not override: {moved}" if moved else ""

def test_full_run_changed_sees_only_what_the_full_run_uses():
    import json
    from compress_papers.reproduce import Paper
    nb = lambda params, body="x = 1": json.dumps({"cells": [{"source": params, "metadata": {"tags": ["parameters"]}},
                                                            {"source": body, "metadata": {}}]})
    p = Paper("p", "p.ipynb", "P", {"n": 10})
    assert _full_run_changed(nb("n = 2\nm = 3"), nb("n = 4\nm = 3"), p) == ""          # n is overridden at full size
    assert "['m']" in _full_run_changed(nb("n = 2\nm = 3"), nb("n = 2\nm = 5"), p)      # m is not
    assert "['k']" in _full_run_changed(nb("n = 2"), nb("n = 2\nk = 1"), p)              # a new parameter is used as it is
    assert "other than" in _full_run_changed(nb("n = 2"), nb("n = 2", "x = 2"), p)

def test_committed_results_come_from_their_committed_notebook():
    """Each paper's results.json names the commit it ran from; its notebook must not have changed since in a way that
    touches the full run (else rerun it): smoke-size defaults the full run overrides may change."""
    import json, subprocess
    import pytest
    root = project_root()
    git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True)
    if git("rev-parse", "--git-dir").returncode: pytest.skip("not a git checkout")
    stale, unknown = [], []
    for name, p in PAPERS.items():
        f = root / "figures" / name / "results.json"
        if not f.exists(): continue
        stamp = json.loads(f.read_text())["env"]["git"]
        assert not stamp.endswith("-dirty"), f"{name}: results from an uncommitted tree ({stamp}); rerun from a committed one"
        if git("cat-file", "-e", f"{stamp}^{{commit}}").returncode: unknown.append(name); continue
        if git("diff", "--quiet", stamp, "--", f"nbs/{p.notebook}").returncode:
            why = _full_run_changed(git("show", f"{stamp}:nbs/{p.notebook}").stdout, (root / "nbs" / p.notebook).read_text(), p)
            if why: stale.append(f"{name} ({p.notebook} changed since {stamp}: {why})")
    assert stale == [], f"results older than their notebooks: {stale}; rerun them at full size and commit"
    if unknown: pytest.skip(f"the stamped commit of {unknown} is not in this clone's history")

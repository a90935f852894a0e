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


def test_committed_results_come_from_their_committed_notebook():
    "Each paper's results.json names the commit it ran from; its notebook must not have changed since (else rerun it)."
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
        if git("diff", "--quiet", stamp, "--", f"nbs/{p.notebook}").returncode: stale.append(f"{name} ({p.notebook} changed since {stamp})")
    assert stale == [], f"results older than their notebooks: {stale}; rerun them at full size and commit"
    if unknown: pytest.skip(f"the stamped commit of {unknown} is not in this clone's history")

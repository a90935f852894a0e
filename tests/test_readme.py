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

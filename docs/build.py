"""Build the documentation site (`make docs`): the README as the home page, one page per paper with its executed full-size
notebook (the committed HTML render, outputs and figures included), the report, and an API reference from the
docstrings. Everything comes from what is committed: the README, `figures/` and the package. The pages are written to
`build/site-src/` (the configuration to `build/mkdocs.yml`) and mkdocs (Material theme, mkdocstrings) turns them into a static site in `site/`.

    python docs/build.py [--out site]
"""
from __future__ import annotations
import argparse, json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from compress_papers.reproduce import PAPERS, readme_blocks   # noqa: E402



def api_modules(nbs: Path = ROOT / "nbs") -> list[str]:
    "The package's modules in notebook order: each notebook's `#| default_exp` name (a new paper's module joins by itself)."
    found = (re.search(r"#\|\s*default_exp\s+(\w+)", nb.read_text()) for nb in sorted(nbs.glob("[0-9]*.ipynb")))
    return [m.group(1) for m in found if m]


def _summary(notebook: Path) -> str:
    "A paper notebook's `> one-line summary` (its title cell), or ''."
    for c in json.loads(notebook.read_text())["cells"]:
        s = "".join(c["source"])
        if c["cell_type"] == "markdown" and s.startswith("# "):
            m = re.search(r"^> (.+)$", s, re.M)
            return m.group(1) if m else ""
    return ""


def _home(readme: str) -> str:
    "The README as the home page: links to the report and to notebooks point at their pages in the site."
    for name, p in PAPERS.items():
        readme = readme.replace(f"`nbs/{p.notebook}`", f"[`nbs/{p.notebook}`](papers/{name}.md)")
    return readme


def _paper_page(name: str, figures: Path, blocks: dict) -> str:
    "A paper's page: title, summary, its claims as the README shows them (`blocks`: `readme_blocks`), and the executed notebook."
    p = PAPERS[name]
    run = json.loads((figures / name / "timings.json").read_text())["timings"].get("notebook run", {})
    stamp = json.loads((figures / name / "results.json").read_text())["env"]
    lines = [f"# {p.title}", "", f"> {_summary(ROOT / 'nbs' / p.notebook)}", "",
             f"The executed full-size notebook `nbs/{p.notebook}` (commit `{stamp['git']}`, {stamp['threads']} threads, "
             f"{stamp['cpu']}" + (f", {run['seconds']:.0f} s" if run.get("size") == "full" else "") + "), "
             f"[opened on its own](../figures/{name}/{name}.html); the [report](../figures/REPORT.md) gathers every paper's claims.", "",
             "## Claims", "", blocks.get(f"claims-{name}", "(no results yet)"), "",
             "## The notebook, executed", "",
             f'<iframe class="notebook" src="../../figures/{name}/{name}.html" title="{name}: the executed notebook" '
             'style="width:100%;height:85vh;border:1px solid #ddd" loading="lazy"></iframe>', ""]
    return "\n".join(lines)


def _config(pages: list[str]) -> str:
    nav = ["nav:", "  - Home: index.md", "  - Report: figures/REPORT.md", "  - Papers:"]
    nav += [f"      - {PAPERS[n].title.split(':')[0].split(' (')[0]}: papers/{n}.md" for n in pages]
    nav += ["  - API reference:"] + [f"      - {m}: api/{m}.md" for m in api_modules()]
    return "\n".join([
        "site_name: compress-papers",
        "site_description: A reproducible, literate companion to nine neural-network compression papers",
        "docs_dir: site-src", "use_directory_urls: false",
        "theme:", "  name: material", "  font: false", "  features: [navigation.sections, content.code.copy]",
        "plugins:", "  - search",
        "  - mkdocstrings:", "      handlers:", "        python:",
        f"          paths: [{json.dumps(str(ROOT))}]",
        "          options: {show_source: false, docstring_style: sphinx, members_order: source, show_root_heading: true}",
        "markdown_extensions: [tables, admonition, toc, attr_list, md_in_html]",
        *nav, ""])


def build(out: Path | str = ROOT / "site", src: Path | str = ROOT / "build" / "site-src", figures: Path | str = ROOT / "figures") -> Path:
    "Write the pages to `src` and build the site into `out` (both replaced); returns `out`."
    out, src, figures = Path(out), Path(src), Path(figures)
    shutil.rmtree(src, ignore_errors=True); (src / "papers").mkdir(parents=True); (src / "api").mkdir()
    shutil.copytree(figures, src / "figures", ignore=shutil.ignore_patterns("*.npy"))
    (src / "index.md").write_text(_home((ROOT / "README.md").read_text()))
    pages = [n for n in PAPERS if (figures / n / "results.json").exists()]
    blocks = readme_blocks(figures)
    for n in pages: (src / "papers" / f"{n}.md").write_text(_paper_page(n, figures, blocks))
    for m in api_modules(): (src / "api" / f"{m}.md").write_text(f"# compress_papers.{m}\n\n::: compress_papers.{m}\n")
    (src.parent / "mkdocs.yml").write_text(_config(pages))
    tmp = out.with_name(out.name + ".partial"); shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(src.parent / "mkdocs.yml"), "-d", str(tmp)], check=True)
    shutil.rmtree(out, ignore_errors=True); tmp.rename(out)       # a failed build leaves the old site as it was
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "site"), help="the site folder (default: site/)")
    print(f"site: {build(ap.parse_args().out)}")

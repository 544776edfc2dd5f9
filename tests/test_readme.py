"""The README as a new user reads it: its Python examples run as written, its layout is the package's, its links
lead somewhere, and it stays short enough to read in the first hour."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MOST_LINES = 125  # the first hour's README: what qbench is, set up, a first run, compare, report, links


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def listed_modules() -> set[str]:
    """The modules the Layout section lists under qbench/: `name.py` on a line of the top-level package (indented
    by 2), of a package (`name/` first), or continuing the package of the line before (indented deeper)."""
    found, package = set(), None
    for line in section("Layout").splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        indent = len(line) - len(line.lstrip()) - 4  # the block is indented by 4
        first = line.split()[0]
        if indent == 0:
            package = "qbench" if first == "qbench/" else None
        elif indent == 2 and first.endswith("/"):
            package = f"qbench/{first.rstrip('/')}"
        elif indent == 2:
            package = "qbench" if package is not None else None
        if package is not None:
            words = line.split(":")[0].split()  # a package line's modules come before its colon
            found |= {f"{package}/{word}" for word in words if re.fullmatch(r"\w+\.py", word)}
    return found


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README shows a Python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "red", "the shipped tiny model sees the red circle"


def test_the_layout_lists_every_module_and_only_modules_that_exist():
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "qbench").rglob("*.py") if path.name != "__init__.py"}
    listed = listed_modules()
    assert not listed - modules, f"the README's Layout lists modules that do not exist: {sorted(listed - modules)}"
    assert not modules - listed, f"add these modules to the README's Layout: {sorted(modules - listed)}"
    for folder in re.findall(r"^ {4}(\w+)/", section("Layout"), flags=re.MULTILINE):
        assert (ROOT / folder).is_dir(), f"the Layout names {folder}/, which is not in the repository"


def test_every_link_leads_to_a_file_and_the_readme_stays_short():
    text = README.read_text()
    assert len(text.splitlines()) <= MOST_LINES
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).is_file(), f"the README links to {target}, which does not exist"
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).is_file(), f"{doc.name} links to {target}, which does not exist"

"""The README's YAML reference is generated from the spec; this keeps it from drifting."""
from pathlib import Path

from orchestrator.spec.reference import BEGIN, END, markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_yaml_reference_is_current():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == markdown(), "regenerate with: ganforge schema --markdown (and paste into README.md)"


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in head.strip().splitlines()] == [["make", "demo"], ["make", "test"]]

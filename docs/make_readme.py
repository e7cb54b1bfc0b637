"""Rebuild README.md's generated YAML reference in place: .venv/bin/python docs/make_readme.py"""
from pathlib import Path

from orchestrator.spec.reference import BEGIN, END, markdown

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
start, end = text.index(BEGIN), text.index(END) + len(END)
readme.write_text(text[:start] + markdown() + text[end:])

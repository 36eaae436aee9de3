"""The figures in the docs are what the committed summaries say (``benchmarks.records.figures``)."""

from __future__ import annotations

from benchmarks.records import figures


def test_every_figures_block_of_the_docs_is_current(capsys):
    assert figures.main(["--check"]) == 0, capsys.readouterr().err


def test_the_docs_have_a_block_for_each_figure_set():
    text = "".join(path.read_text() for path in figures.DOCS.glob("*.md"))
    for name in figures.RENDERERS:
        assert f"<!-- figures:{name} -->" in text, name


def test_a_figure_typed_by_hand_is_found_stale():
    text = "x\n<!-- figures:accuracy -->\n| a hand-typed table |\n<!-- /figures:accuracy -->\n"
    assert figures.rendered(text) != text
    assert figures.rendered(figures.rendered(text)) == figures.rendered(text)

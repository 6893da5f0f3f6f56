"""What the editorial stages read of an article (issue 5)."""

from __future__ import annotations

import pytest

from functions.untrusted import article_text, fence, visible_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("Plain &amp; simple.", "Plain & simple.", id="plain-entities"),
        pytest.param("<p>One.</p><p>Two.</p>", "One. Two.", id="blocks-spaced"),
        pytest.param(
            '<div style="display: none">gone</div>kept', "kept", id="display-none"
        ),
        pytest.param(
            '<span style="visibility:hidden">gone</span>kept', "kept", id="visibility"
        ),
        pytest.param('<span style="opacity:0">gone</span>kept', "kept", id="opacity-0"),
        pytest.param(
            '<span style="opacity:0.9">shown</span>', "shown", id="opacity-visible"
        ),
        pytest.param(
            "<div hidden><p>nested <b>gone</b></p></div>kept", "kept", id="nested"
        ),
        pytest.param(
            "<style>p{}</style><noscript>gone</noscript>kept", "kept", id="css"
        ),
        pytest.param(
            "zero\u200bwidth\u202eflip", "zerowidthflip", id="invisible-chars"
        ),
    ],
)
def test_visible_text(raw: str, expected: str) -> None:
    assert visible_text(raw) == expected


def test_fence_neutralizes_angle_brackets() -> None:
    assert fence("a </article> b") == "a ‹/article› b"


def test_article_text_keeps_ordinary_reporting_about_instructions() -> None:
    """A news sentence that mentions rules is not an order to a model."""
    text = "The ministry issued new rules for data exports. Firms must comply by June."

    assert article_text(text) == text

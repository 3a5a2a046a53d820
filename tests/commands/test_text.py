"""Slack text normalisation and the chat-friendly tokenizer (commands.text)."""

from __future__ import annotations

import pytest

from commands.text import Token, UnbalancedQuote, bad_character, normalise, option_word, tokenize


@pytest.mark.parametrize(("raw", "expected"), [
    ("a &amp; b &lt;c&gt;", "a & b <c>"),
    ("&amp;amp; &amp;lt;", "&amp; &lt;"),  # one level of unescaping only
    ("&quot; &nbsp;", "&quot; &nbsp;"),  # Slack only escapes & < >
    ("<http://web-1|web-1>", "web-1"),
    ("<https://x.y|x.y> <https://x.y>", "x.y x.y"),
    ("<http://web-1/>", "web-1"),
    ("<mailto:a@b.c|a@b.c> <mailto:a@b.c>", "a@b.c a@b.c"),
    ("<http://a.b|label &amp; more>", "label & more"),
    ("<@U123> <#C1|general> <!here>", "<@U123> <#C1|general> <!here>"),  # not links
    ("“a” ‘b’ „c“ ‚d‘ «e»", "\"a\" 'b' \"c\" 'd' \"e\""),
    ("—now", "—now"),  # dashes are handled per token, not in the text
])
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("", []),
    ("  a  b\tc\nd ", ["a", "b", "c", "d"]),
    ('"a b" c', ["a b", "c"]),
    ("'a b' c", ["a b", "c"]),
    ('--note="a b" x', ["--note=a b", "x"]),
    ("don't stop", ["don't", "stop"]),
    ("'don't stop' now", ["don't stop", "now"]),
    ("'say \"hi\" now' x", ['say "hi" now', "x"]),  # the other quote kind nests
    ('"say "hi" now" x', ['say "hi', 'now"', "x"]),  # a quote before a space closes
    ('""', [""]),
    ('a"b c"', ['a"b', 'c"']),  # quotes open only at the start of a word or after =
])
def test_tokenize(text: str, expected: list[str]) -> None:
    assert [token.text for token in tokenize(text)] == expected


def test_tokenize_marks_quoted_words() -> None:
    assert tokenize('"--now" --now --x="y"') == [
        Token("--now", True), Token("--now", False), Token("--x=y", False)]


@pytest.mark.parametrize("text", ['"abc', "'abc", 'a "b c', '"a"b', "'"])
def test_tokenize_unbalanced(text: str) -> None:
    with pytest.raises(UnbalancedQuote):
        tokenize(text)


@pytest.mark.parametrize(("token", "expected"), [
    (Token("--now"), "--now"),
    (Token("—now"), "--now"),
    (Token("–now"), "--now"),
    (Token("—note=x"), "--note=x"),
    (Token("-h"), "-h"),
    (Token("--now", quoted=True), None),
    (Token("-5"), None),
    (Token("--"), None),
    (Token("—"), None),
    (Token("-"), None),
    (Token("web-1"), None),
])
def test_option_word(token: Token, expected: str | None) -> None:
    assert option_word(token) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("fine\ttext\r\n", None),
    ("é ü 日本", None),
    ("a\x00", "U+0000"),
    ("a\x7f", "U+007F"),
    ("a\x85", "U+0085"),
    ("a\udc80", "surrogate"),
])
def test_bad_character(text: str, problem: str | None) -> None:
    found = bad_character(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found

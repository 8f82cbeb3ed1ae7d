"""newsletter.plaintext.html_to_text: the plain-text part of every issue (MIME-05, SEC-04).

The input is the sanitized HTML of a post (see newsletter.content.render_markdown), so the
tests use both hand-written fragments and HTML produced from real Markdown.
"""

from __future__ import annotations

import html

from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.content import render_markdown
from newsletter.plaintext import PlainText, html_to_text

BASE = "https://claudesuper.example.org/"


def text_of(fragment: str) -> str:
    return html_to_text(fragment).body


def text_of_links(fragment: str) -> tuple[str, list[str]]:
    result = html_to_text(fragment)
    return result.body, result.links


def from_markdown(markdown: str) -> PlainText:
    return html_to_text(render_markdown(markdown, base_url=BASE))


# ---------------------------------------------------------------- paragraphs and line breaks


def test_paragraphs_are_separated_by_one_blank_line():
    assert text_of("<p>Premier.</p><p>Deuxième.</p>\n<p>Troisième.</p>") == "Premier.\n\nDeuxième.\n\nTroisième."
    assert from_markdown("Un.\n\nDeux.\n\n\n\nTrois.").body == "Un.\n\nDeux.\n\nTrois."


def test_soft_line_breaks_in_markup_become_spaces():
    assert from_markdown("une phrase\nsur deux lignes").body == "une phrase sur deux lignes"


def test_br_is_a_line_break():
    assert text_of("<p>Claude Super<br>12 rue de l’Exemple<br>Paris</p>") == "Claude Super\n12 rue de l’Exemple\nParis"


def test_br_from_markdown_starts_the_next_line_without_a_space():
    """Markdown writes "<br />\\n"; the newline after <br> is markup, not a leading space.

    render_markdown("a  \\nb") is "<p>a<br />\\nb</p>", which must read "a\\nb", not "a\\n b".
    """
    assert render_markdown("Claude Super  \nParis", base_url=BASE) == "<p>Claude Super<br>\nParis</p>"
    assert (
        from_markdown("Claude Super  \n12 rue de l’Exemple\\\nParis").body == "Claude Super\n12 rue de l’Exemple\nParis"
    )


def test_nbsp_and_double_spaces_inside_a_sentence_are_kept():
    sentence = "Il dit\u00a0: «\u00a0oui\u00a0»  puis  part\u00a0!"
    assert text_of(f"<p>{sentence}</p>") == sentence
    assert text_of("<p>a\u00a0\u00a0b</p>") == "a\u00a0\u00a0b"
    assert from_markdown("Le blog\u00a0: deux  espaces.").body == "Le blog\u00a0: deux  espaces."


def test_entities_are_decoded_and_no_markup_is_left():
    assert text_of("<p>AT&amp;T &lt;b&gt; &copy; caf&eacute;</p>") == "AT&T <b> © café"
    assert (
        text_of("<p><strong>gras</strong> et <em>italique</em> et <code>x = 1</code></p>")
        == "gras et italique et x = 1"
    )


# ---------------------------------------------------------------- lists


def test_unordered_items_get_a_dash_on_consecutive_lines():
    assert text_of("<ul><li>un</li><li>deux</li><li>trois</li></ul>") == "- un\n- deux\n- trois"
    assert (
        from_markdown("Intro :\n\n- à la stratégie,\n- aux objectifs\n").body
        == "Intro :\n\n- à la stratégie,\n- aux objectifs"
    )


def test_ordered_items_are_numbered_from_one():
    assert text_of("<ol><li>a</li><li>b</li><li>c</li></ol>") == "1. a\n2. b\n3. c"


def test_ordered_list_start_attribute_is_honoured():
    assert text_of('<ol start="7"><li>sept</li><li>huit</li></ol>') == "7. sept\n8. huit"
    assert from_markdown("3. trois\n4. quatre\n").body == "3. trois\n4. quatre"
    assert text_of('<ol start="x"><li>a</li></ol>') == "1. a"


def test_nested_lists_are_indented_two_spaces_per_level():
    fragment = "<ul><li>a<ul><li>a1<ol><li>deep</li></ol></li><li>a2</li></ul></li><li>b</li></ul>"
    assert text_of(fragment) == "- a\n  - a1\n    1. deep\n  - a2\n- b"
    markdown = "1. premier\n\n    - détail\n\n2. second\n"
    assert from_markdown(markdown).body == "1. premier\n  - détail\n2. second"


def test_two_consecutive_lists_are_separated_by_a_blank_line():
    assert text_of("<ul><li>a</li><li>b</li></ul><ol><li>c</li></ol>") == "- a\n- b\n\n1. c"
    assert text_of("<ul><li>a</li></ul><ul><li>b</li></ul>") == "- a\n\n- b"
    assert from_markdown("- a\n- b\n\n1. c\n2. d\n").body == "- a\n- b\n\n1. c\n2. d"


def test_list_between_paragraphs():
    assert text_of("<p>avant</p><ul><li>x</li></ul><p>après</p>") == "avant\n\n- x\n\naprès"


# ---------------------------------------------------------------- quotes


def test_blockquote_lines_are_prefixed():
    assert text_of("<blockquote><p>cité</p></blockquote><p>après</p>") == "> cité\n\naprès"
    assert from_markdown("> ..is a dynamic flow\n> of power").body == "> ..is a dynamic flow of power"


def test_blockquote_with_line_breaks_and_nesting():
    assert text_of("<blockquote><p>un<br>deux</p></blockquote>") == "> un\n> deux"
    assert text_of("<blockquote><p>a</p><blockquote><p>b</p></blockquote></blockquote>") == "> a\n\n> > b"


def test_heading_inside_a_quote_stays_quoted():
    """Every line of a quoted heading, its underline included, carries the "> " prefix."""
    body = from_markdown("> # Titre\n> texte").body
    lines = body.split("\n")
    assert all(line.startswith(">") for line in lines if line), body
    assert lines[:2] == ["> Titre", "> ====="], body


# ---------------------------------------------------------------- links and images


def test_links_are_numbered_and_listed():
    result = text_of_links(
        '<p>Voir <a href="https://a.example/">ce billet</a> et <a href="https://b.example/x">celui-ci</a>.</p>'
    )
    assert result == ("Voir ce billet [1] et celui-ci [2].", ["https://a.example/", "https://b.example/x"])


def test_repeated_link_gets_the_same_number():
    fragment = '<p><a href="https://a.example/">un</a> <a href="https://b.example/">deux</a> <a href="https://a.example/">encore</a></p>'
    assert text_of_links(fragment) == ("un [1] deux [2] encore [1]", ["https://a.example/", "https://b.example/"])


def test_link_whose_text_is_its_url_is_not_numbered():
    fragment = (
        '<p><a href="https://a.example/">https://a.example/</a> '
        '<a href="mailto:lettre@claudesuper.example.org">lettre@claudesuper.example.org</a> '
        '<a href="#notes">notes</a></p>'
    )
    assert text_of_links(fragment) == ("https://a.example/ lettre@claudesuper.example.org notes", [])
    autolink = from_markdown("Lien : <https://claudesuper.example.org/archive/>")
    assert (autolink.body, autolink.links) == ("Lien : https://claudesuper.example.org/archive/", [])


def test_markdown_links_are_absolute_in_the_list():
    result = from_markdown("Voir [les archives](/archive/) et [le flux](https://claudesuper.example.org/feed.xml).")
    assert result.body == "Voir les archives [1] et le flux [2]."
    assert result.links == ["https://claudesuper.example.org/archive/", "https://claudesuper.example.org/feed.xml"]


def test_images_become_their_alt_text():
    assert text_of('<p><img src="https://x.example/a.png" alt="Schéma du réseau"></p>') == "[Schéma du réseau]"
    assert text_of('<p>avant <img src="https://x.example/a.png" alt="">après</p>') == "avant après"
    assert from_markdown("![Logo](/logo.png)").body == "[Logo]"


# ---------------------------------------------------------------- headings


def test_headings_are_underlined_to_their_length():
    assert text_of("<h1>Titre</h1><p>x</p>") == "Titre\n=====\n\nx"
    assert text_of("<h2>Sous-titre</h2>") == "Sous-titre\n=========="
    assert text_of("<h3>Détail</h3><h4>Note</h4>") == "Détail\n------\n\nNote\n----"
    assert from_markdown("## L’acte d’achat au coeur du système\n\nTexte.").body == (
        "L’acte d’achat au coeur du système\n" + "=" * 34 + "\n\nTexte."
    )


def test_empty_heading_does_not_underline_the_previous_paragraph():
    assert text_of("<p>Un paragraphe.</p><h2></h2><p>Suite.</p>") == "Un paragraphe.\n\nSuite."
    assert from_markdown("Un paragraphe.\n\n##\n\nSuite.").body == "Un paragraphe.\n\nSuite."


def test_horizontal_rule_and_preformatted_text():
    assert text_of("<p>a</p><hr><p>b</p>") == "a\n\n----\n\nb"
    assert text_of("<pre><code>x  = 1\n  y = 2</code></pre>") == "    x  = 1\n      y = 2"  # verbatim, indented


# ---------------------------------------------------------------- property


_NO_MARKUP_NO_NEWLINE = st.characters(blacklist_categories=("Cs",), blacklist_characters="<>&\r\n")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(_NO_MARKUP_NO_NEWLINE, max_size=80))
@example("  Le blog\u00a0:  deux  espaces\t")
@example("\u00a0")
@example(" \t ")
def test_single_line_text_round_trips_through_a_paragraph(text):
    assert html_to_text(f"<p>{html.escape(text)}</p>").body == text.strip(" \t\n")

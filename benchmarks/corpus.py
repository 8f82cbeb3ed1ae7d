"""A deterministic corpus of French-like posts for the build benchmarks (issue 13).

Each post has about 617 words in paragraphs, a bulleted and a numbered list, a few links,
one image, quotations in « » with no-break spaces and an emoji or two.  The same post is
written three ways: for newsletter (YAML front matter with a permanent id and a zoned
date), for Pelican (its ``Key: value`` header) and for Hugo (YAML front matter).

    python benchmarks/corpus.py 1000 /tmp/corpus     # writes /tmp/corpus/{newsletter,pelican,hugo}/
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

WORDS = (
    "le la les un une des du de et ou mais donc car ni entreprise réseau social client marché "
    "collaboration innovation équipe projet stratégie numérique communauté valeur échange usage "
    "outil donnée plateforme confiance écoute partage expérience commerce magasin vendeur achat "
    "travail réunion décision manager salarié question réponse idée modèle croissance rôle "
    "très plus moins aussi encore toujours jamais déjà souvent parfois ensemble demain hier "
    "faire dire voir savoir pouvoir vouloir devoir prendre donner trouver penser croire rester "
    "grand petit nouveau premier dernier vrai simple difficile rapide lent ouvert fermé humain "
    "à côté après avant pendant depuis vers chez sans avec pour sur sous entre contre"
).split()
TAGS = ["social-business", "entreprise-2-0", "commerce", "management", "numérique", "réseaux", "clients", "outils"]
EMOJI = ["🙂", "🚀", "📈", "🤝", "💡", "🇫🇷"]
WORDS_PER_POST = 617
START = datetime(2010, 1, 4, 8, 30, tzinfo=timezone(timedelta(hours=1)))


@dataclass(frozen=True)
class Post:
    number: int
    slug: str
    title: str
    date: datetime
    tags: tuple[str, ...]
    body: str  # Markdown


def sentence(rng: random.Random, length: int) -> str:
    words = [rng.choice(WORDS) for _ in range(length)]
    words[0] = words[0].capitalize()
    return " ".join(words)


def make_post(number: int, seed: int = 2013) -> Post:
    """Post ``number`` of the corpus: the same text for the same number and seed, every time."""
    rng = random.Random(seed * 1_000_003 + number)
    blocks: list[str] = []
    words = 0
    while words < WORDS_PER_POST:
        kind = len(blocks) % 6
        if kind == 2:
            items = [sentence(rng, rng.randint(4, 9)) for _ in range(4)]
            blocks.append("\n".join(f"- {item}" for item in items))
            words += sum(len(i.split()) for i in items)
        elif kind == 4:
            items = [sentence(rng, rng.randint(4, 9)) for _ in range(3)]
            blocks.append("\n".join(f"{n}. {item}" for n, item in enumerate(items, start=1)))
            words += sum(len(i.split()) for i in items)
        else:
            parts = [sentence(rng, rng.randint(8, 18)) + "." for _ in range(rng.randint(2, 4))]
            quoted = sentence(rng, 4).lower()
            parts.insert(1, f"Comme dit un client\u00a0: «\u00a0{quoted}\u00a0»\u00a0!")
            link = f"[{rng.choice(WORDS)} {rng.choice(WORDS)}](https://example.org/{number}/{len(blocks)})"
            parts.append(f"Voir {link} {rng.choice(EMOJI)}.")
            paragraph = " ".join(parts)
            blocks.append(paragraph)
            words += len(paragraph.split())
        if len(blocks) == 3:
            blocks.append(f"![Illustration {number}](https://example.org/images/{number}.jpg)")
    title = sentence(rng, rng.randint(3, 7))
    tags = tuple(sorted(rng.sample(TAGS, 2)))
    date = START + timedelta(hours=13 * number)
    return Post(number, f"billet-{number:05d}", title, date, tags, "\n\n".join(blocks) + "\n")


def newsletter_text(post: Post) -> str:
    return (
        "---\n"
        f'title: "{post.title}"\n'
        f'id: "urn:uuid:00000000-0000-4000-8000-{post.number:012d}"\n'
        f'date: "{post.date.isoformat()}"\n'
        f"tags: [{', '.join(post.tags)}]\n"
        "---\n" + post.body
    )


def pelican_text(post: Post) -> str:
    return (
        f"Title: {post.title}\nDate: {post.date:%Y-%m-%d %H:%M}\nSlug: {post.slug}\n"
        f"Tags: {', '.join(post.tags)}\nAuthor: Claude Super\n\n" + post.body
    )


def hugo_text(post: Post) -> str:
    return (
        f'---\ntitle: "{post.title}"\ndate: {post.date.isoformat()}\nslug: {post.slug}\n'
        f"tags: [{', '.join(post.tags)}]\n---\n" + post.body
    )


def write_corpus(count: int, root: Path) -> dict[str, Path]:
    """Write ``count`` posts for each generator under ``root``; returns each one's content folder."""
    folders = {name: root / name for name in ("newsletter", "pelican", "hugo")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        post = make_post(number)
        (folders["newsletter"] / f"{post.slug}.md").write_text(newsletter_text(post), encoding="utf-8")
        (folders["pelican"] / f"{post.slug}.md").write_text(pelican_text(post), encoding="utf-8")
        (folders["hugo"] / f"{post.slug}.md").write_text(hugo_text(post), encoding="utf-8")
    return folders


if __name__ == "__main__":
    write_corpus(int(sys.argv[1]), Path(sys.argv[2]))

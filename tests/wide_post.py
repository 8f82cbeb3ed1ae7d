"""A post that tries to widen the email: a 120-column code block, a wide table with accented
content, long inline code and a large local image in a page bundle (issue 15)."""

from __future__ import annotations

from pathlib import Path

SLUG = "code-et-tableaux"
# Exactly 120 columns, without a space to break at in its last 50.
CODE_LINE = "def répartir(abonnés: list[str], lot: int = 500) -> list[list[str]]:  # lots_" + "x" * 43
WIDE_COLUMNS = ["Fournisseur", "Envoi groupé", "Clé d’idempotence", "Désabonnement en un clic", "Adresses accentuées"]
WIDE_ROWS = [
    ["Postmark", "500 messages par requête", "non documentée", "oui, en-têtes personnalisés", "à vérifier"],
    ["Mailgun", "1 000 destinataires", "aucune", "oui, via h:List-Unsubscribe", "selon le serveur"],
]
BODY = (
    f"""Voici du code, un tableau et une image : rien ne doit élargir le message.

```python
{CODE_LINE}
    return [abonnés[i : i + lot] for i in range(0, len(abonnés), lot)]  # chaque lot part sur une seule connexion SMTP
```

Appelez `newsletter.send(plan, confirm=True, batch_size=500, retry_policy="exponentielle-avec-gigue")` pour envoyer.

| Ville | Pays | Été |
|---|---|---|
| Besançon | France | 25 °C |
| Zürich | Suisse | 24 °C |

| {" | ".join(WIDE_COLUMNS)} |
|{"---|" * len(WIDE_COLUMNS)}
"""
    + "\n".join(f"| {' | '.join(row)} |" for row in WIDE_ROWS)
    + """

![Une grande photo de l’équipe](equipe.png)

Fin.
"""
)


def write_wide_post(content: Path) -> Path:
    """The bundle ``<content>/code-et-tableaux/`` with its index.md and a 1200×800 PNG."""
    from PIL import Image

    folder = content / SLUG
    folder.mkdir(parents=True)
    Image.new("RGB", (1200, 800), (40, 120, 200)).save(folder / "equipe.png")
    front = [
        "---", 'title: "Code et tableaux : l’e-mail tient sur un téléphone"', f"slug: {SLUG}",
        'id: "urn:uuid:5f0c6a52-3c1e-4f7e-9d55-6a1d1c0b7e15"', 'date: "2026-11-20T10:00:00+01:00"',
        'author: "Claude Super"', "---",
    ]  # fmt: skip
    path = folder / "index.md"
    path.write_text("\n".join(front) + "\n" + BODY, encoding="utf-8")
    return path

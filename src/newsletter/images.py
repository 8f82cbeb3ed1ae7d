"""Images in the email: explicit ``width`` and ``height`` from the file, ``alt`` always present.

The only importer of Pillow, which reads only an image's header for its size.  Mail clients
that ignore CSS (Outlook on Windows) size an image by its attributes alone, so a photo without
them is shown at its full pixel width and widens the message; the template's
``max-width: 100%; height: auto`` then scales it down on phones.  Only images that are local
(beside a page bundle's ``index.md``, or in the static folder) can be measured; others keep
what the post says.
"""

from __future__ import annotations

import html as html_escaping
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# The content column: the 600 px message less the template's 32 px padding on each side.
CONTENT_WIDTH = 536
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_KEPT = ("src", "alt", "title")


class _ImgAttributes(HTMLParser):
    def __init__(self, tag: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attributes: dict[str, str] = {}
        self.feed(tag)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes = {name: value or "" for name, value in attrs}

    handle_startendtag = handle_starttag


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` in pixels from the file's header, or None when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def local_file(src: str, roots: list[tuple[str, Path]]) -> Path | None:
    """The file an absolute image URL names under one of ``(URL prefix, folder)``; never outside it."""
    for prefix, folder in roots:
        if not src.startswith(prefix):
            continue
        relative = unquote(urlsplit(src[len(prefix) :]).path)
        try:
            candidate = (folder / relative).resolve()
            if candidate.is_relative_to(folder.resolve()) and candidate.is_file():
                return candidate
        except (OSError, ValueError):
            continue
    return None


def sized_images(html: str, roots: list[tuple[str, Path]], *, max_width: int = CONTENT_WIDTH) -> str:
    """Every ``<img>`` of sanitized ``html`` with ``alt`` and, when its file is local, ``width``
    (at most ``max_width``) and ``height`` in the file's proportions."""

    def sized(match: re.Match[str]) -> str:
        attributes = _ImgAttributes(match.group(0)).attributes
        kept = {name: attributes[name] for name in _KEPT if name in attributes}
        kept.setdefault("alt", "")
        path = local_file(kept.get("src", ""), roots)
        size = image_size(path) if path is not None else None
        if size is not None:
            width, height = size
            wanted = attributes.get("width", "")
            target = min(int(wanted) if wanted.isdigit() and int(wanted) > 0 else width, max_width)
            kept["width"], kept["height"] = str(target), str(max(1, round(height * target / width)))
        else:
            for name in ("width", "height"):
                if attributes.get(name, "").isdigit():
                    kept[name] = attributes[name]
            if kept.get("width", "").isdigit() and int(kept["width"]) > max_width:
                kept["width"] = str(max_width)
                kept.pop("height", None)  # unknown proportions: let the client keep them
        shown = " ".join(f'{name}="{html_escaping.escape(value, quote=True)}"' for name, value in kept.items())
        return f"<img {shown}>"

    return _IMG.sub(sized, html)

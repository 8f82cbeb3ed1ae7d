"""Email images get width/height from their file when it is local, alt always (issue 15)."""

from __future__ import annotations

from PIL import Image

from newsletter.images import CONTENT_WIDTH, sized_images

BASE = "https://example.org/un-post/"


def picture(folder, name, size):
    Image.new("RGB", size, (200, 30, 30)).save(folder / name)


def test_a_large_local_image_is_sized_to_the_column_in_its_proportions(tmp_path):
    picture(tmp_path, "grande.png", (1200, 800))
    html = sized_images(f'<p><img src="{BASE}grande.png" alt="Photo"></p>', [(BASE, tmp_path)])
    assert html == f'<p><img src="{BASE}grande.png" alt="Photo" width="{CONTENT_WIDTH}" height="357"></p>'


def test_a_small_image_keeps_its_size_and_an_author_width_is_capped(tmp_path):
    picture(tmp_path, "petite.png", (240, 120))
    assert 'width="240" height="120"' in sized_images(f'<img src="{BASE}petite.png" alt="">', [(BASE, tmp_path)])
    sized = sized_images(f'<img src="{BASE}petite.png" alt="" width="100">', [(BASE, tmp_path)])
    assert 'width="100" height="50"' in sized


def test_alt_is_always_present_and_remote_or_missing_files_are_not_measured(tmp_path):
    (tmp_path / "faux.png").write_text("not an image")
    html = sized_images(
        f'<img src="https://cdn.example.net/x.png"><img src="{BASE}absent.png"><img src="{BASE}faux.png" width="900">',
        [(BASE, tmp_path)],
    )
    assert html.count('alt=""') == 3 and "height" not in html
    assert f'width="{CONTENT_WIDTH}"' in html  # a too-wide author width is capped even unmeasured


def test_a_url_cannot_reach_outside_the_bundle(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    picture(tmp_path, "secret.png", (300, 300))
    html = sized_images(f'<img src="{BASE}..%2Fsecret.png" alt="x">', [(BASE, bundle)])
    assert "width" not in html

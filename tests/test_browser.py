"""The page in a real browser: Debian's Chromium driven by Playwright, against uvicorn on 127.0.0.1.

Upload a generated photo, wait for the cutout, read the shown image's pixels back
through a canvas, download it, switch to a colour background, and show an API error.
A screenshot of the finished page is saved under the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_server import PHOTO_HEIGHT, PHOTO_WIDTH, encode, make_photo, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                       "(apt-get install chromium, or `make browser`)"),
]

# Reads the <img> the page shows back through a canvas: its size and how many pixels
# are not fully opaque.
READ_SHOWN_IMAGE = """() => {
  const image = document.getElementById("cutout");
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let translucent = 0;
  for (let index = 3; index < pixels.length; index += 4) if (pixels[index] < 255) translucent += 1;
  return {width: canvas.width, height: canvas.height, translucent: translucent};
}"""


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    from petseg.models import create_model, save_model
    from petseg.server import create_app

    model_path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(create_model("unet_diy", width=8, image_size=64), model_path)
    with running_server(create_app(model_path)) as url:
        yield url


@pytest.fixture
def page(server_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server_url)
            yield page
        finally:
            browser.close()


def wait_for_state(page, state: str) -> None:
    page.wait_for_function(f"document.body.dataset.state === {state!r}")


def test_upload_shows_and_downloads_a_transparent_cutout(page, tmp_path):
    photo_path = tmp_path / "garden cat.jpg"
    photo_path.write_bytes(encode(make_photo(), "JPEG", quality=95))

    page.set_input_files("#file-input", str(photo_path))
    wait_for_state(page, "done")
    shown = page.evaluate(READ_SHOWN_IMAGE)
    assert (shown["width"], shown["height"]) == (PHOTO_WIDTH, PHOTO_HEIGHT)
    assert shown["translucent"] > 0, "the cutout on the page has no transparent pixels"
    assert page.is_visible("#original") and not page.is_visible("#error")

    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "garden cat-cutout.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    downloaded = Image.open(saved)
    assert downloaded.format == "PNG" and downloaded.mode == "RGBA"
    assert downloaded.size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    assert int((np.asarray(downloaded)[..., 3] < 255).sum()) == shown["translucent"]

    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert Image.open(tmp_path / "page.png").size[0] == 1100


def test_colour_background_gives_an_opaque_jpeg(page, tmp_path):
    photo_path = tmp_path / "dog.png"
    photo_path.write_bytes(encode(make_photo(seed=1), "PNG"))
    page.set_input_files("#file-input", str(photo_path))
    wait_for_state(page, "done")

    page.fill("#bg-color", "#3366cc")  # fires "change": selects Colour and asks again
    page.wait_for_function("document.getElementById('download').textContent.includes('JPEG')")
    wait_for_state(page, "done")
    shown = page.evaluate(READ_SHOWN_IMAGE)
    assert (shown["width"], shown["height"]) == (PHOTO_WIDTH, PHOTO_HEIGHT)
    assert shown["translucent"] == 0
    assert page.is_checked('input[name="background"][value="color"]')


def test_api_errors_show_as_messages(page, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("this is a shopping list, not a photo")
    page.set_input_files("#file-input", str(not_a_photo))
    wait_for_state(page, "error")
    message = page.text_content("#error")
    assert "not an image" in message and page.is_visible("#error")
    assert not page.is_visible("#download")


def test_drop_a_photo_on_the_page(page):
    upload = encode(make_photo(seed=2), "PNG")
    # Playwright cannot drag files from the OS, so the drop event is built in the page.
    page.evaluate(
        """(bytes) => {
          const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
          const transfer = new DataTransfer();
          transfer.items.add(file);
          const zone = document.getElementById("drop-zone");
          zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        list(upload),
    )
    wait_for_state(page, "done")
    assert page.evaluate(READ_SHOWN_IMAGE)["width"] == PHOTO_WIDTH
    assert page.get_attribute("#download", "download") == "dropped-cutout.png"

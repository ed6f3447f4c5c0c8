"""The page in a real browser: Debian's Chromium driven by Playwright, against uvicorn on 127.0.0.1.

Upload a generated photo, watch the busy indicator, wait for the cutout, read the shown
image's pixels back through a canvas, download it and its mask, switch to a colour
background or another edge, send several photos and download them as a ZIP, open the
picker by clicking the drop zone, use the page on a phone-sized screen, and show an
API error. A screenshot of the finished page is saved under the test's tmp dir.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_server import PHOTO_HEIGHT, PHOTO_WIDTH, encode, make_photo
from tests.test_server_load import SlowSegmenter, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 60_000
# Each cutout takes this much longer, so that the busy state lasts long enough to be seen.
SLOW_DOWN_S = 0.3
PHONE = {"width": 375, "height": 667}

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


class BlueDiscIsPet:
    """A backend that sees make_photo's disc (blue 150 on a blue-60 gradient) as the pet.

    An untrained network may call the whole photo pet, and a matted cutout of that is
    fully opaque: the page test needs a known pet and a known background.
    """

    name = "stub"

    def __init__(self, config):
        self.config = config

    def __call__(self, batch):
        pet = (batch[:, 2:3] > 0).astype(np.float32)  # normalised blue: the disc > 0 > the gradient
        return np.concatenate([0.9 * pet + 0.05, 0.9 * (1 - pet) + 0.05, np.full_like(pet, 0.05)], axis=1)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    from petseg.inference import Segmenter
    from petseg.models import create_model, save_model
    from petseg.server import create_app

    model_path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(create_model("unet_diy", width=8, image_size=64), model_path)
    segmenter = SlowSegmenter(Segmenter(BlueDiscIsPet(Segmenter.load(model_path).config)), delay=SLOW_DOWN_S)
    with running_server(create_app(segmenter=segmenter)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, viewport: dict):
    page = browser.new_page(viewport=viewport, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


@pytest.fixture
def page(browser, server_url):
    page = open_page(browser, server_url, {"width": 1100, "height": 760})
    yield page
    page.close()


def wait_for_state(page, state: str) -> None:
    page.wait_for_function(f"document.body.dataset.state === {state!r}")


def write_photo(folder: Path, name: str, seed: int = 0, **size) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(make_photo(seed=seed, **size), "PNG" if name.endswith(".png") else "JPEG"))
    return path


def save_download(page, selector: str, tmp_path: Path) -> Path:
    with page.expect_download() as download_info:
        page.click(selector)
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    return saved


def test_upload_shows_and_downloads_a_transparent_cutout(page, tmp_path):
    photo_path = tmp_path / "garden cat.jpg"
    photo_path.write_bytes(encode(make_photo(), "JPEG", quality=95))

    assert not page.is_visible("#busy")
    page.set_input_files("#file-input", str(photo_path))
    page.wait_for_selector("#busy", state="visible")
    assert page.get_attribute("#main", "aria-busy") == "true"
    wait_for_state(page, "done")
    assert not page.is_visible("#busy") and page.get_attribute("#main", "aria-busy") == "false"
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

    mask = Image.open(save_download(page, "#download-mask", tmp_path))
    assert mask.format == "PNG" and mask.mode == "L" and mask.size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    assert np.array_equal(np.asarray(mask), np.asarray(downloaded)[..., 3]), "the mask is not the cutout's alpha"
    assert (tmp_path / "garden cat-mask.png").exists()

    icon = page.evaluate(
        "fetch(document.querySelector('link[rel=icon]').href).then(r => [r.status, r.headers.get('content-type')])"
    )
    assert icon[0] == 200 and icon[1].startswith("image/svg+xml")

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


def test_clicking_anywhere_on_the_drop_zone_opens_the_picker(page, tmp_path):
    photo_path = write_photo(tmp_path, "picked.jpg")
    box = page.locator("#drop-zone").bounding_box()
    for target in ({"selector": "#limits"}, {"selector": "#drop-zone", "position": {"x": 4, "y": box["height"] - 4}}):
        with page.expect_file_chooser() as chooser_info:
            page.click(**target)
        chooser = chooser_info.value
        assert chooser.is_multiple()
    chooser.set_files(str(photo_path))
    wait_for_state(page, "done")
    assert page.get_attribute("#download", "download") == "picked-cutout.png"


def test_several_photos_download_as_a_zip(page, tmp_path):
    # Two photos whose names differ only in case, from different folders, one of another size,
    # one whose name is a path on Windows, one that is no photo.
    paths = [
        write_photo(tmp_path / "a", "cat.jpg", seed=1),
        write_photo(tmp_path / "b", "Cat.jpg", seed=2),
        write_photo(tmp_path, "tall dog.png", seed=3, height=150, width=50),
        write_photo(tmp_path, "..\\..\\evil.jpg", seed=4),
        tmp_path / "list.jpg",
    ]
    paths[-1].write_text("milk, eggs")
    page.set_input_files("#file-input", [str(path) for path in paths])
    wait_for_state(page, "done")
    assert page.locator("#gallery li").count() == 5
    assert page.locator("#gallery li.failed").count() == 1
    assert "list.jpg" in page.text_content("#error") and "not an image" in page.text_content("#error")

    archive = zipfile.ZipFile(save_download(page, "#download-zip", tmp_path))
    assert archive.testzip() is None  # every CRC checks out
    assert sorted(archive.namelist()) == ["Cat-cutout-2.png", "cat-cutout.png", "evil-cutout.png", "tall dog-cutout.png"]
    sizes = {name: Image.open(io.BytesIO(archive.read(name))).size for name in archive.namelist()}
    assert sizes["tall dog-cutout.png"] == (50, 150) and sizes["cat-cutout.png"] == (PHOTO_WIDTH, PHOTO_HEIGHT)
    assert all(Image.open(io.BytesIO(archive.read(name))).mode == "RGBA" for name in archive.namelist())

    page.click("#gallery li:nth-child(3) button")  # the tall dog goes to the panels
    assert page.get_attribute("#download", "download") == "tall dog-cutout.png"
    assert page.evaluate(READ_SHOWN_IMAGE)["height"] == 150


# Records the text fields of every form the page sends (Playwright cannot read bodies holding files).
SPY_ON_FORMS = """() => {
  window.sentForms = [];
  const send = window.fetch;
  window.fetch = (url, options) => {
    if (options && options.body instanceof FormData) {
      window.sentForms.push(Object.fromEntries([...options.body].filter(([, value]) => typeof value === "string")));
    }
    return send(url, options);
  };
}"""


def test_edge_choice_is_sent_only_when_changed(page, tmp_path):
    """The server's own default edge applies unless the person picks another (its effect: test_server.py)."""
    page.evaluate(SPY_ON_FORMS)
    page.set_input_files("#file-input", str(write_photo(tmp_path, "cat.png")))
    wait_for_state(page, "done")
    page.select_option("#alpha", "hard")
    page.wait_for_function("window.sentForms.length === 2 && document.body.dataset.state !== 'working'")
    page.select_option("#alpha", "matting")
    page.wait_for_function("window.sentForms.length === 3")
    first, hard, matting = page.evaluate("window.sentForms")
    assert "alpha" not in first and hard["alpha"] == "hard" and "alpha" not in matting
    assert first["mode"] == hard["mode"] == "rgba"


def test_phone_screen(browser, server_url, tmp_path):
    page = open_page(browser, server_url, PHONE)
    try:
        page.set_input_files("#file-input", str(write_photo(tmp_path, "cat.jpg")))
        wait_for_state(page, "done")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
        for control in ("#drop-zone", "#options label", "#alpha", "#bg-color", "#download", "#download-mask"):
            for box in (element.bounding_box() for element in page.query_selector_all(control)):
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (control, box)
        # The result is below the fold on a phone: the page scrolls it into view.
        page.wait_for_function(
            """() => { const box = document.getElementById("cutout").getBoundingClientRect();
                       return box.top >= 0 && box.bottom <= window.innerHeight; }"""
        )
        assert page.evaluate("window.scrollY") > 0
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    finally:
        page.close()


def test_busy_server_is_retried_after_retry_after(page, tmp_path):
    answered = []

    def first_busy(route):
        answered.append(route.request.url)
        if len(answered) == 1:
            route.fulfill(status=503, headers={"Retry-After": "1"}, content_type="application/json",
                          body='{"detail": "the server is busy (2 photos waiting); try again in 1 s"}')
        else:
            route.continue_()

    page.route("**/api/cutout", first_busy)
    page.set_input_files("#file-input", str(write_photo(tmp_path, "cat.jpg")))
    page.wait_for_function("document.getElementById('status').textContent.includes('busy')")
    wait_for_state(page, "done")
    assert len(answered) == 2 and not page.is_visible("#error")
    assert page.evaluate(READ_SHOWN_IMAGE)["width"] == PHOTO_WIDTH

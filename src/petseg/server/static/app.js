// The petseg page: pick or drop photos, send each to /api/cutout, show and offer the results.
// No build step: plain DOM code. Every error from the API is shown as its JSON "detail".
"use strict";

const elements = {
  main: document.getElementById("main"),
  dropZone: document.getElementById("drop-zone"),
  fileInput: document.getElementById("file-input"),
  limits: document.getElementById("limits"),
  modelInfo: document.getElementById("model-info"),
  bgColor: document.getElementById("bg-color"),
  alpha: document.getElementById("alpha"),
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  result: document.getElementById("result"),
  original: document.getElementById("original"),
  cutout: document.getElementById("cutout"),
  download: document.getElementById("download"),
  downloadMask: document.getElementById("download-mask"),
  downloadZip: document.getElementById("download-zip"),
  gallery: document.getElementById("gallery"),
};

// The server's default edge; left out of requests so the server's own default applies.
const DEFAULT_ALPHA = "matting";
// A busy server answers 503 with Retry-After: wait that long (capped), this many times.
const BUSY_RETRIES = 5;
const LONGEST_WAIT_S = 10;

let photos = []; // [{file, originalUrl, blob, url, error}] in the order they were picked
let shown = 0; // index of the photo in the panels
let maxUploadBytes = null;
let run = 0; // results of an older run are dropped when options or photos change

function setState(state, message = "") {
  document.body.dataset.state = state;
  elements.main.setAttribute("aria-busy", state === "working" ? "true" : "false");
  elements.status.textContent = message;
}

function showError(message) {
  elements.error.textContent = message;
  elements.error.hidden = false;
}

function clearError() {
  elements.error.hidden = true;
  elements.error.textContent = "";
}

function formatMegabytes(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}

// Names in the zip and downloads keep letters, digits and spaces of any script, never a path:
// "..\\..\\evil.jpg" or a right-to-left override must not reach someone's unzip.
function stemOf(file) {
  const stem = file.name.replace(/\.[^.]*$/, "").replace(/[^\p{L}\p{N} ._-]+/gu, "_").replace(/^[ ._]+|[ ._]+$/g, "");
  return stem.slice(0, 100) || "photo";
}

function downloadName(file, contentType) {
  return `${stemOf(file)}-cutout.${contentType === "image/jpeg" ? "jpg" : "png"}`;
}

function saveBlob(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

async function loadModelInfo() {
  try {
    const response = await fetch("api/model");
    if (!response.ok) return;
    const info = await response.json();
    maxUploadBytes = info.limits.max_upload_bytes;
    elements.limits.textContent = `Click anywhere here to pick photos. JPEG, PNG, WebP… up to ${formatMegabytes(maxUploadBytes)} each.`;
    elements.modelInfo.textContent = `model: ${info.config.architecture} · ${info.config.image_size}px`;
  } catch (error) {
    // The page still works without this; the server enforces its limits anyway.
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
  } catch (error) {
    // not JSON: fall through to the status line
  }
  return `the server answered ${response.status} ${response.statusText}`;
}

function cutoutForm(file, mask) {
  const form = new FormData();
  form.append("file", file, file.name);
  if (mask) {
    form.append("mode", "mask");
  } else if (document.querySelector('input[name="background"]:checked').value === "color") {
    form.append("mode", "color");
    form.append("bg", elements.bgColor.value);
  } else {
    form.append("mode", "rgba");
  }
  if (elements.alpha.value !== DEFAULT_ALPHA) form.append("alpha", elements.alpha.value);
  return form;
}

// POST with retries while the server says it is busy; resolves to a Blob or throws Error(message).
async function postPhoto(path, file, mask, onWait) {
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch(path, { method: "POST", body: cutoutForm(file, mask) });
    } catch (error) {
      throw new Error(`could not reach the server (${error.message})`);
    }
    if (response.ok) return response.blob();
    if (response.status === 503 && attempt < BUSY_RETRIES) {
      const seconds = Math.min(Number(response.headers.get("Retry-After")) || 1, LONGEST_WAIT_S);
      onWait(seconds);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      continue;
    }
    throw new Error(await errorMessage(response));
  }
}

function isInView(element) {
  const box = element.getBoundingClientRect();
  return box.top >= 0 && box.bottom <= window.innerHeight;
}

// Shows photo `index` in the panels; resolves once its cutout (if any) is on screen.
function showPhoto(index, scroll = false) {
  const photo = photos[index];
  if (!photo) return Promise.resolve();
  shown = index;
  elements.original.hidden = false;
  elements.original.src = photo.originalUrl;
  for (const [position, item] of [...elements.gallery.children].entries()) {
    item.classList.toggle("selected", position === index);
  }
  if (!photo.blob) {
    elements.cutout.hidden = true;
    elements.download.hidden = true;
    elements.downloadMask.hidden = true;
    return Promise.resolve();
  }
  const shownOnScreen = new Promise((resolve) => {
    elements.cutout.onload = () => {
      if (scroll && !isInView(elements.cutout)) elements.cutout.scrollIntoView({ block: "center", behavior: "smooth" });
      resolve();
    };
    elements.cutout.onerror = resolve;
  });
  elements.cutout.src = photo.url;
  elements.cutout.hidden = false;
  elements.download.href = photo.url;
  elements.download.download = downloadName(photo.file, photo.blob.type);
  elements.download.textContent = `Download ${photo.blob.type === "image/jpeg" ? "JPEG" : "PNG"}`;
  elements.download.hidden = false;
  elements.downloadMask.hidden = false;
  return shownOnScreen;
}

function renderGallery() {
  elements.gallery.replaceChildren();
  elements.gallery.hidden = photos.length < 2;
  photos.forEach((photo, index) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumbnail checkerboard";
    button.title = photo.error ? `${photo.file.name}: ${photo.error}` : photo.file.name;
    const image = document.createElement("img");
    image.alt = photo.file.name;
    image.src = photo.url || photo.originalUrl;
    button.appendChild(image);
    button.addEventListener("click", () => showPhoto(index, true));
    item.appendChild(button);
    item.classList.toggle("failed", Boolean(photo.error));
    elements.gallery.appendChild(item);
  });
}

async function cutOutAll() {
  if (!photos.length) return;
  const thisRun = ++run;
  clearError();
  elements.downloadZip.hidden = true;
  for (const photo of photos) {
    if (photo.url) URL.revokeObjectURL(photo.url);
    Object.assign(photo, { blob: null, url: null, error: null });
  }
  showPhoto(Math.min(shown, photos.length - 1));
  for (const [index, photo] of photos.entries()) {
    const counter = photos.length > 1 ? ` ${index + 1} of ${photos.length}` : "";
    setState("working", `Cutting out the pet${counter}…`);
    try {
      const blob = await postPhoto("api/cutout", photo.file, false, (seconds) => {
        if (thisRun === run) setState("working", `The server is busy; trying again in ${seconds} s…`);
      });
      if (thisRun !== run) return;
      Object.assign(photo, { blob, url: URL.createObjectURL(blob) });
    } catch (error) {
      if (thisRun !== run) return;
      photo.error = error.message;
    }
    renderGallery();
    if (index === shown) await showPhoto(index, true);
    if (thisRun !== run) return;
  }
  const failed = photos.filter((photo) => photo.error);
  const done = photos.length - failed.length;
  elements.downloadZip.hidden = done < 2;
  if (failed.length) {
    const lines = failed.map((photo) => (photos.length > 1 ? `${photo.file.name}: ${photo.error}` : photo.error));
    showError(`Cutout failed: ${lines.join(" · ")}`);
  }
  if (!done) {
    setState("error");
  } else {
    setState("done", done > 1 ? `Done: ${done} cutouts. Download one, or all as a ZIP.` : "Done. Download the cutout or change the background.");
  }
}

function usePhotos(fileList) {
  const files = [...(fileList || [])];
  if (!files.length) return;
  const tooBig = maxUploadBytes === null ? [] : files.filter((file) => file.size > maxUploadBytes);
  const accepted = files.filter((file) => !tooBig.includes(file));
  for (const photo of photos) {
    URL.revokeObjectURL(photo.originalUrl);
    if (photo.url) URL.revokeObjectURL(photo.url);
  }
  photos = accepted.map((file) => ({ file, originalUrl: URL.createObjectURL(file), blob: null, url: null, error: null }));
  shown = 0;
  renderGallery();
  if (tooBig.length) {
    const names = tooBig.map((file) => `${file.name} (${formatMegabytes(file.size)})`).join(", ");
    const message = `Over the server's limit of ${formatMegabytes(maxUploadBytes)}: ${names}.`;
    if (!photos.length) {
      showError(message);
      setState("error");
      return;
    }
    cutOutAll().then(() => showError(elements.error.hidden ? message : `${elements.error.textContent} · ${message}`));
    return;
  }
  cutOutAll();
}

async function downloadMask() {
  const photo = photos[shown];
  if (!photo) return;
  clearError();
  setState("working", "Making the mask…");
  try {
    const blob = await postPhoto("api/mask", photo.file, true, () => {});
    saveBlob(blob, `${stemOf(photo.file)}-mask.png`);
    setState("done", "Mask downloaded.");
  } catch (error) {
    showError(`Mask failed: ${error.message}`);
    setState("error");
  }
}

async function downloadZip() {
  const used = new Set();
  const entries = [];
  for (const photo of photos.filter((item) => item.blob)) {
    let name = downloadName(photo.file, photo.blob.type);
    // Compared without case: Cat.jpg and cat.jpg would overwrite each other on macOS and Windows.
    for (let copy = 2; used.has(name.toLowerCase()); copy += 1) name = name.replace(/(-\d+)?(\.\w+)$/, `-${copy}$2`);
    used.add(name.toLowerCase());
    entries.push({ name, data: new Uint8Array(await photo.blob.arrayBuffer()) });
  }
  saveBlob(makeZip(entries), "petseg-cutouts.zip");
}

// A file the browser cannot show (the API will say why) leaves no broken-image icon.
elements.original.addEventListener("error", () => {
  elements.original.hidden = true;
});

elements.fileInput.addEventListener("change", () => {
  usePhotos(elements.fileInput.files);
  elements.fileInput.value = ""; // picking the same photos again still counts as a change
});

// Anywhere on the drop zone opens the picker; the label and the input open it themselves.
elements.dropZone.addEventListener("click", (event) => {
  if (!event.target.closest("label, input")) elements.fileInput.click();
});
elements.dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    elements.fileInput.click();
  }
});
for (const name of ["dragenter", "dragover"]) {
  elements.dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    elements.dropZone.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  elements.dropZone.addEventListener(name, () => elements.dropZone.classList.remove("dragging"));
}
elements.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  usePhotos(event.dataTransfer.files);
});

for (const input of document.querySelectorAll('input[name="background"]')) {
  input.addEventListener("change", cutOutAll);
}
elements.bgColor.addEventListener("change", () => {
  document.querySelector('input[name="background"][value="color"]').checked = true;
  cutOutAll();
});
elements.alpha.addEventListener("change", cutOutAll);
elements.downloadMask.addEventListener("click", downloadMask);
elements.downloadZip.addEventListener("click", downloadZip);

loadModelInfo();

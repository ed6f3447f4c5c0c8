// The petseg page: pick or drop a photo, send it to /api/cutout, show and offer the result.
// No build step: plain DOM code. Every error from the API is shown as its JSON "detail".
"use strict";

const elements = {
  dropZone: document.getElementById("drop-zone"),
  fileInput: document.getElementById("file-input"),
  limits: document.getElementById("limits"),
  modelInfo: document.getElementById("model-info"),
  bgColor: document.getElementById("bg-color"),
  refine: document.getElementById("refine"),
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  original: document.getElementById("original"),
  cutout: document.getElementById("cutout"),
  download: document.getElementById("download"),
};

let currentFile = null;
let maxUploadBytes = null;
let requestNumber = 0; // answers to older requests are dropped when options change quickly
let objectUrls = { original: null, cutout: null };

function setState(state, message = "") {
  document.body.dataset.state = state;
  elements.status.textContent = message;
}

function showError(message) {
  elements.error.textContent = message;
  elements.error.hidden = false;
  setState("error");
}

function clearError() {
  elements.error.hidden = true;
  elements.error.textContent = "";
}

function replaceObjectUrl(slot, blob) {
  if (objectUrls[slot]) URL.revokeObjectURL(objectUrls[slot]);
  objectUrls[slot] = blob ? URL.createObjectURL(blob) : null;
  return objectUrls[slot];
}

function formatMegabytes(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}

function backgroundChoice() {
  return document.querySelector('input[name="background"]:checked').value;
}

async function loadModelInfo() {
  try {
    const response = await fetch("api/model");
    if (!response.ok) return;
    const info = await response.json();
    maxUploadBytes = info.limits.max_upload_bytes;
    elements.limits.textContent = `JPEG, PNG, WebP… up to ${formatMegabytes(maxUploadBytes)}`;
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

function downloadName(file, contentType) {
  const stem = file.name.replace(/\.[^.]*$/, "") || "photo";
  return `${stem}-cutout.${contentType === "image/jpeg" ? "jpg" : "png"}`;
}

async function requestCutout() {
  if (!currentFile) return;
  const thisRequest = ++requestNumber;
  const form = new FormData();
  form.append("file", currentFile, currentFile.name);
  if (backgroundChoice() === "color") {
    form.append("mode", "color");
    form.append("bg", elements.bgColor.value);
  } else {
    form.append("mode", "rgba");
  }
  form.append("refine", elements.refine.checked ? "true" : "false");
  clearError();
  setState("working", "Cutting out the pet…");

  let response;
  try {
    response = await fetch("api/cutout", { method: "POST", body: form });
  } catch (error) {
    if (thisRequest === requestNumber) showError(`Could not reach the server (${error.message}).`);
    return;
  }
  if (thisRequest !== requestNumber) return;
  if (!response.ok) {
    const message = await errorMessage(response);
    if (thisRequest === requestNumber) showError(`Cutout failed: ${message}`);
    return;
  }
  const blob = await response.blob();
  if (thisRequest !== requestNumber) return;
  const url = replaceObjectUrl("cutout", blob);
  elements.cutout.onload = () => {
    if (thisRequest === requestNumber) setState("done", "Done. Download the cutout or change the background.");
  };
  elements.cutout.src = url;
  elements.cutout.hidden = false;
  elements.download.href = url;
  elements.download.download = downloadName(currentFile, blob.type);
  elements.download.textContent = `Download ${blob.type === "image/jpeg" ? "JPEG" : "PNG"}`;
  elements.download.hidden = false;
}

function useFile(file) {
  if (!file) return;
  if (maxUploadBytes !== null && file.size > maxUploadBytes) {
    showError(`${file.name} is ${formatMegabytes(file.size)}, over the server's limit of ${formatMegabytes(maxUploadBytes)}.`);
    return;
  }
  currentFile = file;
  elements.original.src = replaceObjectUrl("original", file);
  elements.original.hidden = false;
  elements.cutout.hidden = true;
  elements.download.hidden = true;
  requestCutout();
}

// A file the browser cannot show (the API will say why) leaves no broken-image icon.
elements.original.addEventListener("error", () => {
  elements.original.hidden = true;
});

elements.fileInput.addEventListener("change", () => useFile(elements.fileInput.files[0]));

elements.dropZone.addEventListener("click", (event) => {
  if (event.target === elements.dropZone) elements.fileInput.click();
});
elements.dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") elements.fileInput.click();
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
  useFile(event.dataTransfer.files[0]);
});

for (const input of document.querySelectorAll('input[name="background"]')) {
  input.addEventListener("change", requestCutout);
}
elements.bgColor.addEventListener("change", () => {
  document.querySelector('input[name="background"][value="color"]').checked = true;
  requestCutout();
});
elements.refine.addEventListener("change", requestCutout);

loadModelInfo();

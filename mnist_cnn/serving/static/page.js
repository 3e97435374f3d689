// The drawing page: draw on the pad (mouse, pen or touch) or drop/choose an image file; each change is sent
// to POST /predict and the answer shown: the digit, its probability, the ten probabilities and the 28×28 input.
// #result's data-state is "idle", "drawing", "waiting" or "done" (the newest request answered); its data-answers
// counts the answers shown.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const result = document.getElementById("result");
const keyField = document.getElementById("key-field");
const keyInput = document.getElementById("key");
const STROKE = 20; // pixels on the 280-pixel pad: about MNIST's stroke width once scaled to 28 pixels
const SETTLE_MS = 120; // a new stroke within this time replaces the request that would have been sent
// The drawing is sent reduced to a quarter of the pad's side: a 70-pixel PNG decodes in a tenth of the time of a
// 280-pixel one, and holds what the server keeps of a drawing anyway (it reduces a clean image until its ink spans
// about 40 pixels before fitting it into MNIST's 20).
const SENT_SIDE = 70;
const sentCopy = document.createElement("canvas");
sentCopy.width = sentCopy.height = SENT_SIDE;
let sent = 0; // requests sent; only the answer to the newest is shown
let timer = null;
let last = null;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  clearTimeout(timer);
  sent += 1; // an answer still on its way is for the drawing before this stroke
  result.dataset.state = "drawing";
  last = point(event);
  ink.fillStyle = "#000";
  ink.beginPath();
  ink.arc(last[0], last[1], STROKE / 2, 0, 2 * Math.PI);
  ink.fill();
});

pad.addEventListener("pointermove", (event) => {
  if (last === null) return;
  const next = point(event);
  ink.strokeStyle = "#000";
  ink.lineWidth = STROKE;
  ink.lineCap = "round";
  ink.beginPath();
  ink.moveTo(last[0], last[1]);
  ink.lineTo(next[0], next[1]);
  ink.stroke();
  last = next;
});

function endStroke() {
  if (last === null) return;
  last = null;
  result.dataset.state = "waiting";
  clearTimeout(timer);
  timer = setTimeout(() => predict(jsonBody(reducedDrawing())), SETTLE_MS);
}

function reducedDrawing() {
  const copy = sentCopy.getContext("2d");
  copy.imageSmoothingQuality = "high";
  copy.drawImage(pad, 0, 0, SENT_SIDE, SENT_SIDE);
  return sentCopy.toDataURL("image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearTimeout(timer);
  sent += 1; // an answer still on its way is for a drawing that is gone
  clearPad();
  showAnswer(null);
  result.dataset.state = "idle";
});

function jsonBody(dataUrl) {
  return { body: JSON.stringify({ images: [dataUrl] }), type: "application/json" };
}

function useFile(file) {
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  predict({ body: form, type: null });
  const url = URL.createObjectURL(file); // show the file on the pad, fitted, on white
  const image = new Image();
  image.onload = () => {
    clearPad();
    const scale = Math.min(pad.width / image.width, pad.height / image.height);
    const width = image.width * scale, height = image.height * scale;
    ink.drawImage(image, (pad.width - width) / 2, (pad.height - height) / 2, width, height);
    URL.revokeObjectURL(url);
  };
  image.src = url;
}

document.getElementById("file").addEventListener("change", (event) => useFile(event.target.files[0]));
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dropping");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dropping");
  useFile(event.dataTransfer.files[0]);
});

async function predict({ body, type }) {
  const number = ++sent;
  result.dataset.state = "waiting";
  const headers = type ? { "Content-Type": type } : {};
  if (keyInput.value) headers["X-API-Key"] = keyInput.value;
  let answer;
  try {
    const response = await fetch("/predict?include_input=true", { method: "POST", headers, body });
    answer = await response.json();
    if (response.status === 401) keyField.hidden = false;
    if (!response.ok) throw new Error(answer.error || response.statusText);
  } catch (error) {
    if (number === sent) showError(error.message);
    return;
  }
  if (number === sent) showAnswer(answer.predictions[0]);
}

function showError(message) {
  showAnswer(null);
  document.getElementById("error").textContent = message;
  answered();
}

function answered() {
  result.dataset.state = "done";
  result.dataset.answers = Number(result.dataset.answers || 0) + 1;
}

function showAnswer(prediction) {
  document.getElementById("error").textContent = "";
  document.getElementById("digit").textContent = prediction ? prediction.label : "?";
  document.getElementById("probability").textContent = prediction ? `${(100 * prediction.probability).toFixed(1)} %` : "";
  document.getElementById("uncertain").hidden = !(prediction && prediction.uncertain === true);
  const bars = document.getElementById("bars");
  bars.replaceChildren();
  for (let digit = 0; digit < 10; digit++) {
    const p = prediction ? prediction.probabilities[digit] : 0;
    const row = document.createElement("li");
    row.className = prediction && digit === prediction.label ? "top" : "";
    row.innerHTML = `<span>${digit}</span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    row.querySelector(".fill").style.width = `${100 * p}%`;
    row.querySelector(".value").textContent = prediction ? `${(100 * p).toFixed(1)} %` : "";
    bars.append(row);
  }
  const seen = document.getElementById("seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  (prediction && prediction.input ? prediction.input.flat() : new Array(784).fill(0)).forEach((value, i) => {
    image.data.set([value, value, value, 255], 4 * i);
  });
  seen.putImageData(image, 0, 0);
  if (prediction) answered();
}

async function describeServer() {
  const health = await (await fetch("/health")).json();
  document.getElementById("model").textContent = `${health.model} · ${health.backend}`;
  keyField.hidden = !health.api_key_required;
}

clearPad();
showAnswer(null);
describeServer();

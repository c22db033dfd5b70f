// Draw page: a canvas (mouse or touch), a run picker, the top-3 after each stroke and the 28x28 frame seen.
"use strict";

let runs = [];

function current() { return runs.find(r => r.name === document.getElementById("run").value); }

async function predict(dataUrl) {
  const out = document.getElementById("result");
  const run = current();
  if (!run) return;
  const data = await api("/api/predict", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ run: run.name, image: dataUrl }) });
  if (data.error) {
    out.replaceChildren(el("p", { class: "error", id: "predict-error" }, data.error));
    return;
  }
  const best = data.top[0];
  out.replaceChildren(
    el("p", {}, "prediction: ", el("strong", { id: "prediction", "data-class": best.class }, best.name)),
    el("ol", { class: "top3", id: "top3" }, data.top.map(t => el("li", { "data-class": t.class },
      `${t.name} — ${(t.probability * 100).toFixed(1)}%`))),
    el("div", { class: "frame" }, el("p", { class: "muted" }, "the 28x28 input the network saw:"),
      el("img", { id: "frame", src: data.frame, alt: "28x28 network input" })));
}

function setupCanvas(canvas) {
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false, last = null;
  const point = (e) => { const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  const line = (a, b) => { ctx.strokeStyle = "#000"; ctx.lineWidth = canvas.width / 14; ctx.lineCap = "round";
    ctx.lineJoin = "round"; ctx.beginPath(); ctx.moveTo(...a); ctx.lineTo(...b); ctx.stroke(); };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; last = point(e); line(last, last);
    canvas.setPointerCapture(e.pointerId); e.preventDefault(); });
  canvas.addEventListener("pointermove", (e) => { if (!drawing) return; const p = point(e); line(last, p); last = p; e.preventDefault(); });
  const end = () => { if (!drawing) return; drawing = false; predict(canvas.toDataURL("image/png")); };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return () => { clear(); document.getElementById("result").replaceChildren(); };
}

function showInput() {
  const run = current();
  const fashion = run && run.dataset !== "mnist";
  document.getElementById("draw-box").hidden = !!fashion;
  document.getElementById("upload-box").hidden = !fashion;
  document.getElementById("result").replaceChildren();
}

async function main() {
  const app = document.getElementById("app");
  document.body.prepend(nav("/draw"));
  const data = await api("/api/runs");
  // the best digit readers first: MNIST runs by test accuracy, then the others
  runs = (data.runs || []).filter(r => r.status === "complete").sort((a, b) =>
    (b.dataset === "mnist") - (a.dataset === "mnist") || (b.test_accuracy || 0) - (a.test_accuracy || 0));
  const wanted = new URLSearchParams(location.search).get("run");
  const pick = el("select", { id: "run", onchange: showInput }, runs.map(r => el("option", { value: r.name,
    selected: r.name === wanted ? "selected" : null }, `${r.name} (${r.dataset}, test acc ${fmt(r.test_accuracy)})`)));
  const canvas = el("canvas", { id: "canvas", width: 280, height: 280 });
  const upload = el("input", { type: "file", id: "upload", accept: "image/png,image/jpeg,image/gif,image/bmp",
    onchange: (e) => { const f = e.target.files[0]; if (!f) return; const reader = new FileReader();
      reader.onload = () => predict(reader.result); reader.readAsDataURL(f); } });
  add(app, el("h1", {}, "Draw a digit"),
    runs.length ? el("div", { class: "filters" }, el("label", { for: "run" }, "run: "), pick) :
      el("p", { class: "error" }, "no complete run to predict with"),
    el("div", { class: "cards" },
      el("div", { class: "card", id: "draw-box" }, canvas, el("div", {}, el("button", { id: "clear" }, "clear"),
        el("span", { class: "muted" }, " draw with the mouse or a finger; each stroke is predicted"))),
      el("div", { class: "card", id: "upload-box", hidden: "hidden" }, el("p", {}, "Fashion-MNIST run: upload a photo of a garment"), upload),
      el("div", { class: "card", id: "result" })));
  const clear = setupCanvas(canvas);
  document.getElementById("clear").addEventListener("click", clear);
  showInput();
}
main();

// Run page: live curves (server-sent events), status and ETA, summary, scores, confusion matrix.
"use strict";

const NAME = decodeURIComponent(location.pathname.replace(/^\/run\//, ""));
const ENC = encodeURIComponent(NAME);
let history = {};

function drawCurves() {
  const box = document.getElementById("curves");
  const h = history, n = (h.loss || []).length;
  const onTest = (window.RUN && RUN.metrics && RUN.metrics.validation === "test");
  const val = onTest ? "test (as validation)" : "validation";
  const planned = (window.RUN && RUN.epochs) || 0;
  box.replaceChildren(
    lineChart([{ name: "training loss", values: h.loss || [] },
               { name: `${val} loss`, values: h.val_loss || [], dash: "5 3" }],
              { title: "loss per epoch", id: "chart-loss", epochs: planned }),
    lineChart([{ name: "training accuracy", values: h.accuracy || [] },
               { name: `${val} accuracy`, values: h.val_accuracy || [], dash: "5 3" }],
              { title: "accuracy per epoch", id: "chart-accuracy", epochs: planned }));
  box.setAttribute("data-epochs", n);
}

function showProgress(p) {
  const node = document.getElementById("progress");
  const parts = [el("span", { class: "status-" + p.status, id: "status" }, p.status),
    ` epoch ${fmt(p.epochs_done)} of ${fmt(p.epochs)}`];
  if (p.status === "running") parts.push(` · ETA ${p.eta_seconds === null ? "after the first epoch" : duration(p.eta_seconds)}`);
  if (p.updated) parts.push(el("span", { class: "muted" }, ` · status updated ${p.updated}`));
  if (p.error) parts.push(el("div", { class: "error" }, p.error));
  node.replaceChildren(...parts);
}

function follow(after) {
  const source = new EventSource(`/api/runs/${ENC}/events?after=${after}`);
  source.addEventListener("reset", () => { history = {}; drawCurves(); });
  source.addEventListener("epoch", (e) => {
    const row = JSON.parse(e.data);
    for (const [k, v] of Object.entries(row)) if (k !== "epoch") (history[k] = history[k] || []).push(v);
    drawCurves();
  });
  source.addEventListener("status", (e) => showProgress(JSON.parse(e.data)));
  source.addEventListener("end", () => source.close());
}

function summaryBlock(s, text) {
  if (!s) return text ? el("pre", {}, text) : el("p", { class: "muted" }, "no summary (config unreadable)");
  return el("div", {},
    el("table", { id: "summary" },
      el("tr", {}, ["layer", "type", "output shape", "activation", "parameters", "how they are counted"].map(h => el("th", {}, h))),
      s.layers.map(l => el("tr", {}, el("td", {}, l.name), el("td", {}, l.kind), el("td", {}, `(${l.output_shape.join(", ")})`),
        el("td", {}, l.activation || ""), el("td", { class: "num" }, fmt(l.params)), el("td", {}, l.formula))),
      el("tr", {}, el("th", { colspan: 4 }, "total"), el("th", { class: "num" }, fmt(s.params)), el("th", {}, `optimizer: ${s.optimizer}`))));
}

function scoresBlock(m) {
  if (m.test_accuracy === undefined) return el("p", { class: "muted" }, "test scores come when the run completes");
  const items = [["test accuracy", m.test_accuracy], ["test loss", m.test_loss], ["macro F1", m.f1_macro],
    ["parameters", m.params], ["lowest val loss at epoch", m.best_epoch], ["validation", m.validation],
    ["train time", m.train_seconds === undefined ? null : duration(m.train_seconds)], ["device", m.device]];
  return el("div", { class: "cards", id: "metrics" }, items.filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => el("div", { class: "card" }, el("div", { class: "muted" }, k), el("strong", {}, fmt(v)))));
}

function perClassBlock(m) {
  if (!m.per_class) return el("p", { class: "muted" }, "no per-class scores (run not complete)");
  const bar = v => el("span", {}, el("span", { class: "bar", style: null }), fmt(v, 3));
  const table = el("table", { id: "per-class" }, el("tr", {}, ["class", "precision", "recall", "F1", "test images"].map(h => el("th", {}, h))),
    m.per_class.map(c => el("tr", {}, el("td", {}, className(c.class, c.name)), el("td", { class: "num" }, fmt(c.precision, 3)),
      el("td", { class: "num" }, fmt(c.recall, 3)), el("td", { class: "num" }, bar(c.f1)), el("td", { class: "num" }, fmt(c.support)))));
  table.querySelectorAll(".bar").forEach((b, i) => { b.style.width = `${Math.round(m.per_class[i].f1 * 80)}px`; b.style.marginRight = "0.4em"; });
  return table;
}

async function showCell(t, p, cell) {
  document.querySelectorAll(".confusion td.selected").forEach(c => c.classList.remove("selected"));
  cell.classList.add("selected");
  const box = document.getElementById("examples");
  box.replaceChildren(el("p", { class: "muted" }, "loading..."));
  const data = await api(`/api/runs/${ENC}/examples?true=${t}&predicted=${p}&limit=24`);
  if (data.error) { box.replaceChildren(el("p", { class: "error" }, data.error)); return; }
  const title = el("h3", {}, `true ${data.true_name}, predicted ${data.predicted_name}: ${data.count} test images` +
    (data.count > data.images.length ? ` (the ${data.images.length} most confident shown)` : ""));
  box.replaceChildren(title, el("div", { class: "examples" }, data.images.map(im => el("div", { class: "example", "data-test-index": im.test_index },
    el("img", { src: im.image, alt: `test image ${im.test_index}` }), el("div", {}, `#${im.test_index}`),
    im.top.map(t => el("div", {}, `${t.name}: ${(t.probability * 100).toFixed(1)}%`))))));
}

function confusionBlock(m) {
  if (!m.confusion) return el("p", { class: "muted" }, "no confusion matrix (run not complete)");
  const names = m.class_names, cm = m.confusion;
  const table = el("table", { class: "confusion", id: "confusion" },
    el("tr", {}, el("th", {}, "true \\ predicted"), names.map((n, j) => el("th", { title: n }, String(j)))),
    cm.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      return el("tr", {}, el("th", {}, className(i, names[i])), row.map((v, j) => {
        const td = el("td", { "data-true": i, "data-predicted": j, title: `true ${names[i]}, predicted ${names[j]}: ${v}`,
          onclick: (e) => showCell(i, j, e.currentTarget) }, v);
        const share = v / total;
        td.style.background = i === j ? `rgba(47,111,219,${0.1 + 0.6 * share})` : (v ? `rgba(217,45,32,${Math.min(0.7, 0.08 + 4 * share)})` : "#fff");
        return td;
      }));
    }));
  return el("div", {}, table, el("p", { class: "muted" }, "Click a cell to see its test images, most confident first."));
}

async function main() {
  const app = document.getElementById("app");
  document.body.prepend(nav(""));
  const data = await api(`/api/runs/${ENC}`);
  if (data.error) { app.append(el("h1", {}, NAME), el("p", { class: "error" }, data.error)); return; }
  window.RUN = data;
  history = data.history || {};
  add(app, el("h1", {}, data.name),
    el("p", {}, `${data.experiment} · ${data.dataset} · ${data.features} · ${data.model} · ${data.optimizer} · batch ${fmt(data.batch_size)} · seed ${fmt(data.seed)}`),
    el("p", { id: "progress" }),
    data.problems.length ? el("p", { class: "problems" }, "problems: " + data.problems.join("; ")) : null,
    el("div", { class: "cards", id: "curves" }),
    el("h2", {}, "Scores"), scoresBlock(data.metrics),
    el("h2", {}, "Confusion matrix (test set)"), confusionBlock(data.metrics), el("div", { id: "examples" }),
    el("h2", {}, "Per-class precision, recall, F1"), perClassBlock(data.metrics),
    el("h2", {}, "Summary"), summaryBlock(data.summary, data.summary_text),
    data.can_predict ? el("p", {}, el("a", { href: "/draw?run=" + ENC }, "Draw a digit for this run →")) : null);
  showProgress(data.progress);
  drawCurves();
  follow((data.history.loss || []).length);
}
main();

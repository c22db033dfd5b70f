// Compare page: pick runs, overlay their validation curves, show `mnistlab compare`'s table and verdicts.
"use strict";

async function compareRuns(names, out) {
  out.replaceChildren(el("p", { class: "muted" }, "comparing..."));
  const query = names.map(n => "run=" + encodeURIComponent(n)).join("&");
  history.replaceState(null, "", "/compare?" + query);
  const data = await api("/api/compare?" + query);
  if (data.error) { out.replaceChildren(el("p", { class: "error" }, data.error)); return; }
  const curves = Object.entries(data.curves);
  const series = key => curves.map(([name, c], k) => ({ name, values: c[key] || [], color: PALETTE[k % PALETTE.length] }));
  const rows = data.configurations.map(r => el("tr", {}, el("td", {}, r.configuration), el("td", {}, r.differences || "-"),
    el("td", { class: "num" }, fmt(r.runs)), el("td", { class: "num" }, fmt(r.params)), el("td", {}, r.test_loss.text),
    el("td", {}, r.test_accuracy.text), el("td", {}, r.f1_macro.text), el("td", {}, r.best_epoch.join(", ")),
    el("td", { class: "num" }, fmt(r.train_seconds, 1))));
  const byQuestion = q => data.verdicts.filter(v => v.question === q);
  const verdicts = ["configurations", "networks"].filter(q => byQuestion(q).length).map(q => el("div", {},
    el("p", {}, el("strong", {}, data.questions[q])),
    el("ul", {}, byQuestion(q).map(v => el("li", {},
      `${v.metric}: ${q === "configurations" ? `${v.a} vs ${v.b}` : `${v.a_run} vs ${v.b_run}`}: `,
      v.test ? `effect ${v.effect} (${v.test}, p=${v.p.toPrecision(3)}, Holm p=${v.p_holm.toPrecision(3)}): ` : "",
      el("strong", {}, v.verdict))))));
  out.replaceChildren();
  add(out,
    el("div", { class: "cards", id: "overlay" },
      lineChart(series("val_loss"), { title: "validation loss per epoch", id: "chart-val-loss" }),
      lineChart(series("val_accuracy"), { title: "validation accuracy per epoch", id: "chart-val-accuracy" })),
    el("h2", {}, "Configurations (mean ± sd [95% CI] over seeds)"),
    el("table", { id: "comparison" }, el("tr", {}, ["configuration", "differs in", "runs", "params", "test loss",
      "accuracy", "macro-F1", "lowest val loss at epoch", "train s"].map(h => el("th", {}, h))), rows),
    el("h2", {}, "Verdicts"), el("div", { id: "verdicts" }, verdicts.length ? verdicts :
      el("p", { class: "muted" }, "one configuration: nothing to test")),
    data.warning ? el("p", { class: "problems" }, data.warning) : null,
    data.skipped.length ? el("div", {}, el("h2", {}, "Skipped"), el("ul", {}, data.skipped.map(s => el("li", {}, `${s.run}: ${s.reason}`)))) : null);
}

async function main() {
  const app = document.getElementById("app");
  document.body.prepend(nav("/compare"));
  const data = await api("/api/runs");
  const runs = (data.runs || []).filter(r => r.status === "complete");
  const wanted = new URLSearchParams(location.search).getAll("run");
  const boxes = runs.map((r, i) => el("input", { type: "checkbox", id: `pick-${i}`, value: r.name,
    checked: wanted.includes(r.name) ? "checked" : null }));
  const groups = [...new Set(runs.map(r => r.group).filter(g => g))].sort();
  const out = el("div", { id: "result" });
  const chosen = () => boxes.filter(b => b.checked).map(b => b.value);
  const groupPick = el("select", { id: "group", onchange: (e) => {
      boxes.forEach((b, i) => { b.checked = runs[i].group === e.target.value; });
    } }, el("option", { value: "" }, "select a suite or sweep..."), groups.map(g => el("option", { value: g }, g)));
  app.append(el("h1", {}, "Compare runs"),
    el("div", { class: "filters" }, groupPick,
      el("button", { id: "compare", onclick: () => {
        const names = chosen();
        if (names.length) compareRuns(names, out);
        else out.replaceChildren(el("p", { class: "error" }, "pick at least one run"));
      } }, "Compare")),
    el("div", { class: "runpick" }, runs.length ? runs.map((r, i) => el("div", {}, boxes[i],
      el("label", { for: `pick-${i}` }, ` ${r.name} `, el("span", { class: "muted" },
        `${r.model} · seed ${fmt(r.seed)} · test acc ${fmt(r.test_accuracy)}`)))) :
      el("p", { class: "muted" }, "no complete runs")),
    out);
  if (wanted.length) compareRuns(wanted, out);
}
main();

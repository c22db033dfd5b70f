// Runs page: every run of the runs folder, sortable and filterable; damaged runs say why.
"use strict";

const COLUMNS = [
  { key: "name", label: "run", render: r => el("a", { href: runUrl(r.name) }, r.name) },
  { key: "status", label: "status", render: r => el("div", {}, el("span", { class: "status-" + r.status }, r.status),
      r.problems.length ? el("div", { class: "problems" }, r.problems.join("; ")) : null) },
  { key: "experiment", label: "experiment" },
  { key: "group", label: "suite / sweep" },
  { key: "dataset", label: "dataset" },
  { key: "features", label: "features" },
  { key: "model", label: "model" },
  { key: "optimizer", label: "optimizer" },
  { key: "batch_size", label: "batch", num: true },
  { key: "epochs_done", label: "epochs", num: true, render: r => `${fmt(r.epochs_done)} / ${fmt(r.epochs)}` },
  { key: "seed", label: "seed", num: true },
  { key: "validation", label: "validation" },
  { key: "val_accuracy", label: "val acc", num: true },
  { key: "test_accuracy", label: "test acc", num: true },
];
const FILTERS = ["experiment", "dataset", "status", "group"];
const FILTER_LABELS = { experiment: "all experiments", dataset: "all datasets", status: "any status",
                        group: "all suites and sweeps" };

async function main() {
  const app = document.getElementById("app");
  document.body.prepend(nav("/"));
  const data = await api("/api/runs");
  app.append(el("h1", {}, "Runs"), el("p", { class: "muted" }, `${data.root}`));
  if (data.error) app.append(el("p", { class: "error" }, data.error));
  const rows = data.runs || [];
  const text = el("input", { type: "search", id: "filter-text", placeholder: "filter: name, model, seed..." });
  const selects = {};
  for (const key of FILTERS) {
    const values = [...new Set(rows.map(r => r[key]).filter(v => v !== "" && v !== null))].sort();
    selects[key] = el("select", { id: "filter-" + key },
      el("option", { value: "" }, FILTER_LABELS[key]),
      values.map(v => el("option", { value: v }, v)));
    selects[key].hidden = values.length < 2;  // nothing to choose between
  }
  const count = el("span", { class: "muted", id: "count" });
  // a column empty in every run (no suites, no sweeps) only takes room
  const empty = v => v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length);
  const columns = COLUMNS.filter(c => ["name", "status"].includes(c.key) || rows.some(r => !empty(r[c.key])));
  const table = sortableTable(columns, rows, { id: "runs", sortKey: "name",
    rowClass: r => r.problems.length ? "damaged" : null });
  const apply = () => {
    const words = text.value.toLowerCase().split(/\s+/).filter(w => w);
    const shown = rows.filter(r => FILTERS.every(k => !selects[k].value || String(r[k]) === selects[k].value)
      && words.every(w => [...columns.map(c => r[c.key]), r.problems.join(" ")]
        .some(v => String(v ?? "").toLowerCase().includes(w))));
    table.setRows(shown);
    count.textContent = `${shown.length} of ${rows.length} runs`;
  };
  text.addEventListener("input", apply);
  Object.values(selects).forEach(s => s.addEventListener("change", apply));
  app.append(el("div", { class: "filters" }, text, Object.values(selects), count,
    el("button", { onclick: () => location.reload() }, "refresh")), el("div", { class: "wide" }, table));
  apply();
  const reports = await api("/api/reports");
  if ((reports.reports || []).length) {
    app.append(el("h2", {}, "Reports"), el("ul", {}, reports.reports.map(r =>
      el("li", {}, el("a", { href: r.url, target: "_blank", rel: "noopener" }, r.folder + "/report.html"),
        " ", el("span", { class: "muted" }, new Date(r.modified * 1000).toLocaleString())))));
  }
}
main();

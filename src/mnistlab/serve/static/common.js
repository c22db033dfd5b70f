// Shared helpers: DOM building, the API, number formats and a plain-SVG line chart.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let data;
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  if (!response.ok && !data.error) data.error = `HTTP ${response.status}`;
  data._status = response.status;
  return data;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined || value === "") return "-";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
  return String(value);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  seconds = Math.round(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return (h ? `${h} h ` : "") + (h || m ? `${m} min ` : "") + `${s} s`;
}

const PALETTE = ["#2f6fdb", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384", "#c11574",
                 "#475467", "#ca8504", "#155eef"];

function runUrl(name) { return "/run/" + encodeURIComponent(name); }

// series: [{name, values: [y per epoch], color, dash}]; returns an <svg> and its legend.
function lineChart(series, opts = {}) {
  const W = opts.width || 460, H = opts.height || 260, L = 52, R = 12, T = 22, B = 34;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("class", "chart");
  if (opts.id) svg.setAttribute("id", opts.id);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  const all = series.flatMap(s => s.values.filter(v => Number.isFinite(v)));
  const n = Math.max(1, opts.epochs || 0, ...series.map(s => s.values.length));  // planned epochs keep the x axis still
  let lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 1;
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.06; lo -= pad; hi += pad;
  const x = i => L + (n === 1 ? (W - L - R) / 2 : (i / (n - 1)) * (W - L - R));
  const y = v => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  add("text", { x: L, y: 14 }, opts.title || "");
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  for (let k = 0; k <= 4; k++) {
    const v = lo + (k / 4) * (hi - lo);
    add("line", { x1: L - 4, y1: y(v), x2: W - R, y2: y(v), class: "axis", "stroke-dasharray": "2 4" });
    add("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toPrecision(3));
  }
  const step = Math.max(1, Math.ceil(n / 10));
  for (let i = 0; i < n; i += step) add("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, i + 1);
  add("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, opts.xlabel || "epoch");
  series.forEach((s, k) => {
    const color = s.color || PALETTE[k % PALETTE.length];
    const pts = s.values.map((v, i) => Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : null)
      .filter(p => p);
    if (pts.length > 1) add("polyline", { points: pts.join(" "), fill: "none", stroke: color,
      "stroke-width": 2, "stroke-dasharray": s.dash || "none", "data-series": s.name });
    s.values.forEach((v, i) => {
      if (Number.isFinite(v)) add("circle", { cx: x(i), cy: y(v), r: 2.6, fill: color, "data-series": s.name,
        "data-epoch": i + 1 }).append(Object.assign(document.createElementNS(NS, "title"),
        { textContent: `${s.name} epoch ${i + 1}: ${v.toPrecision(5)}` }));
    });
  });
  const legend = el("div", { class: "legend" },
    series.map((s, k) => { const sp = el("span", {}, s.name);
      sp.style.setProperty("--c", s.color || PALETTE[k % PALETTE.length]); return sp; }));
  return el("div", { class: "card" }, svg, legend);
}

function sortableTable(columns, rows, opts = {}) {
  // columns: [{key, label, num, render(row) -> node|string}]
  let sortKey = opts.sortKey || null, asc = opts.asc !== false;
  const table = el("table", { id: opts.id });
  const thead = el("thead"), tbody = el("tbody");
  table.append(thead, tbody);
  const draw = () => {
    const sorted = rows.slice();
    if (sortKey) sorted.sort((a, b) => {
      const va = a[sortKey], vb = b[sortKey];
      if (va === vb) return 0;
      if (va === null || va === undefined || va === "") return 1;
      if (vb === null || vb === undefined || vb === "") return -1;
      const r = (typeof va === "number" && typeof vb === "number") ? va - vb : String(va).localeCompare(String(vb));
      return asc ? r : -r;
    });
    thead.replaceChildren(el("tr", {}, columns.map(c => el("th", {
      class: "sortable" + (c.key === sortKey ? (asc ? " sorted-asc" : " sorted-desc") : ""),
      "data-key": c.key,
      onclick: () => { if (sortKey === c.key) asc = !asc; else { sortKey = c.key; asc = true; } draw(); },
    }, c.label))));
    tbody.replaceChildren(...sorted.map(r => el("tr", { class: opts.rowClass ? opts.rowClass(r) : null },
      columns.map(c => el("td", { class: c.num ? "num" : null }, c.render ? c.render(r) : fmt(r[c.key]))))));
  };
  table.setRows = (r) => { rows = r; draw(); };
  draw();
  return table;
}

// parent.append, leaving out the null / false of optional parts (DOM append writes them as text)
function add(parent, ...children) {
  parent.append(...children.flat().filter(c => c !== null && c !== undefined && c !== false));
  return parent;
}

function className(index, name) { return String(index) === String(name) ? name : `${index} ${name}`; }

function nav(active) {
  const links = [["/", "Runs"], ["/compare", "Compare"], ["/draw", "Draw"]];
  return el("header", {}, el("span", { class: "brand" }, "mnistlab"),
    links.map(([href, text]) => el("a", { href, class: href === active ? "active" : null }, text)));
}

// The berth web view. Every value from the daemon is put on the page as
// text (createTextNode / textContent), never as markup: a label such as
// <script>alert(1)</script> shows as those characters.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let session = { Admin: false, TokenFile: null };
const TOKEN_KEY = "berth-admin-token";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replaces what `main` shows (arrays flattened, absent parts skipped).
function show(main, ...children) {
  main.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  if (n === null || n === undefined || n < 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

function clock(seconds) {
  return new Date(seconds * 1000).toTimeString().slice(0, 8);
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

async function act(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Berth-Token": sessionStorage.getItem(TOKEN_KEY) || "" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.message || response.statusText);
  return answer;
}

// A line plot of [{label, points: [[t, y]]}] as SVG, y in bytes.
function plot(title, series, width, height) {
  width = width || 720; height = height || 220;
  const pad = { l: 76, r: 16, t: 32, b: 28 };
  const root = svg("svg", { class: "plot", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  root.append(svg("title", {}, title));
  root.append(svg("text", { x: pad.l, y: 18, class: "legend" }, title));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    root.append(svg("text", { x: width / 2, y: height / 2, class: "axis", "text-anchor": "middle" }, "no samples yet"));
    return root;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const yMax = Math.max(1, ...all.map((p) => p[1])) * 1.1;
  const x = (t) => pad.l + (t1 === t0 ? (width - pad.l - pad.r) / 2 : ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r));
  const y = (v) => height - pad.b - (v / yMax) * (height - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: pad.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, bytes(Math.round(v))));
  }
  root.append(svg("text", { x: pad.l, y: height - 8, class: "axis" }, clock(t0)));
  root.append(svg("text", { x: width - pad.r, y: height - 8, class: "axis", "text-anchor": "end" }, clock(t1)));
  series.forEach((s, i) => {
    if (s.points.length === 1) {
      const [t, v] = s.points[0];
      root.append(svg("circle", { cx: x(t), cy: y(v), r: 3, class: "dot0" }));
    } else if (s.points.length > 1) {
      const d = s.points.map(([t, v], j) => `${j ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
      root.append(svg("path", { d, class: "s" + i }));
    }
    // The legend, right-aligned after the title: a stroke of the series' own style, then its name.
    const left = width - pad.r - 130 * (series.length - i);
    root.append(svg("line", { x1: left, x2: left + 18, y1: 14, y2: 14, class: "s" + i }));
    root.append(svg("text", { x: left + 24, y: 18, class: "legend" }, s.label));
  });
  return root;
}

function poolPlot(history, driver) {
  const pick = (key) => history.flatMap((h) => h.Pools.filter((p) => p.Driver === driver).map((p) => [h.At, p[key]]));
  return plot(`pool ${driver}`, [
    { label: "allocated", points: pick("Allocated") },
    { label: "size", points: pick("Size") },
    { label: "volumes' sizes", points: pick("VirtualSize") },
  ]);
}

function poolCard(pool) {
  const share = pool.Size ? pool.Allocated / pool.Size : 0;
  const filled = el("div", {});
  // Through the CSSOM: the policy forbids style attributes.
  filled.style.width = `${(share * 100).toFixed(1)}%`;
  return el("div", { class: "card" },
    el("div", { class: "k" }, `pool ${pool.Driver}`),
    el("div", { class: "v" }, `${bytes(pool.Allocated)} of ${bytes(pool.Size)}`),
    el("div", { class: share > pool.HighWater ? "bar high" : "bar" }, filled),
    el("div", { class: "k" }, `${pool.Volumes} volumes, overcommit ${pool.Overcommit}×, free ${bytes(pool.Size - pool.Allocated)}`));
}

function labels(map) {
  return Object.entries(map || {}).map(([k, v]) => el("span", { class: "label" }, v === "" ? k : `${k}=${v}`));
}

function holders(list) {
  if (!list.length) return el("span", { class: "muted" }, "none");
  return list.map((h) => el("div", {}, h.Name || h.Id.slice(0, 12), el("span", { class: "muted" }, ` (${h.State})`)));
}

function volumeLink(name) {
  return el("a", { href: "/volumes/" + encodeURIComponent(name) }, name);
}

async function showList(main) {
  const page = await getJson("/web/v1/overview");
  const rows = page.Volumes.map((v) => el("tr", { "data-volume": v.Name },
    el("td", {}, volumeLink(v.Name)),
    el("td", {}, v.Driver),
    el("td", { class: "num" }, v.Size === null ? "–" : bytes(v.Size)),
    el("td", { class: "num" }, bytes(v.Used)),
    el("td", {}, holders(v.Holders)),
    el("td", { class: "num" }, v.Snapshots === null ? "–" : String(v.Snapshots)),
    el("td", {}, labels(v.Labels))));
  show(main,
    el("h1", {}, `Volumes (${page.Volumes.length})`),
    el("div", { class: "cards" }, page.Pools.map(poolCard)),
    el("table", { id: "volumes" },
      el("thead", {}, el("tr", {}, ["Name", "Driver", "Size", "Used", "Held by", "Snapshots", "Labels"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no volumes")))),
    page.Pools.length ? el("h2", {}, "Pool usage") : null,
    page.Pools.map((p) => poolPlot(page.PoolHistory, p.Driver)));
}

function actions(name, main) {
  if (!session.Admin) return el("p", { class: "muted" }, "Read-only view (the daemon runs without --web-admin).");
  const message = el("span", { class: "muted", id: "action-result" });
  // The admin token is in a file only root can read; kept for this tab only.
  const token = el("input", { type: "password", id: "admin-token", autocomplete: "off", placeholder: "admin token" });
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  const send = (path, body, done) => {
    sessionStorage.setItem(TOKEN_KEY, token.value.trim());
    return act(path, body)
      .then((answer) => { message.className = "muted"; message.textContent = done(answer); return showVolume(main, name, message.textContent); })
      .catch((e) => { message.className = "error"; message.textContent = e.message; });
  };
  const base = `/web/v1/volumes/${encodeURIComponent(name)}`;
  const snapName = el("input", { placeholder: "snapshot name (optional)", id: "snapshot-name" });
  const cloneName = el("input", { placeholder: "new volume name", id: "clone-name" });
  return el("div", {},
    el("p", { class: "muted" }, `Actions need the admin token in ${session.TokenFile} (readable by root only).`),
    el("form", { class: "actions", onsubmit: (e) => e.preventDefault() }, token),
    el("form", { class: "actions", onsubmit: (e) => { e.preventDefault(); send(`${base}/snapshots`, { Name: snapName.value || null }, (a) => `snapshot ${a.Name} taken`); } },
      snapName, el("button", { type: "submit" }, "Take snapshot")),
    el("form", { class: "actions", onsubmit: (e) => { e.preventDefault(); send(`${base}/clone`, { Target: cloneName.value }, (a) => `cloned into ${a.Name}`); } },
      cloneName, el("button", { type: "submit" }, "Clone")),
    message);
}

async function showVolume(main, name, note) {
  const page = await getJson("/web/v1/volumes/" + encodeURIComponent(name));
  const v = page.Volume;
  const facts = [
    ["Driver", v.Driver], ["Created", v.CreatedAt], ["Size", page.Size === null ? "no limit" : bytes(page.Size)],
    ["Used", bytes(page.Used)], ["Mountpoint", v.Mountpoint],
  ];
  const snapshots = page.Snapshots === null ? el("p", { class: "muted" }, `The ${v.Driver} driver has no snapshots.`)
    : el("table", { id: "snapshots" },
      el("thead", {}, el("tr", {}, ["Snapshot", "Taken", "Holds"].map((h) => el("th", {}, h)))),
      el("tbody", {}, page.Snapshots.length ? page.Snapshots.map((s) => el("tr", {}, el("td", {}, s.Name), el("td", {}, s.CreatedAt), el("td", { class: "num" }, bytes(s.Allocated))))
        : el("tr", {}, el("td", { colspan: 3, class: "muted" }, "no snapshots"))));
  show(main,
    el("p", {}, el("a", { href: "/" }, "← all volumes")),
    el("h1", {}, v.Name),
    el("div", { class: "cards" }, facts.map(([k, value]) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v" }, value)))),
    el("h2", {}, "Labels"), Object.keys(v.Labels || {}).length ? el("div", { id: "labels" }, labels(v.Labels)) : el("p", { class: "muted" }, "none"),
    el("h2", {}, "Held by"), el("div", {}, holders(page.Holders)),
    el("h2", {}, "Use over time"),
    plot(`${v.Name}: bytes used`, [{ label: "used", points: page.UsedHistory.map((p) => [p.At, p.Used]) }].concat(
      page.Size === null ? [] : [{ label: "size", points: page.UsedHistory.map((p) => [p.At, page.Size]) }])),
    page.PoolHistory.length ? poolPlot(page.PoolHistory, v.Driver) : null,
    el("h2", {}, "Snapshots"), snapshots,
    el("h2", {}, "Actions"), actions(v.Name, main));
  if (note) document.getElementById("action-result").textContent = note;
}

async function render() {
  const main = document.getElementById("main");
  try {
    session = await getJson("/web/v1/session");
    document.getElementById("mode").textContent = session.Admin ? "admin" : "read-only";
    const match = location.pathname.match(/^\/volumes\/([^/]+)$/);
    if (match) await showVolume(main, decodeURIComponent(match[1]));
    else await showList(main);
    document.body.dataset.loaded = "1";
  } catch (e) {
    show(main, el("p", { class: "error", id: "error" }, e.message));
    document.body.dataset.loaded = "error";
  }
}

render();

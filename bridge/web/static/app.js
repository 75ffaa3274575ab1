// The depot dashboard: one snapshot, then live diffs over a WebSocket (bridge/web/live.py).
//
// Everything that comes from a provider (vehicle names, error texts) is put on
// the page as text (textContent), never as HTML. The session id lives in this
// tab's sessionStorage and goes out as a header or the WebSocket's first
// message, never in a cookie or a URL.
"use strict";

(function () {
  const STATES = ["moving", "parked", "offline", "stale"];
  const COLOURS = { moving: "#2e9e44", parked: "#2f6fd6", offline: "#8a8f98", stale: "#e08a00" };
  const ROW_H = 28;
  const TABLE_EVERY_MS = 250;
  const SESSION_KEY = "fleet-bridge-session";

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  // --- what tests and the benchmark read ----------------------------------------
  const fleet = {
    ready: false,
    firstRenderMs: null,
    seq: 0,
    snapshots: 0,
    vehicles: new Map(),
    accounts: new Map(),
    alerts: [],
    applied: [], // {seq, at, appliedAt, drawnAt, rows, keys?} per diff (the last 5,000)
    recordKeys: false, // the benchmark: which vehicles each diff carried
    history: new Map(), // key -> [[la, lo], ...] for watched keys
    watch(key) { if (!this.history.has(key)) this.history.set(key, []); },
    mapPoint(key) { return overlay ? overlay.pointOf(key) : null; },
    tiles: { loaded: 0, failed: 0 },
  };
  window.fleet = fleet;

  let config = null;
  let session = sessionStorage.getItem(SESSION_KEY);
  let canCommand = false;
  let serverOffset = 0; // bridge clock minus this browser's, in seconds
  let socket = null;
  let retryMs = 500;
  let selected = null;

  const bridgeNow = () => Date.now() / 1000 + serverOffset;
  const age = (row) => (row.ls == null ? null : Math.max(0, bridgeNow() - row.ls));
  function fmtAge(seconds) {
    if (seconds == null) return "–";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86400)} d`;
  }
  function fmtTime(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    const short = { hour: "2-digit", minute: "2-digit" };
    if (date.toDateString() === new Date().toDateString()) return date.toLocaleTimeString([], short);
    return date.toLocaleString([], { month: "short", day: "numeric", ...short });
  }
  const fmt = (v, unit, digits = 0) => (v == null ? "–" : `${Number(v).toFixed(digits)} ${unit}`);
  const providerOf = (row) => (fleet.accounts.get(row.a) || {}).provider || "";

  // --- the API ---------------------------------------------------------------------
  function headers(json) {
    const h = {};
    if (session) h.Authorization = `Bearer ${session}`;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }
  async function api(path, body) {
    const init = body === undefined
      ? { headers: headers(false) }
      : { method: "POST", headers: headers(true), body: JSON.stringify(body) };
    const response = await fetch(path, { ...init, credentials: "omit", cache: "no-store" });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { status: response.status, data };
  }

  // --- login -------------------------------------------------------------------------
  function showLogin(message) {
    $("login").hidden = false;
    if (!socket) {
      $("link").dataset.state = "refused";
      $("link").textContent = "not logged in";
    }
    $("login-password-row").hidden = !config.login.password;
    $("login-token-row").hidden = !config.login.token;
    $("login-cancel").hidden = !config.public;
    $("login-error").textContent = message || "";
    (config.login.password ? $("login-password") : $("login-token")).focus();
  }
  async function login(kind, secret) {
    const { status, data } = await api("/api/login", { [kind]: secret });
    if (status !== 200 || !data || !data.session) {
      return status === 429 ? "Too many failed attempts: wait a minute." : "Wrong token or password.";
    }
    session = data.session;
    sessionStorage.setItem(SESSION_KEY, session);
    return null;
  }
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("login-password").value;
    const token = $("login-token").value;
    const error = password ? await login("password", password) : await login("token", token);
    $("login-password").value = "";
    $("login-token").value = "";
    if (error) { $("login-error").textContent = error; return; }
    $("login").hidden = true;
    await start();
  });
  $("login-cancel").addEventListener("click", () => { $("login").hidden = true; });
  $("login-open").addEventListener("click", () => showLogin(""));
  $("logout").addEventListener("click", async () => {
    await api("/api/logout", {});
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    location.reload();
  });

  // --- the map ------------------------------------------------------------------------
  let map = null;
  let overlay = null;

  // A plain coordinate grid: what the map shows where tiles cannot load.
  const Grid = L.GridLayer.extend({
    createTile(coords) {
      const tile = document.createElement("canvas");
      const size = this.getTileSize();
      tile.width = size.x;
      tile.height = size.y;
      const ctx = tile.getContext("2d");
      ctx.fillStyle = "#eef1f5";
      ctx.fillRect(0, 0, size.x, size.y);
      const nw = this._map.unproject(coords.scaleBy(size), coords.z);
      const se = this._map.unproject(coords.add([1, 1]).scaleBy(size), coords.z);
      const span = Math.max(Math.abs(se.lng - nw.lng), 1e-9);
      const steps = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
      const step = steps.find((s) => span / s >= 1.5) || steps[steps.length - 1];
      ctx.strokeStyle = "#cfd6df";
      ctx.fillStyle = "#7a8494";
      ctx.font = "10px system-ui, sans-serif";
      const digits = Math.max(0, -Math.floor(Math.log10(step)));
      for (let lng = Math.ceil(nw.lng / step) * step; lng <= se.lng; lng += step) {
        const x = ((lng - nw.lng) / (se.lng - nw.lng)) * size.x;
        ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, size.y); ctx.stroke();
        ctx.fillText(`${lng.toFixed(digits)}°`, x + 2, 10);
      }
      for (let lat = Math.ceil(se.lat / step) * step; lat <= nw.lat; lat += step) {
        const y = this._map.project([lat, nw.lng], coords.z).y - coords.y * size.y;
        ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(size.x, y); ctx.stroke();
        ctx.fillText(`${lat.toFixed(digits)}°`, 2, y - 2);
      }
      return tile;
    },
  });

  // Every vehicle on one canvas: 10,000 markers as DOM elements would not keep up.
  const Vehicles = L.Layer.extend({
    onAdd(m) {
      this._canvas = L.DomUtil.create("canvas", "leaflet-zoom-hide vehicles");
      m.getPanes().overlayPane.appendChild(this._canvas);
      this._points = []; // [x, y, row] as last drawn
      m.on("moveend zoomend resize viewreset", this.redraw, this);
      m.on("move", this.redraw, this);
      this.redraw();
    },
    onRemove(m) {
      L.DomUtil.remove(this._canvas);
      m.off("moveend zoomend resize viewreset move", this.redraw, this);
    },
    redraw() {
      if (this._frame) return;
      this._frame = L.Util.requestAnimFrame(() => { this._frame = null; this._draw(); });
    },
    _draw() {
      const m = this._map;
      if (!m) return;
      const size = m.getSize();
      const ratio = window.devicePixelRatio || 1;
      const canvas = this._canvas;
      L.DomUtil.setPosition(canvas, m.containerPointToLayerPoint([0, 0]));
      canvas.width = size.x * ratio;
      canvas.height = size.y * ratio;
      canvas.style.width = `${size.x}px`;
      canvas.style.height = `${size.y}px`;
      const ctx = canvas.getContext("2d");
      ctx.scale(ratio, ratio);
      const points = [];
      const radius = fleet.vehicles.size > 2000 ? 3 : 6;
      const buckets = { moving: [], parked: [], offline: [], stale: [] };
      for (const row of fleet.vehicles.values()) {
        if (row.la == null || row.lo == null) continue;
        const p = m.latLngToContainerPoint([row.la, row.lo]);
        if (p.x < -10 || p.y < -10 || p.x > size.x + 10 || p.y > size.y + 10) continue;
        points.push([p.x, p.y, row, row.la, row.lo]);
        (buckets[row.st] || buckets.parked).push(p);
      }
      for (const state of STATES) {
        ctx.fillStyle = COLOURS[state];
        ctx.beginPath();
        for (const p of buckets[state]) {
          ctx.moveTo(p.x + radius, p.y);
          ctx.arc(p.x, p.y, radius, 0, 2 * Math.PI);
        }
        ctx.fill();
      }
      if (radius > 3) {
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5;
        for (const state of STATES) {
          ctx.beginPath();
          for (const p of buckets[state]) {
            ctx.moveTo(p.x + radius, p.y);
            ctx.arc(p.x, p.y, radius, 0, 2 * Math.PI);
          }
          ctx.stroke();
        }
      }
      const chosen = selected && fleet.vehicles.get(selected);
      if (chosen && chosen.la != null) {
        const p = m.latLngToContainerPoint([chosen.la, chosen.lo]);
        ctx.strokeStyle = "#111";
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(p.x, p.y, radius + 4, 0, 2 * Math.PI);
        ctx.stroke();
      }
      this._points = points;
      this.drawn = (this.drawn || 0) + 1;
    },
    nearest(containerPoint, within) {
      let best = null;
      let bestD = within * within;
      for (const [x, y, row] of this._points) {
        const d = (x - containerPoint.x) ** 2 + (y - containerPoint.y) ** 2;
        if (d <= bestD) { bestD = d; best = row; }
      }
      return best;
    },
    pointOf(key) {
      for (const [x, y, row, la, lo] of this._points) {
        if (row.k === key) return { x, y, la, lo, state: row.st };
      }
      return null;
    },
  });

  function setUpMap() {
    map = L.map("map", { preferCanvas: true, worldCopyJump: true, zoomControl: true })
      .setView([50, 10], 4);
    new Grid({ zIndex: 0, attribution: "coordinate grid" }).addTo(map);
    const tiles = config.tiles || { url: "" };
    if (tiles.url) {
      const layer = L.tileLayer(tiles.url, { attribution: tiles.attribution, zIndex: 1, maxZoom: 19 });
      layer.on("tileload", () => { fleet.tiles.loaded += 1; tileNotice(); });
      layer.on("tileerror", () => { fleet.tiles.failed += 1; tileNotice(); });
      layer.addTo(map);
    } else {
      $("map-notice").textContent = "Map tiles are off: coordinate grid";
      $("map-notice").hidden = false;
    }
    overlay = new Vehicles().addTo(map);
    map.on("click", (event) => {
      const row = overlay.nearest(event.containerPoint, 10);
      if (row) { select(row.k); popup(row); }
    });
  }
  function tileNotice() {
    const notice = $("map-notice");
    if (fleet.tiles.failed > 0 && fleet.tiles.loaded === 0) {
      notice.textContent = "Map tiles could not be loaded (no internet?): showing the coordinate grid";
      notice.hidden = false;
    } else {
      notice.hidden = true;
    }
  }
  function popup(row) {
    const box = el("div", "pop");
    box.dataset.key = row.k;
    box.append(el("div", "pop-name", row.n));
    const dl = el("dl");
    const add = (k, v) => { dl.append(el("dt", null, k), el("dd", null, v)); };
    add("State", row.st);
    add("Speed", fmt(row.sp, "km/h"));
    add("Fuel", fmt(row.f, "%"));
    add("Data age", fmtAge(age(row)));
    add("Account", row.a);
    box.append(dl);
    L.popup({ autoPan: false }).setLatLng([row.la, row.lo]).setContent(box).openOn(map);
  }
  let fitted = false;
  function fitTo(rows) {
    const points = [];
    for (const row of rows) if (row.la != null) points.push([row.la, row.lo]);
    if (!points.length) return false;
    map.fitBounds(L.latLngBounds(points), { padding: [24, 24], maxZoom: 14, animate: false });
    return true;
  }
  function fitOnce() {
    if (!fitted) fitted = fitTo(fleet.vehicles.values());
  }

  // --- the table --------------------------------------------------------------------------
  const table = { rows: [], sort: "n", dir: "asc", dirty: true, lastBuild: 0, timer: null };
  function sortValue(row, key) {
    if (key === "p") return providerOf(row);
    if (key === "age") return age(row) ?? Infinity;
    if (key === "st") return STATES.indexOf(row.st);
    return row[key];
  }
  function buildRows() {
    const account = $("f-account").value;
    const provider = $("f-provider").value;
    const state = $("f-state").value;
    const text = $("f-text").value.trim().toLowerCase();
    const rows = [];
    for (const row of fleet.vehicles.values()) {
      if (account && row.a !== account) continue;
      if (state && row.st !== state) continue;
      if (provider && providerOf(row) !== provider) continue;
      if (text && !row.n.toLowerCase().includes(text) && !row.id.toLowerCase().includes(text)) continue;
      rows.push(row);
    }
    const key = table.sort;
    const sign = table.dir === "asc" ? 1 : -1;
    const values = new Map(rows.map((row) => [row, sortValue(row, key)]));
    rows.sort((x, y) => {
      const a = values.get(x);
      const b = values.get(y);
      if (a == null && b != null) return 1;
      if (b == null && a != null) return -1;
      if (a < b) return -sign;
      if (a > b) return sign;
      return x.k < y.k ? -1 : 1;
    });
    table.rows = rows;
    table.dirty = false;
    table.lastBuild = performance.now();
    $("shown").textContent = `${rows.length} of ${fleet.vehicles.size}`;
    $("vt-spacer").style.height = `${rows.length * ROW_H}px`;
  }
  function renderTable() {
    const body = $("vt-body");
    const first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 5);
    const last = Math.min(table.rows.length, first + Math.ceil(body.clientHeight / ROW_H) + 10);
    for (const node of Array.from(body.querySelectorAll(".vt-row"))) node.remove();
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i += 1) {
      const row = table.rows[i];
      const line = el("div", `vt-row${row.k === selected ? " selected" : ""}`);
      line.style.top = `${i * ROW_H}px`;
      line.dataset.key = row.k;
      const badge = el("span");
      badge.append(el("span", `badge st-${row.st}`, row.st));
      line.append(
        el("span", "c-name", row.n),
        el("span", "c-account", row.a),
        el("span", "c-provider", providerOf(row)),
        badge,
        el("span", "c-speed", fmt(row.sp, "km/h")),
        el("span", "c-fuel", fmt(row.f, "%")),
        el("span", "c-age", fmtAge(age(row))),
        el("span", "c-pos", row.la == null ? "–" : `${row.la.toFixed(5)}, ${row.lo.toFixed(5)}`),
      );
      fragment.append(line);
    }
    body.append(fragment);
  }
  function scheduleTable() {
    if (table.timer) return;
    const wait = Math.max(0, TABLE_EVERY_MS - (performance.now() - table.lastBuild));
    table.timer = setTimeout(() => {
      table.timer = null;
      buildRows();
      renderTable();
    }, wait);
  }
  $("vt-body").addEventListener("scroll", () => requestAnimationFrame(renderTable));
  $("vt-body").addEventListener("click", (event) => {
    const line = event.target.closest(".vt-row");
    if (!line) return;
    select(line.dataset.key);
    const row = fleet.vehicles.get(line.dataset.key);
    if (row && row.la != null) map.panTo([row.la, row.lo], { animate: false });
  });
  $("vt-head").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const key = button.dataset.sort;
    table.dir = table.sort === key && table.dir === "asc" ? "desc" : "asc";
    table.sort = key;
    for (const b of $("vt-head").querySelectorAll("button")) delete b.dataset.dir;
    button.dataset.dir = table.dir;
    buildRows();
    renderTable();
  });
  for (const id of ["f-account", "f-provider", "f-state", "f-text"]) {
    $(id).addEventListener("input", () => { buildRows(); renderTable(); });
  }
  // Choosing an account or a provider shows its vehicles on the map.
  for (const id of ["f-account", "f-provider"]) {
    $(id).addEventListener("change", () => fitTo(table.rows));
  }
  function fillFilters() {
    const fill = (select, values) => {
      const current = select.value;
      while (select.options.length > 1) select.remove(1);
      for (const value of values) select.add(new Option(value, value));
      select.value = values.includes(current) ? current : "";
    };
    const accounts = [...fleet.accounts.keys()].sort();
    fill($("f-account"), accounts);
    fill($("f-provider"), [...new Set(accounts.map((a) => fleet.accounts.get(a).provider))].sort());
  }

  // --- accounts -------------------------------------------------------------------------
  function renderAccounts() {
    const box = $("accounts");
    box.replaceChildren();
    for (const account of [...fleet.accounts.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const card = el("div", "account");
      card.dataset.account = account.id;
      const head = el("div", "account-head");
      head.append(el("strong", null, account.name || account.id));
      if (account.name) head.append(el("span", "muted", account.id));
      head.append(el("span", "muted", account.provider));
      head.append(el("span", `status ${account.status}`, account.status));
      if (account.stale) head.append(el("span", "status is-stale", "stale"));
      card.append(head);
      card.append(el("div", "meta", `${account.vehicles} vehicles · ${account.polls} polls · held by ${account.instance}`));
      const next = account.next_poll ? new Date(account.next_poll) : null;
      const nextLine = el("div", "meta next-poll");
      nextLine.dataset.at = account.next_poll || "";
      nextLine.textContent = next ? `next poll ${fmtTime(account.next_poll)}` : "next poll: –";
      if (account.reason) nextLine.append(el("span", "reason", ` (${account.reason})`));
      card.append(nextLine);
      if (account.error) card.append(el("div", "error last-error", `last error: ${account.error}`));
      const quota = account.quota || {};
      if (quota.calls_left_today != null) {
        const line = el("div", "meta calls-left");
        line.textContent = `${quota.calls_left_today} calls left today for polling`;
        card.append(line);
      }
      const table = el("table", "quota");
      const headRow = el("tr");
      for (const [text, cls] of [["budget", ""], ["used", "num"], ["limit", "num"], ["left", "num"], ["resets", ""]]) {
        headRow.append(el("th", cls, text));
      }
      table.append(headRow);
      for (const [name, budget] of Object.entries(quota.budgets || {})) {
        if (name === "hold") continue;
        const tr = el("tr");
        tr.dataset.budget = name;
        const left = budget.kind === "spacing" ? (budget.used ? 0 : 1) : Math.max(0, budget.limit - budget.used);
        tr.append(
          el("td", "name", name),
          el("td", "num used", budget.used),
          el("td", "num limit", budget.limit),
          el("td", "num left", left),
          el("td", "resets", fmtTime(budget.resets_at)),
        );
        table.append(tr);
      }
      card.append(table);
      if (quota.budgets && quota.budgets.hold) {
        card.append(el("div", "error", `held until ${quota.budgets.hold.until}: ${quota.budgets.hold.reason}`));
      }
      box.append(card);
    }
    const states = { moving: 0, parked: 0, offline: 0, stale: 0 };
    for (const row of fleet.vehicles.values()) states[row.st] = (states[row.st] || 0) + 1;
    $("summary").textContent = `${fleet.vehicles.size} vehicles: ${STATES.map((s) => `${states[s]} ${s}`).join(", ")}`;
  }

  // --- alerts ----------------------------------------------------------------------------
  function alertItem(alert) {
    const li = el("li", alert.stale ? "stale" : "");
    li.dataset.alertId = alert.id;
    li.dataset.account = alert.a;
    const when = alert.time ? new Date(alert.time).toLocaleString() : "";
    li.append(el("span", `sev-${alert.severity}`, alert.type.replace(/_/g, " ")));
    if (alert.stale) li.append(el("span", "tag", "stale"));
    li.append(el("div", "muted", `${alert.vn} · ${alert.a} · ${when}`));
    li.addEventListener("click", () => select(`${alert.a}/${alert.v}`));
    return li;
  }
  function addAlerts(alerts, atTop) {
    const list = $("alerts");
    if (atTop) {
      for (const alert of alerts) { list.prepend(alertItem(alert)); fleet.alerts.unshift(alert); }
      while (list.children.length > 200) list.lastChild.remove();
      fleet.alerts.length = Math.min(fleet.alerts.length, 200);
    } else {
      list.replaceChildren(...alerts.map(alertItem));
      fleet.alerts = alerts.slice();
    }
    $("alert-count").textContent = `(${fleet.alerts.length})`;
  }

  // --- one vehicle, and its commands --------------------------------------------------------
  async function select(key) {
    selected = key;
    overlay.redraw();
    renderTable();
    const row = fleet.vehicles.get(key);
    if (!row) return;
    $("detail").hidden = false;
    $("detail").dataset.key = key;
    $("detail-name").textContent = row.n;
    renderDetail(row, null);
    const { status, data } = await api(`/api/vehicle?account=${encodeURIComponent(row.a)}&id=${encodeURIComponent(row.id)}`);
    if (selected === key && status === 200) renderDetail(row, data);
  }
  function renderDetail(row, detail) {
    const dl = $("detail-fields");
    dl.replaceChildren();
    const add = (k, v) => { dl.append(el("dt", null, k), el("dd", `f-${k.toLowerCase().replace(/ /g, "-")}`, v)); };
    add("Account", row.a);
    add("Provider", providerOf(row));
    add("State", row.st);
    add("Speed", fmt(row.sp, "km/h"));
    add("Fuel", fmt(row.f, "%"));
    add("Data age", fmtAge(age(row)));
    add("Position", row.la == null ? "–" : `${row.la.toFixed(5)}, ${row.lo.toFixed(5)}`);
    if (row.li != null || (detail && detail.commands.includes("lights"))) {
      add("Lights", row.li == null ? "–" : (row.li ? "on" : "off"));
    }
    if (detail && detail.state) {
      const s = detail.state;
      if (s.plate) add("Plate", s.plate);
      if (s.engine_state) add("Engine", s.engine_state);
      if (s.odometer_km != null) add("Odometer", fmt(s.odometer_km, "km"));
      if (s.address) add("Address", s.address);
      if (s.current_task) add("Task", s.current_task);
    }
    const box = $("commands");
    box.replaceChildren();
    const commands = detail ? detail.commands : [];
    if (!canCommand) {
      box.append(el("p", "muted", "Log in to send commands."));
      return;
    }
    if (!commands.length && detail) box.append(el("p", "muted", "No command is allowed for this vehicle."));
    const button = (text, name, extra) => {
      const b = el("button", "cmd", text);
      b.type = "button";
      b.dataset.command = name;
      if (extra && extra.state) b.dataset.state = extra.state;
      b.addEventListener("click", () => send(name, { account: row.a, vehicle: row.id, ...(extra || {}) }, text));
      box.append(b);
    };
    if (commands.includes("lights")) {
      button("Lights on", "lights", { state: "ON" });
      button("Lights off", "lights", { state: "OFF" });
    }
    if (commands.includes("snapshot")) button("Snapshot", "snapshot", { camera: "road" });
    if (commands.includes("task/create")) {
      const b = el("button", "cmd", "Create task…");
      b.type = "button";
      b.dataset.command = "task/create";
      b.addEventListener("click", () => openTask(row));
      box.append(b);
    }
  }
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; selected = null; overlay.redraw(); renderTable(); });

  function localInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }
  function openTask(row) {
    const form = $("task-form");
    form.hidden = false;
    form.dataset.key = row.k;
    form.order_ref.value = `WEB-${Date.now().toString(36).toUpperCase()}`;
    form.latitude.value = row.la ?? "";
    form.longitude.value = row.lo ?? "";
    const start = new Date(Date.now() + 3600e3);
    form.start_time.value = localInput(start);
    form.stop_time.value = localInput(new Date(start.getTime() + 7200e3));
  }
  $("task-cancel").addEventListener("click", () => { $("task-form").hidden = true; });
  $("task-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const row = fleet.vehicles.get(form.dataset.key);
    if (!row) return;
    const body = {
      account: row.a,
      vehicle: row.id,
      order_ref: form.order_ref.value,
      latitude: Number(form.latitude.value),
      longitude: Number(form.longitude.value),
      start_time: new Date(form.start_time.value).toISOString(),
      stop_time: new Date(form.stop_time.value).toISOString(),
    };
    if (form.description.value) body.description = form.description.value;
    form.hidden = true;
    send("task/create", body, `Task ${body.order_ref}`);
  });

  const answers = new Map(); // transaction -> <li>
  function answerLine(transaction, label, target) {
    const li = el("li");
    li.dataset.transaction = transaction;
    li.append(el("strong", null, label), el("span", "muted", ` ${target}`));
    li.append(el("div", "status-line", "sending…"));
    $("answers").prepend(li);
    $("answers-empty").hidden = true;
    answers.set(transaction, li);
    return li;
  }
  function showAnswer(transaction, status, text) {
    const li = answers.get(transaction);
    if (!li) return;
    li.dataset.status = status;
    li.querySelector(".status-line").textContent = text;
  }
  function randomId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  async function send(command, body, label) {
    // One transaction per click: a retry after a lost answer is the same command,
    // and the bridge's journal answers it without a second effect.
    const transaction = `web-${randomId()}`;
    const row = fleet.vehicles.get(`${body.account}/${body.vehicle}`);
    answerLine(transaction, label, row ? `${row.n} (${body.account})` : body.account);
    let result = null;
    for (let attempt = 0; attempt < 3 && !result; attempt += 1) {
      try {
        result = await api("/api/command", { command, transaction, ...body });
      } catch (_) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    if (!result) { showAnswer(transaction, "failed", "no answer from the bridge"); return; }
    const answer = result.data && result.data.answer;
    if (result.status === 401) { showAnswer(transaction, "failed", "not logged in"); return; }
    if (!answer) { showAnswer(transaction, "failed", (result.data && result.data.error) || `HTTP ${result.status}`); return; }
    if (answer.status === "ok") {
      const state = (answer.data && answer.data.state) || "ok";
      showAnswer(transaction, state, state === "pending" ? "pending: waiting for the device" : state);
    } else {
      showAnswer(transaction, "failed", `failed: ${answer.error}`);
    }
  }
  function commandChanged(message) {
    const text = message.status === "confirmed"
      ? (message.url ? `confirmed: ${message.url}` : "confirmed")
      : `${message.status}${message.error ? `: ${message.error}` : ""}`;
    showAnswer(message.transaction, message.status, text);
  }

  // --- the live channel -----------------------------------------------------------------------
  let renderQueued = false;
  let undrawn = [];
  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      overlay._draw();
      const now = Date.now() / 1000;
      for (const entry of undrawn) entry.drawnAt = now;
      undrawn = [];
      scheduleTable();
    });
  }
  function noteHistory(row) {
    const history = fleet.history.get(row.k);
    if (!history) return;
    const last = history[history.length - 1];
    if (!last || last[0] !== row.la || last[1] !== row.lo) history.push([row.la, row.lo]);
  }
  function applySnapshot(message) {
    fleet.seq = message.seq;
    fleet.snapshots += 1;
    canCommand = message.can_command;
    fleet.vehicles = new Map(message.vehicles.map((row) => [row.k, row]));
    for (const row of message.vehicles) noteHistory(row);
    fleet.accounts = new Map(message.accounts.map((a) => [a.id, a]));
    fillFilters();
    renderAccounts();
    addAlerts(message.alerts, false);
    fitOnce();
    overlay._draw();
    buildRows();
    renderTable();
    $("who").textContent = canCommand ? "logged in" : "view only";
    $("logout").hidden = !session;
    $("login-open").hidden = canCommand || !config.public;
    if (!fleet.ready) {
      fleet.ready = true;
      // After the frame that shows it has been painted (two animation frames on).
      requestAnimationFrame(() => requestAnimationFrame(() => {
        fleet.firstRenderMs = performance.now();
      }));
    }
    if (selected) select(selected);
  }
  function applyDiff(message) {
    if (message.seq <= fleet.seq) return; // already in the snapshot
    fleet.seq = message.seq;
    for (const row of message.vehicles) { fleet.vehicles.set(row.k, row); noteHistory(row); }
    for (const key of message.removed) fleet.vehicles.delete(key);
    for (const account of message.accounts) fleet.accounts.set(account.id, account);
    if (message.accounts.length) { fillFilters(); }
    if (message.accounts.length || message.removed.length || message.vehicles.length) renderAccounts();
    if (message.alerts.length) addAlerts(message.alerts.slice().reverse(), true);
    table.dirty = true;
    queueRender();
    const entry = { seq: message.seq, at: message.at, appliedAt: Date.now() / 1000, drawnAt: null, rows: message.vehicles.length };
    if (fleet.recordKeys) entry.keys = message.vehicles.map((row) => row.k);
    fleet.applied.push(entry);
    undrawn.push(entry);
    if (fleet.applied.length > 5000) fleet.applied.splice(0, 1000);
    if (selected && message.vehicles.some((row) => row.k === selected)) {
      renderDetailFields(fleet.vehicles.get(selected));
    }
  }
  function renderDetailFields(row) {
    if (!row) return;
    for (const [cls, value] of [
      ["f-state", row.st], ["f-speed", fmt(row.sp, "km/h")], ["f-fuel", fmt(row.f, "%")],
      ["f-data-age", fmtAge(age(row))],
      ["f-position", row.la == null ? "–" : `${row.la.toFixed(5)}, ${row.lo.toFixed(5)}`],
      ["f-lights", row.li == null ? "–" : (row.li ? "on" : "off")],
    ]) {
      const node = $("detail-fields").querySelector(`.${cls}`);
      if (node) node.textContent = value;
    }
  }

  function connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`;
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    const link = $("link");
    const decoder = new TextDecoder();
    socket.onopen = () => {
      socket.send(JSON.stringify({ t: "hello", session }));
    };
    socket.onmessage = (event) => {
      const text = typeof event.data === "string" ? event.data : decoder.decode(event.data);
      const message = JSON.parse(text);
      serverOffset = message.now !== undefined ? message.now - Date.now() / 1000 : serverOffset;
      if (message.t === "snapshot") {
        retryMs = 500;
        link.dataset.state = "live";
        link.textContent = "live";
        applySnapshot(message);
      } else if (message.t === "diff") {
        applyDiff(message);
      } else if (message.t === "command") {
        commandChanged(message);
      }
    };
    socket.onclose = (event) => {
      if (event.code === 4401) {
        link.dataset.state = "refused";
        link.textContent = "not logged in";
        session = null;
        sessionStorage.removeItem(SESSION_KEY);
        showLogin(event.reason === "session expired" ? "Your login has expired." : "Log in to see the fleet.");
        return;
      }
      link.dataset.state = "reconnecting";
      link.textContent = "reconnecting…";
      setTimeout(connect, retryMs);
      retryMs = Math.min(10000, retryMs * 2);
    };
  }

  setInterval(() => {
    // Ages move on by themselves: the visible rows, the open vehicle, the popup.
    if (!fleet.ready) return;
    renderTable();
    if (selected) renderDetailFields(fleet.vehicles.get(selected));
  }, 1000);

  async function start() {
    const response = await api("/api/config");
    config = response.data;
    const fragment = new URLSearchParams(location.hash.slice(1));
    const token = fragment.get("token");
    let refused = "";
    if (token) {
      // A link with the token (the demo prints one): log in, then drop it from
      // the address bar and the history.
      history.replaceState(null, "", location.pathname + location.search);
      refused = (await login("token", token)) || "";
      if (!refused) config = (await api("/api/config")).data;
    }
    if (!config.authorized && session) {
      session = null;
      sessionStorage.removeItem(SESSION_KEY);
    }
    if (!config.authorized && (!config.public || refused)) {
      showLogin(refused);
      if (!config.public) return;
    }
    if (!map) setUpMap();
    if (socket) {
      socket.onclose = null; // replaced on purpose (a login): no reconnection
      socket.close();
    }
    connect();
  }
  start();
})();

// Address-only calls at the dispatch desk (仅地址来电登记): the caller gives an address, not a
// point. The dispatcher types it as heard; the standard address book (GET /addresses/search)
// answers candidates with a confidence and their grid as they type; the dispatcher picks one,
// fills category, source and description, and the case is created through the ordinary intake
// (POST /incidents with the address's lon/lat) and opened in the desk (desk.js).
// Mounted into the desk's skeleton each time desk.js builds it (event "citygrid:desk-built").
"use strict";
(function () {
  const { $, esc } = window.CG;
  const app = window.citygrid;
  const S = app.state;
  const t = window.CG.translator(window.CG_I18N, () => S.lang);
  const api = window.CG.client({ csrf: () => S.csrf, t });
  const SOURCES = ["hotline_12345", "police_110", "supervisor", "grid_worker", "citizen_app", "other_centre"];
  const DEBOUNCE_MS = 180;
  // What survives a rebuild of the desk (language switch): typed text, candidates, the choice, the form.
  const box = { q: "", result: null, chosen: null, category: "", source: "hotline_12345", description: "",
    error: null, notice: null, open: true, timer: null, abort: null, seq: 0, marker: null, busy: false };

  function fmt(key, vars = {}) {
    let s = t(key);
    Object.entries(vars).forEach(([k, v]) => { s = s.split(`{${k}}`).join(String(v)); });
    return s;
  }
  function label(prefix, value) { const k = prefix + value; return t(k) === k ? String(value) : t(k); }
  function errorText(err) {
    const code = (err && err.code) || (err && err.status === 0 ? "network" : "unknown");
    if (S.lang === "en") return `${(err && err.message) || t("err_unknown")} (${code})`;
    const key = "err_" + code;
    return t(key) !== key ? `${t(key)}（${code}）` : `${t("err_unknown")}：${(err && err.message) || ""}（${code}）`;
  }
  function level(c) { return c >= 0.9 ? "high" : c >= 0.7 ? "mid" : "low"; }

  function style() {
    if ($("desk-addr-style")) return;
    const el = document.createElement("style");
    el.id = "desk-addr-style";
    el.textContent = `
      .desk-addr { border: 1px solid #c9d3e0; border-radius: 4px; padding: 0.4rem 0.6rem; background: #f7f9fc; }
      .desk-addr h4 { margin: 0 0 0.3rem; font-size: 0.95rem; cursor: pointer; }
      .desk-addr input[type=search] { width: 100%; box-sizing: border-box; font-size: 1rem; padding: 0.3rem; }
      .desk-addr ul { list-style: none; margin: 0.3rem 0; padding: 0; max-height: 14rem; overflow: auto; }
      .desk-addr li button { display: flex; width: 100%; gap: 0.5rem; justify-content: space-between;
        text-align: left; background: #fff; border: 1px solid #dde3ea; margin-bottom: 2px; padding: 0.25rem 0.4rem; cursor: pointer; }
      .desk-addr li button:hover, .desk-addr li button:focus { background: #e8f0fb; }
      .desk-addr .conf { white-space: nowrap; font-weight: bold; }
      .desk-addr .conf-high { color: #2a7f62; } .desk-addr .conf-mid { color: #b5651d; } .desk-addr .conf-low { color: #b02a2a; }
      .desk-addr .grid { color: #555; font-size: 0.85rem; white-space: nowrap; }
      .desk-addr form { display: grid; grid-template-columns: auto 1fr; gap: 0.3rem 0.5rem; align-items: center; margin-top: 0.3rem; }
      .desk-addr form .full { grid-column: 1 / -1; }
      .desk-addr .chosen { background: #e8f5ee; padding: 0.3rem; border-radius: 3px; }
      .desk-addr-error { color: #b02a2a; } .desk-addr-notice { color: #2a7f62; }`;
    document.head.appendChild(el);
  }

  function leafCategories() {
    const cats = (window.citygridDesk && window.citygridDesk.desk.categories) || [];
    const name = (c) => (S.lang === "en" && c.name_en ? c.name_en : c.name);
    return cats.filter((c) => c.parent_code).map((c) => ({ code: c.code, text: `${c.code} ${name(c)}` }));
  }

  function candidatesHtml() {
    const r = box.result;
    if (!r) return "";
    if (!r.candidates.length) return `<p class="hint" id="desk-addr-none">${esc(t("addr_none"))}</p>`;
    return `<ul id="desk-addr-candidates">` + r.candidates.map((c, i) => `
      <li><button type="button" data-pick="${i}">
        <span class="text">${esc(c.text)}</span>
        <span><span class="conf conf-${level(c.confidence)}" title="${esc(t("addr_confidence"))}">${Math.round(c.confidence * 100)}% ${esc(t("addr_conf_" + level(c.confidence)))}</span>
        <span class="grid">${esc(c.grid_code || "–")} ${esc(c.grid_name || "")}</span></span>
      </button></li>`).join("") + "</ul>";
  }

  function formHtml() {
    const c = box.chosen;
    const opt = (v, text, sel) => `<option value="${esc(v)}"${sel ? " selected" : ""}>${esc(text)}</option>`;
    const cats = leafCategories();
    return `<form id="desk-addr-form">
      <div class="full chosen" id="desk-addr-chosen"><b>${esc(c.text)}</b><br>
        <span class="hint">${esc(t("addr_grid"))}: ${esc(c.grid_code || "–")} ${esc(c.grid_name || "")} ·
        ${Math.round(c.confidence * 100)}% · ${c.lon.toFixed(6)}, ${c.lat.toFixed(6)}</span>
        <button type="button" class="link" id="desk-addr-change">${esc(t("addr_change"))}</button></div>
      <label for="desk-addr-category">${esc(t("addr_category"))}</label>
      <select id="desk-addr-category" required>${opt("", t("addr_choose"), !box.category)}${cats.map((x) =>
        opt(x.code, x.text, x.code === box.category)).join("")}</select>
      <label for="desk-addr-source">${esc(t("addr_source"))}</label>
      <select id="desk-addr-source">${SOURCES.map((s) => opt(s, label("source_", s), s === box.source)).join("")}</select>
      <label for="desk-addr-description">${esc(t("addr_description"))}</label>
      <textarea id="desk-addr-description" rows="2" maxlength="4000">${esc(box.description)}</textarea>
      <div class="full"><button type="submit" id="desk-addr-submit"${box.busy ? " disabled" : ""}>${esc(t("addr_submit"))}</button></div>
    </form>`;
  }

  function render() {
    const host = $("desk-addr");
    if (!host) return;
    host.innerHTML = `
      <h4 id="desk-addr-toggle">${box.open ? "▾" : "▸"} ${esc(t("addr_title"))}</h4>
      <div${box.open ? "" : " hidden"}>
        <input id="desk-addr-q" type="search" autocomplete="off" value="${esc(box.q)}"
          placeholder="${esc(t("addr_placeholder"))}" aria-label="${esc(t("addr_title"))}">
        <p class="hint">${esc(t("addr_hint"))}</p>
        <div id="desk-addr-error" class="desk-addr-error" role="alert"${box.error ? "" : " hidden"}>${box.error ? esc(errorText(box.error)) : ""}</div>
        <div id="desk-addr-notice" class="desk-addr-notice" role="status"${box.notice ? "" : " hidden"}>${box.notice || ""}</div>
        <div id="desk-addr-results">${box.chosen ? formHtml() : candidatesHtml()}</div>
      </div>`;
  }
  function renderResults() {
    const el = $("desk-addr-results");
    if (el) el.innerHTML = box.chosen ? formHtml() : candidatesHtml();
    const err = $("desk-addr-error");
    if (err) { err.hidden = !box.error; err.textContent = box.error ? errorText(box.error) : ""; }
    const note = $("desk-addr-notice");
    if (note) { note.hidden = !box.notice; note.innerHTML = box.notice || ""; }
  }

  async function search() {
    const q = box.q.trim();
    if (box.abort) box.abort.abort();
    if (q.length < 3) { box.result = null; renderResults(); return; }  // the API wants 3 characters
    const seq = ++box.seq;
    box.abort = new AbortController();
    try {
      const r = await api(`/addresses/search?${new URLSearchParams({ q, limit: "8" })}`, { signal: box.abort.signal });
      if (seq !== box.seq) return;
      box.result = r; box.error = null;
    } catch (err) {
      if (err && err.name === "AbortError") return;
      box.result = null; box.error = err;
    }
    renderResults();
  }

  function showOnMap(c) {
    if (!S.map) return;
    if (box.marker) box.marker.remove();
    const ll = app.toMap(c.lon, c.lat);
    box.marker = L.circleMarker(ll, { radius: 8, color: "#2a7f62", weight: 3, fillColor: "#fff", fillOpacity: 0.9 })
      .bindTooltip(c.text).addTo(S.map);
    S.map.setView(ll, Math.max(S.map.getZoom(), 16), { animate: false });
  }
  function pick(i) {
    const c = box.result && box.result.candidates[i];
    if (!c) return;
    box.chosen = c; box.notice = null;
    renderResults();
    showOnMap(c);
    const cat = $("desk-addr-category");
    if (cat) cat.focus();
  }
  function readForm() {
    if (!$("desk-addr-form")) return;
    box.category = $("desk-addr-category").value;
    box.source = $("desk-addr-source").value;
    box.description = $("desk-addr-description").value;
  }
  async function submit(ev) {
    ev.preventDefault();
    readForm();
    const c = box.chosen;
    if (!c || box.busy) return;
    if (!box.category) { box.error = { code: "category_required", message: t("addr_choose") }; renderResults(); return; }
    box.busy = true; renderResults();
    try {
      const rand = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 18);
      const res = await api("/incidents", { method: "POST", body: {
        source: box.source, external_id: `desk-addr-${rand}`, category: box.category,
        description: box.description, address: c.text, lon: c.lon, lat: c.lat, crs: "EPSG:4490" } });
      const id = res.id || (res.incident && res.incident.id);
      box.notice = esc(fmt("addr_created", { id, grid: `${c.grid_code || ""} ${c.grid_name || ""}`.trim() }));
      box.error = null;
      box.chosen = null; box.result = null; box.q = ""; box.description = "";
      if (box.marker) { box.marker.remove(); box.marker = null; }
      render();
      const d = window.citygridDesk;
      if (d) { await d.openCase(id); d.loadQueue().catch(() => {}); }
    } catch (err) {
      box.error = err;
      renderResults();
    } finally {
      box.busy = false;
      const b = $("desk-addr-submit");
      if (b) b.disabled = false;
    }
  }

  function wire(host) {
    host.addEventListener("input", (ev) => {
      if (ev.target.id === "desk-addr-q") {
        box.q = ev.target.value; box.chosen = null;
        clearTimeout(box.timer);
        box.timer = setTimeout(search, DEBOUNCE_MS);
      } else if (ev.target.closest("#desk-addr-form")) readForm();
    });
    host.addEventListener("change", (ev) => { if (ev.target.closest("#desk-addr-form")) readForm(); });
    host.addEventListener("keydown", (ev) => {
      if (ev.target.id !== "desk-addr-q") return;
      if (ev.key === "Enter") { ev.preventDefault(); clearTimeout(box.timer); search().then(() => pick(0)); }
      if (ev.key === "ArrowDown") { const b = host.querySelector("[data-pick]"); if (b) { ev.preventDefault(); b.focus(); } }
    });
    host.addEventListener("click", (ev) => {
      const el = ev.target.closest("button, h4");
      if (!el) return;
      if (el.id === "desk-addr-toggle") { box.open = !box.open; render(); return; }
      if (el.dataset.pick !== undefined) { pick(Number(el.dataset.pick)); return; }
      if (el.id === "desk-addr-change") { box.chosen = null; renderResults(); $("desk-addr-q").focus(); }
    });
    host.addEventListener("submit", (ev) => { if (ev.target.id === "desk-addr-form") submit(ev); });
  }

  function mount() {
    const desk = document.querySelector("#tab-desk .desk");
    if (!desk || $("desk-addr")) return;
    const can = S.me && (S.me.permissions || []);
    if (can && !(can.includes("locate") && can.includes("incidents:create"))) return;
    style();
    const host = document.createElement("section");
    host.id = "desk-addr";
    host.className = "desk-addr";
    const cols = desk.querySelector(".desk-cols");
    desk.insertBefore(host, cols);
    wire(host);
    render();
  }
  window.addEventListener("citygrid:desk-built", mount);
  mount();
  window.citygridDeskAddress = { box, search, pick };  // for debugging and the UI tests
})();

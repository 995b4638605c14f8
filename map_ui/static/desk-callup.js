// Call-ups (集结调度) for emergencies and major events, in the portal's own tab (应急集结): draw an
// area on the map (or give a region code), see who would be called (the grids' workers, the heads
// above them, the nearest available staff by their last fix, with distance and fix age), send the
// call-up, and follow the answers as they come in (the desk may record a phoned answer). The API
// is /callups (app/routers/callup.py). Uses the portal's session, map and strings (app.js,
// common.js, i18n.js + i18n-desk.js).
"use strict";
(function () {
  const { $, esc } = window.CG;
  const app = window.citygrid;
  const S = app.state;
  const t = window.CG.translator(window.CG_I18N, () => S.lang);
  const api = window.CG.client({ csrf: () => S.csrf, t });
  const CALLERS = ["admin", "supervisor", "dispatcher"];
  const REASONS = ["primary", "backup", "head", "nearest"];
  const cu = { vertices: [], drawing: false, shape: null, area: null, plan: null, excluded: new Set(),
    current: null, timer: null, incident: null, overlay: null, built: false, list: [], markers: null };

  function fmt(key, vars = {}) {
    let s = t(key);
    Object.entries(vars).forEach(([k, v]) => { s = s.split(`{${k}}`).join(String(v)); });
    return s;
  }
  function errorText(err) {
    const code = (err && err.code) || "unknown";
    if (S.lang === "en") return `${(err && err.message) || t("err_unknown")} (${code})`;
    const key = "err_" + code;
    return t(key) !== key ? `${t(key)}（${code}）` : `${t("err_unknown")}：${(err && err.message) || ""}（${code}）`;
  }
  function showError(err) {
    const box = $("cu-error");
    if (!box) return;
    box.hidden = !err;
    box.textContent = err ? errorText(err) : "";
  }
  async function guarded(fn) {
    try { showError(null); return await fn(); } catch (err) { showError(err); return undefined; }
  }
  const age = (s) => s == null ? "–" : s < 60 ? fmt("cu_age_s", { n: s }) : s < 3600
    ? fmt("cu_age_min", { n: Math.round(s / 60) }) : fmt("cu_age_h", { n: (s / 3600).toFixed(1) });
  const metres = (d) => d == null ? "–" : d < 1000 ? `${Math.round(d)} m` : `${(d / 1000).toFixed(2)} km`;
  const when = (s) => !s ? "–" : new Date(s).toLocaleString(S.lang === "en" ? "en-GB" : "zh-CN",
    { timeZone: app.cityTz(), month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  const label = (prefix, v) => { const k = prefix + v; return t(k) === k ? String(v) : t(k); };

  // ---- the tab ----------------------------------------------------------------------------------
  function ensureTab() {
    let btn = document.querySelector('.tab[data-tab="tab-callup"]');
    if (!btn) {
      btn = document.createElement("button");
      btn.type = "button"; btn.className = "tab"; btn.dataset.tab = "tab-callup";
      btn.dataset.i18n = "tab_callup"; btn.textContent = t("tab_callup");
      document.querySelector("nav.tabs").appendChild(btn);
      btn.addEventListener("click", open);
      const style = document.createElement("style");  // a few rules of its own (no stylesheet to share)
      style.textContent = ".callup .cu-row{display:flex;flex-wrap:wrap;gap:.35rem;align-items:center;margin:.3rem 0}" +
        ".callup .cu-off{opacity:.55}.callup tr.cu-acknowledged td.cu-state{color:#1b4332;font-weight:600}" +
        ".callup tr.cu-arrived td.cu-state{color:#0b5cad;font-weight:600}.callup tr.cu-declined td.cu-state{color:#9b1c1c}" +
        ".callup .desk-table td{vertical-align:top}.callup fieldset{margin:.4rem 0}";
      document.head.appendChild(style);
      const panel = document.createElement("section");
      panel.id = "tab-callup"; panel.className = "panel callup"; panel.hidden = true;
      document.querySelector("#map-view aside").appendChild(panel);
    }
    btn.hidden = !allowed();
  }
  function open() {
    $("map-view").classList.remove("desk-wide");
    app.showTab("tab-callup");
    if (!cu.built) build();
    if (S.map) setTimeout(() => S.map.invalidateSize(), 0);
    guarded(loadList);
  }

  function build() {
    cu.built = true;
    cu.lang = S.lang;
    const kinds = ["emergency", "event", "routine"].map((k) =>
      `<option value="${k}">${esc(t("cu_kind_" + k))}</option>`).join("");
    const ages = [[60, "cu_age_1h"], [240, "cu_age_4h"], [1440, "cu_age_24h"], [10080, "cu_age_7d"]]
      .map(([v, k]) => `<option value="${v}"${v === 1440 ? " selected" : ""}>${esc(t(k))}</option>`).join("");
    $("tab-callup").innerHTML = `
      <div id="cu-error" class="desk-error" role="alert" hidden></div>
      <h2>${esc(t("cu_title"))}</h2>
      <p class="hint">${esc(t("cu_hint"))}</p>
      <div class="cu-row">
        <button id="cu-draw" type="button">${esc(t("cu_draw"))}</button>
        <button id="cu-finish" type="button" hidden>${esc(t("cu_finish"))}</button>
        <button id="cu-clear" type="button">${esc(t("cu_clear"))}</button>
        <span id="cu-vertices" class="hint"></span>
      </div>
      <label class="row"><span>${esc(t("cu_region"))}</span>
        <input id="cu-region" placeholder="${esc(t("cu_region_placeholder"))}" autocomplete="off"></label>
      <div class="cu-row">
        <label class="inline"><span>${esc(t("cu_limit"))}</span>
          <input id="cu-limit" type="number" min="0" max="200" value="10" style="width:4rem"></label>
        <label class="inline"><span>${esc(t("cu_fix_age"))}</span><select id="cu-age">${ages}</select></label>
        <button id="cu-who" type="button">${esc(t("cu_who"))}</button>
      </div>
      <div id="cu-plan"></div>
      <fieldset id="cu-send-box" hidden>
        <legend>${esc(t("cu_send_title"))}</legend>
        <label class="row"><span>${esc(t("cu_kind"))}</span><select id="cu-kind">${kinds}</select></label>
        <label class="row"><span>${esc(t("cu_name"))}</span><input id="cu-name" maxlength="200"></label>
        <label class="row"><span>${esc(t("cu_note"))}</span><textarea id="cu-note" rows="2" maxlength="2000"></textarea></label>
        <div id="cu-window" class="cu-row" hidden>
          <label class="inline"><span>${esc(t("cu_from"))}</span><input id="cu-from" type="datetime-local"></label>
          <label class="inline"><span>${esc(t("cu_to"))}</span><input id="cu-to" type="datetime-local"></label>
        </div>
        <label class="row"><span>${esc(t("cu_incident"))}</span>
          <input id="cu-incident" type="number" min="1" placeholder="${esc(t("cu_incident_placeholder"))}"></label>
        <button id="cu-send" type="button" class="primary">${esc(t("cu_send"))}</button>
      </fieldset>
      <div id="cu-current" class="card" hidden></div>
      <h3>${esc(t("cu_open"))}</h3>
      <ol id="cu-list" class="cases"></ol>`;
    $("cu-draw").addEventListener("click", startDraw);
    $("cu-finish").addEventListener("click", finishDraw);
    $("cu-clear").addEventListener("click", clearArea);
    $("cu-who").addEventListener("click", () => guarded(preview));
    $("cu-send").addEventListener("click", () => guarded(send));
    $("cu-kind").addEventListener("change", () => { $("cu-window").hidden = $("cu-kind").value !== "event"; });
    $("cu-plan").addEventListener("change", (ev) => {
      const box = ev.target.closest("input[data-staff]");
      if (!box) return;
      if (box.checked) cu.excluded.delete(box.dataset.staff); else cu.excluded.add(box.dataset.staff);
    });
    $("cu-list").addEventListener("click", (ev) => {
      const li = ev.target.closest("li[data-id]");
      if (li) guarded(() => showCallup(Number(li.dataset.id)));
    });
    $("cu-current").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-answer]");
      if (b) guarded(() => answerFor(b.dataset.staff, b.dataset.answer));
      if (ev.target.closest("#cu-close")) guarded(closeCurrent);
      if (ev.target.closest("#cu-refresh")) guarded(() => showCallup(cu.current.id));
    });
    if (cu.incident) $("cu-incident").value = cu.incident;
    $("cu-finish").hidden = !cu.drawing;
    $("cu-draw").disabled = cu.drawing;
  }

  // ---- drawing an area on the map ---------------------------------------------------------------
  // A transparent layer over the map takes the clicks while drawing (the map's own click would
  // ask /locate); each click adds a vertex, "finish" or a double click closes the polygon.
  function startDraw() {
    clearArea();
    cu.drawing = true;
    const holder = S.map.getContainer();
    const overlay = document.createElement("div");
    overlay.id = "cu-overlay";
    overlay.style.cssText = "position:absolute;inset:0;z-index:1000;cursor:crosshair;";
    holder.appendChild(overlay);
    cu.overlay = overlay;
    // the map must not see these clicks (it would ask /locate) nor drag under them
    ["click", "dblclick", "mousedown", "mouseup", "pointerdown", "pointerup", "touchstart"]
      .forEach((type) => overlay.addEventListener(type, (ev) => ev.stopPropagation()));
    overlay.addEventListener("click", (ev) => {
      const r = holder.getBoundingClientRect();
      cu.vertices.push(S.map.containerPointToLatLng([ev.clientX - r.left, ev.clientY - r.top]));
      redraw();
    });
    overlay.addEventListener("dblclick", (ev) => { ev.preventDefault(); finishDraw(); });
    overlay.addEventListener("wheel", (ev) => {  // zooming still works while drawing
      ev.preventDefault();
      S.map.setZoom(S.map.getZoom() + (ev.deltaY < 0 ? 1 : -1));
    }, { passive: false });
    $("cu-finish").hidden = false;
    $("cu-draw").disabled = true;
    redraw();
  }
  function redraw() {
    if (cu.shape) { cu.shape.remove(); cu.shape = null; }
    const style = { color: "#c1121f", weight: 2, fillOpacity: 0.12, dashArray: cu.drawing ? "5 4" : null,
      interactive: false };
    if (cu.vertices.length >= 3) cu.shape = L.polygon(cu.vertices, style).addTo(S.map);
    else if (cu.vertices.length) cu.shape = L.polyline(cu.vertices, style).addTo(S.map);
    const n = $("cu-vertices");
    if (n) n.textContent = cu.vertices.length ? fmt("cu_vertex_count", { n: cu.vertices.length }) : "";
  }
  function stopDrawing() {
    cu.drawing = false;
    if (cu.overlay) { cu.overlay.remove(); cu.overlay = null; }
    if ($("cu-finish")) $("cu-finish").hidden = true;
    if ($("cu-draw")) $("cu-draw").disabled = false;
  }
  function toWgs(ll) {  // the map's LatLng → WGS84 [lon, lat]: one step back through app.toMap
    const p = app.toMap(ll.lng, ll.lat);
    return [+(2 * ll.lng - p.lng).toFixed(7), +(2 * ll.lat - p.lat).toFixed(7)];
  }
  function finishDraw() {
    // a double click adds the same point twice: drop repeats
    const pts = cu.vertices.filter((v, i) => i === 0 || !v.equals(cu.vertices[i - 1]));
    cu.vertices = pts;
    stopDrawing();
    if (pts.length < 3) { cu.vertices = []; redraw(); showError({ code: "area_too_few", message: t("cu_too_few") }); return; }
    const ring = pts.map(toWgs);
    ring.push(ring[0]);
    cu.area = { type: "Polygon", coordinates: [ring] };
    $("cu-region").value = "";
    redraw();
    guarded(preview);
  }
  function clearArea() {
    stopDrawing();
    cu.vertices = []; cu.area = null; cu.plan = null; cu.excluded = new Set();
    redraw();
    drawFixes(null);
    if ($("cu-plan")) $("cu-plan").innerHTML = "";
    if ($("cu-send-box")) $("cu-send-box").hidden = true;
  }

  // ---- who would be called ----------------------------------------------------------------------
  function where() {
    const region = $("cu-region").value.trim();
    const body = { limit: Number($("cu-limit").value || 0), max_fix_age_min: Number($("cu-age").value) };
    if (region) body.region_code = region; else if (cu.area) body.area = cu.area;
    return body;
  }
  async function preview() {
    cu.plan = await api("/callups/who", { method: "POST", body: where() });
    cu.excluded = new Set();
    renderPlan();
    $("cu-send-box").hidden = false;
    if (!$("cu-name").value) $("cu-name").value = t("cu_default_name");
  }
  function personRow(p, withBox) {
    const box = withBox ? `<input type="checkbox" data-staff="${esc(p.staff_code)}"${p.will_call ? " checked" : " disabled"}>` : "";
    return `<tr class="${p.will_call ? "" : "cu-off"}"><td>${box}</td><td>${esc(label("cu_reason_", p.reason))}</td>` +
      `<td>${esc(p.name)}<br><small>${esc(p.staff_code)} · ${esc(label("role_", p.role))}</small></td>` +
      `<td>${esc(p.phone || "")}${p.will_call ? "" : `<br><small>${esc(label("staff_status_", p.status))}</small>`}</td>` +
      `<td class="num">${esc(metres(p.distance_m))}</td><td class="num">${esc(age(p.fix_age_s))}</td></tr>`;
  }
  const REASON_COLOR = { primary: "#0b5cad", backup: "#2a9d8f", head: "#6a4c93", nearest: "#e76f51" };
  function drawFixes(people) {  // each person's last fix on the map, coloured by why they are called
    if (cu.markers) { cu.markers.remove(); cu.markers = null; }
    if (!people || !S.map) return;
    cu.markers = L.layerGroup(people.filter((x) => x.fix_lon != null).map((x) =>
      L.circleMarker(app.toMap(x.fix_lon, x.fix_lat), { radius: 6, weight: 2, color: "#fff",
        fillColor: REASON_COLOR[x.reason], fillOpacity: 0.9 })
        .bindTooltip(`${esc(x.name)} · ${esc(label("cu_reason_", x.reason))} · ${esc(metres(x.distance_m))} · ${esc(age(x.fix_age_s))}`))).addTo(S.map);
  }
  function renderPlan() {
    const p = cu.plan;
    const people = [...p.responsible, ...p.heads, ...p.nearest];
    drawFixes(people);
    $("cu-plan").innerHTML = `
      <p id="cu-summary">${esc(fmt("cu_summary", { g: p.grids.length, n: p.to_call }))}` +
      `${p.outside_jurisdiction ? " " + esc(fmt("cu_outside", { n: p.outside_jurisdiction })) : ""}</p>
      <div class="desk-scroll"><table id="cu-people" class="desk-table">
        <thead><tr><th></th><th>${esc(t("cu_col_reason"))}</th><th>${esc(t("cu_col_person"))}</th>
          <th>${esc(t("cu_col_phone"))}</th><th>${esc(t("cu_col_distance"))}</th><th>${esc(t("cu_col_fix_age"))}</th></tr></thead>
        <tbody>${people.map((x) => personRow(x, true)).join("")}</tbody></table></div>`;
  }

  // ---- sending and following ------------------------------------------------------------------
  function localToIso(v) {  // a datetime-local value, read in the city's zone
    if (!v) return null;
    const [day, time] = v.split("T");
    const start = window.CG.dayStart(day, app.cityTz());  // "YYYY-MM-DDT00:00:00+hh:mm"
    return `${day}T${time}:00${start.slice(19)}`;
  }
  async function send() {
    const body = { ...where(), kind: $("cu-kind").value, title: $("cu-name").value.trim(),
      note: $("cu-note").value.trim(), exclude: [...cu.excluded] };
    const inc = $("cu-incident").value.trim();
    if (inc) body.incident_id = Number(inc);
    if (body.kind === "event") { body.window_from = localToIso($("cu-from").value); body.window_to = localToIso($("cu-to").value); }
    const out = await api("/callups", { method: "POST", body });
    renderCurrent(out);
    $("cu-send-box").hidden = true;
    await loadList();
  }
  async function showCallup(id) { renderCurrent(await api(`/callups/${id}`)); }
  function renderCurrent(c) {
    cu.current = c;
    const box = $("cu-current");
    box.hidden = false;
    const a = c.answers;
    const rows = c.tasks.map((k) => `<tr data-staff="${esc(k.staff_code)}" class="cu-${esc(k.state)}">
      <td>${esc(label("cu_reason_", k.reason))}</td><td>${esc(k.name)}<br><small>${esc(k.staff_code)}</small></td>
      <td>${esc(metres(k.distance_m))}</td>
      <td class="cu-state">${esc(label("cu_state_", k.state))}${k.note ? `<br><small>${esc(k.note)}</small>` : ""}
        ${k.reinforcements.length ? `<br><small>${esc(fmt("cu_reinforced", { g: k.reinforcements.map((r) => r.grid_code).join(", "), to: when(k.reinforcements[0].valid_to) }))}</small>` : ""}</td>
      <td>${c.closed_at ? "" : `<button type="button" data-answer="acknowledge" data-staff="${esc(k.staff_code)}">${esc(t("cu_ack_for"))}</button>
        <button type="button" data-answer="decline" data-staff="${esc(k.staff_code)}">${esc(t("cu_decline_for"))}</button>`}</td></tr>`).join("");
    box.innerHTML = `<h3>${esc(fmt("cu_current", { id: c.id, title: c.title }))}</h3>
      <p>${esc(label("cu_kind_", c.kind))} · ${esc(when(c.created_at))} · ${esc(c.created_by.replace(/^user:/, ""))}
        ${c.incident_id ? ` · ${esc(fmt("cu_linked", { id: c.incident_id }))}` : ""}
        ${c.window_to ? `<br>${esc(fmt("cu_window", { a: when(c.window_from), b: when(c.window_to) }))}` : ""}</p>
      <p id="cu-answers">${esc(fmt("cu_answers", { sent: a.sent, ack: a.acknowledged, dec: a.declined, arr: a.arrived }))}</p>
      <div class="desk-scroll"><table id="cu-tasks" class="desk-table"><thead><tr><th>${esc(t("cu_col_reason"))}</th>
        <th>${esc(t("cu_col_person"))}</th><th>${esc(t("cu_col_distance"))}</th><th>${esc(t("cu_col_answer"))}</th><th></th></tr></thead>
        <tbody>${rows}</tbody></table></div>
      ${c.closed_at ? `<p class="hint">${esc(fmt("cu_closed", { at: when(c.closed_at) }))}</p>` : `
      <label class="row"><span>${esc(t("cu_answer_note"))}</span><input id="cu-answer-note" maxlength="1000"></label>
      <div class="cu-row"><button id="cu-refresh" type="button">${esc(t("cu_refresh"))}</button>
        <button id="cu-close" type="button">${esc(t("cu_close"))}</button></div>`}`;
    clearInterval(cu.timer);
    if (!c.closed_at) {
      cu.timer = setInterval(() => {  // answers come in from the phones
        if ($("tab-callup").hidden || !cu.current) return;
        api(`/callups/${cu.current.id}`).then((x) => {
          const note = $("cu-answer-note") ? $("cu-answer-note").value : "";
          renderCurrent(x);
          if ($("cu-answer-note")) $("cu-answer-note").value = note;
        }, () => {});
      }, 5000);
    }
  }
  async function answerFor(staff, answer) {
    const note = $("cu-answer-note").value.trim();
    renderCurrent(await api(`/callups/${cu.current.id}/answer`, { method: "POST",
      body: { answer, note, staff_code: staff } }));
  }
  async function closeCurrent() {
    renderCurrent(await api(`/callups/${cu.current.id}/close`, { method: "POST" }));
    await loadList();
  }
  async function loadList() {
    cu.list = await api("/callups?open=true");
    const ol = $("cu-list");
    if (!ol) return;
    ol.innerHTML = cu.list.length ? cu.list.map((c) => `<li data-id="${c.id}"><b>#${c.id}</b> ${esc(c.title)}
      <small>${esc(label("cu_kind_", c.kind))} · ${esc(when(c.created_at))} ·
      ${esc(fmt("cu_list_counts", { n: c.called, ack: c.acknowledged + c.arrived, dec: c.declined }))}</small></li>`).join("")
      : `<li class="hint">${esc(t("cu_none"))}</li>`;
  }

  // ---- from the desk's case view (desk.js says when it shows a case) -------------------------
  const allowed = () => !!(S.me && CALLERS.includes(S.me.role) && S.me.permissions.includes("incidents:handle"));
  document.addEventListener("cg:desk-case", (ev) => {
    const c = ev.detail;
    const acts = $("desk-actions");
    if (!c || !acts || !allowed()) return;
    const b = document.createElement("button");
    b.type = "button"; b.id = "desk-callup"; b.textContent = t("cu_from_case");
    b.addEventListener("click", () => {
      open();
      clearArea();
      $("cu-region").value = c.grid_code || c.region_code || "";
      $("cu-incident").value = c.id; cu.incident = c.id;
      guarded(preview);
    });
    const linked = document.createElement("div");  // beside the workflow's actions, not among them
    linked.id = "desk-callups";
    linked.className = "desk-actions";
    linked.style.marginTop = "0.3rem";
    linked.appendChild(b);
    acts.after(linked);
    api(`/callups?open=false&incident_id=${c.id}`).then((list) => {
      if (!list.length) return;
      linked.insertAdjacentHTML("beforeend", `<div style="flex-basis:100%"><h4>${esc(t("cu_case_linked"))}</h4><ul class="desk-list">` + list.map((x) =>
        `<li><button type="button" class="link" data-cu="${x.id}">#${x.id}</button> ${esc(x.title)} ·
          ${esc(fmt("cu_list_counts", { n: x.called, ack: x.acknowledged + x.arrived, dec: x.declined }))}</li>`).join("") + "</ul></div>");
      linked.querySelectorAll("[data-cu]").forEach((el) => el.addEventListener("click", () => {
        open(); guarded(() => showCallup(Number(el.dataset.cu)));
      }));
    }, () => {});
  });

  // ---- wiring ---------------------------------------------------------------------------------
  window.addEventListener("citygrid:incident", (ev) => {  // a case chosen on the portal: link it
    cu.incident = ev.detail && ev.detail.id;
    if ($("cu-incident") && cu.incident) $("cu-incident").value = cu.incident;
  });
  document.addEventListener("cg:render", () => {
    ensureTab();
    if (cu.built && cu.lang !== S.lang) {  // rebuild in the new language, keeping the current state
      const plan = cu.plan, current = cu.current;
      cu.built = false; build(); cu.plan = plan;
      if (plan) { renderPlan(); $("cu-send-box").hidden = false; }
      if (current) renderCurrent(current);
      redraw();
      guarded(loadList);
    }
  });
  document.querySelectorAll('.tab:not([data-tab="tab-callup"])').forEach((b) => b.addEventListener("click", () => {
    stopDrawing();
  }));
  ensureTab();
  setInterval(ensureTab, 1000);  // the role is known after login (app.js sets state.me)
  window.citygridCallup = { cu, open, preview, startDraw, finishDraw };  // the UI tests, debugging
})();

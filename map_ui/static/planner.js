// CityGrid planners' editor (issue 8): open or create a redraw plan for a community, edit its grids
// with Leaflet-Geoman (reshape, split, merge, create, retire, recode, move) with snapping, validate
// every edit live (?dry_run=true) and draw the problems, compare old and new boundaries, preview the
// impact and activate; undo and redo single edits; the edit list in the page's language; rename a
// grid; move a grid to another community (street plans); the plan's area to and from a GeoPackage.
// Same session, CSRF and offline rules as the portal (app.js): data calls go to the API on this
// origin with the http-only session cookie; writes echo the CSRF token; plan edits, undo/redo,
// imports and activation carry If-Match with the plan's ETag.
"use strict";
(function () {
  const STRINGS = window.CG_I18N_PLANNER;  // i18n-planner.js, loaded before this file
  const CHANGE_STYLE = {
    unchanged: { color: "#1d3557", weight: 1.5, fillColor: "#8fb3d1", fillOpacity: 0.25 },
    changed: { color: "#b35c00", weight: 2, fillColor: "#f4a261", fillOpacity: 0.45 },
    new: { color: "#1b6f65", weight: 2, fillColor: "#2a9d8f", fillOpacity: 0.5 },
    retired: { color: "#9b1c1c", weight: 1.5, dashArray: "5 4", fillColor: "#e5383b", fillOpacity: 0.12 },
    context: { color: "#868e96", weight: 1, dashArray: "3 3", fillColor: "#ced4da", fillOpacity: 0.15 },
  };
  const DRAWN_COLOUR = "#7b2cbf";  // what the planner draws (split line, new grid) before it is applied
  const SELECTED_STYLE = { color: "#111111", weight: 4 };
  const OLD_STYLE = { color: "#222", weight: 2, dashArray: "6 4", fillColor: "#6c757d", fillOpacity: 0.3,
    interactive: false,
    pmIgnore: true, snapIgnore: true };
  const PROBLEM_STYLE = { color: "#d00000", weight: 3, fillColor: "#d00000", fillOpacity: 0.45,
    pmIgnore: true, snapIgnore: true };

  const { $, esc, ApiError } = window.CG;
  const state = {
    lang: localStorage.getItem("citygrid.lang") || "zh-CN",
    csrf: null, map: null, config: null, me: null,
    region: null, plan: null, etag: null, features: null, byCode: {},
    gridLayer: null, oldLayer: null, problemLayer: null, oldCache: null,
    selected: [], tool: null, pending: null, drawn: null, check: null, checkSeq: 0,
    view: "plan", impact: null, lastProblems: [], ready: false,
  };

  // ---- i18n -------------------------------------------------------------------------------------
  const t = window.CG.translator(STRINGS, () => state.lang);
  function tOr(key, fallback) { return t(key) === key ? fallback : t(key); }
  function render() {
    document.documentElement.lang = state.lang;
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    if (state.map) state.map.pm.setLang(state.lang === "en" ? "en" : "zh");
    if (state.legend) state.legend.getContainer().innerHTML = legendHtml();
    if (state.plan) { showPlanMeta(); showEdits(); showProblems(state.lastProblems); showSelection(); }
    if (state.tool) showToolBox();
    if (state.check) showCheck(state.check);
    showImpact(state.impact);
    const nowOpt = $("hist-to").querySelector('option[value=""]');
    if (nowOpt) nowOpt.textContent = t("hist_now");
  }

  // ---- requests ---------------------------------------------------------------------------------
  const api = window.CG.client({ csrf: () => state.csrf, t });
  function showError(err) {
    const box = $("error");
    box.classList.remove("notice");
    if (!err) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = "";
    if (err instanceof ApiError && err.status === 409) {
      box.appendChild(conflictNode(err));
    } else {
      let text = err.message || String(err);
      if (err instanceof ApiError && err.status === 401) text = t("error_session");
      else if (err.code && t("err_" + err.code) !== "err_" + err.code) text = `${t("err_" + err.code)} (${text})`;
      else if (err.code) text += ` (${err.code})`;
      box.textContent = `${t("error")}: ${text}`;
    }
    box.hidden = false;
  }
  function showNotice(text) {
    showError(null);
    const box = $("error");
    box.classList.add("notice");
    box.textContent = text;
    box.hidden = false;
  }
  async function guarded(fn) {
    try { showError(null); return await fn(); } catch (err) {
      if (err instanceof ApiError && err.status === 401 && state.map) showLogin();
      showError(err);
      return undefined;
    }
  }
  function who(name) { return String(name == null ? "" : name).replace(/^user:/, ""); }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(state.lang === "en" ? "en-GB" : "zh-CN");
  }
  function fmtNum(v, digits = 0) {
    if (v == null || !Number.isFinite(Number(v))) return "–";
    return Number(v).toLocaleString(state.lang === "en" ? "en-GB" : "zh-CN",
      { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }
  // A 409 in words: who changed what since the plan was opened, and what to do about it.
  function conflictNode(err) {
    const div = document.createElement("div");
    const d = err.detail || {};
    let head = t("conflict_edit");
    if (d.other_changes || d.changed_boundaries || d.constraint) head = t("conflict_activate");
    else if (d.status) head = t("conflict_status").replace("{status}", tOr("status_" + d.status, d.status));
    let html = `<strong>${esc(head)}</strong> `;
    if (d.last_edit) {
      const e = d.last_edit;
      html += `${esc(t("conflict_last"))}: ${esc(who(e.by) || "?")} · ${esc(fmtTime(e.at))} · ${esc(opName(e.op || ""))} ` +
        `${esc(describeEdit(e))}. `;
    }
    (d.other_changes || []).forEach((o) => {
      html += `${esc(t("conflict_other"))} ${esc(o.boundary_version)} (${esc(o.label || "")}` +
        `${o.plan_id ? `, ${esc(t("plan"))} #${esc(o.plan_id)}` : ""}, ${esc(fmtTime(o.activated_at))}). `;
    });
    if (err.message && err.message !== "409") html += `<span class="hint">${esc(err.message)}</span> `;
    html += `${esc(d.other_changes || d.changed_boundaries ? t("conflict_new_plan") : t("conflict_reload"))} ` +
      `<button type="button" id="conflict-reload" class="small">${esc(t("reload"))}</button>`;
    div.className = "conflict";
    div.innerHTML = html;
    div.querySelector("#conflict-reload").addEventListener("click", () => {
      if (state.plan) guarded(() => openPlan(state.plan.id));
    });
    return div;
  }

  // ---- session ----------------------------------------------------------------------------------
  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function showLogin() {
    $("login-view").hidden = false; $("editor-view").hidden = true;
    $("logout").hidden = true; $("who").textContent = "";
  }
  async function showEditor() {
    state.me = await api("/auth/me");
    $("login-view").hidden = true; $("editor-view").hidden = false; $("logout").hidden = false;
    $("who").textContent = `${state.me.name.replace(/^user:/, "")} (${state.me.role})`;
    if (!state.map) await initMap();
    state.map.invalidateSize();
    if (!$("region-results").children.length) await searchRegions();
  }
  async function login(ev) {
    ev.preventDefault();
    await guarded(async () => {
      const body = await api("/auth/session", { method: "POST",
        body: { username: $("username").value, password: $("password").value } });
      state.csrf = body.csrf_token;
      $("password").value = "";
      await showEditor();
    });
  }
  async function logout() {
    await guarded(() => api("/auth/logout", { method: "POST" }));
    state.csrf = null;
    showLogin();
  }

  // ---- map --------------------------------------------------------------------------------------
  function swatch(style, extra = "") {
    const border = `${style.weight || 1}px ${style.dashArray ? "dashed" : "solid"} ${style.color}`;
    const fill = style.fill === false ? "transparent" : style.fillColor + alpha(style.fillOpacity);
    return `<i style="border:${border};background:${fill};${extra}"></i>`;
  }
  function alpha(op) { return Math.round((op == null ? 0.2 : op) * 255).toString(16).padStart(2, "0"); }
  function legendHtml() {
    const rows = ["unchanged", "changed", "new", "retired", "context"].map((c) =>
      `<div>${swatch(CHANGE_STYLE[c])}${esc(t("change_" + c))}</div>`);
    rows.push(`<div>${swatch({ ...SELECTED_STYLE, weight: 3, fillOpacity: 0, fillColor: "#ffffff" })}${esc(t("legend_selected"))}</div>`);
    rows.push(`<div>${swatch({ color: DRAWN_COLOUR, weight: 3, fillColor: DRAWN_COLOUR, fillOpacity: 0.2 })}` +
      `${esc(t("legend_drawn"))}</div>`);
    rows.push(`<div>${swatch(OLD_STYLE)}${esc(t("legend_old"))}</div>`);
    rows.push(`<div>${swatch(PROBLEM_STYLE)}${esc(t("legend_problem"))}</div>`);
    const base = state.config && state.config.base_map;
    const note = !base ? t("basemap_none") : base.crs === "GCJ02" ? t("basemap_gcj") : "";
    return `<h3>${esc(t("legend"))}</h3>${rows.join("")}` + (note ? `<div class="hint">${esc(note)}</div>` : "");
  }
  async function initMap() {
    state.config = await api("/portal/config.json");
    const base = state.config.base_map;
    // Edits are sent back in the data's own lon/lat: a GCJ-02 base map would shift them, so the editor
    // shows a base map only when it is in WGS84.
    const useBase = base && base.crs === "WGS84";
    const map = L.map("map", { zoomControl: true, attributionControl: !!useBase, boxZoom: false });
    state.map = map;
    if (useBase) L.tileLayer(base.url, { maxZoom: 19 }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    const legend = L.control({ position: "bottomright" });
    legend.onAdd = () => { const div = L.DomUtil.create("div", "legend"); div.innerHTML = legendHtml(); return div; };
    legend.addTo(map);
    state.legend = legend;
    map.pm.setLang(state.lang === "en" ? "en" : "zh");
    map.pm.setGlobalOptions({ snappable: true, snapDistance: 15, allowSelfIntersection: false,
      finishOnEnter: true, templineStyle: { color: DRAWN_COLOUR }, hintlineStyle: { color: DRAWN_COLOUR,
        dashArray: [5, 5] }, pathOptions: { color: DRAWN_COLOUR, weight: 3 } });
    state.gridLayer = L.featureGroup().addTo(map);
    state.oldLayer = L.featureGroup().addTo(map);
    state.problemLayer = L.featureGroup().addTo(map);
    const city = (state.config && state.config.city) || {};
    if (city.bounds) map.fitBounds(city.bounds, { animate: false });  // the city's extent
    else map.setView([35, 105], 4);  // no city loaded yet: China
    map.on("pm:create", onDrawn);
    await guarded(showJurisdiction);
    state.ready = true;
  }
  async function showJurisdiction() {
    // The jurisdiction's outline as the starting view (the first scope prefix, padded to a region code).
    const prefix = (state.me.scope || [])[0];
    if (!prefix) return;
    const code = prefix.length < 12 ? prefix.padEnd(12, "0") : prefix;
    const region = await api(`/regions/${encodeURIComponent(code)}`);
    if (!region.geometry) return;
    const outline = L.geoJSON(region.geometry, { style: { color: "#1d3557", weight: 2, fill: false },
      interactive: false, pmIgnore: true, snapIgnore: true }).addTo(state.map);
    state.jurisdiction = outline;
    state.map.fitBounds(outline.getBounds(), { animate: false });
  }

  // ---- community and plan choice ----------------------------------------------------------------
  async function searchRegions(ev) {
    if (ev) ev.preventDefault();
    await guarded(async () => {
      const q = $("region-q").value.trim();
      const params = new URLSearchParams({ limit: "30" });
      if (q) params.set("q", q);
      const page = await api(`/regions?${params}`);
      const items = page.items.filter((r) => r.level === "community" || r.level === "street");
      const list = $("region-results");
      list.innerHTML = "";
      if (!items.length) { list.innerHTML = `<li class="hint">${esc(t("no_results"))}</li>`; return; }
      items.forEach((r) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button"; b.className = "link"; b.dataset.code = r.code;
        b.textContent = `${r.name} ${r.code}`;
        b.addEventListener("click", () => guarded(() => chooseRegion(r)));
        li.appendChild(b);
        list.appendChild(li);
      });
    });
  }
  async function chooseRegion(region) {
    state.region = region;
    document.querySelectorAll("#region-results button").forEach((b) =>
      b.classList.toggle("chosen", b.dataset.code === region.code));
    const full = await api(`/regions/${encodeURIComponent(region.code)}`);
    if (state.regionOutline) state.regionOutline.remove();
    if (full.geometry) {
      state.regionOutline = L.geoJSON(full.geometry, { style: { color: "#2a9d8f", weight: 3, fill: false },
        interactive: false, pmIgnore: true, snapIgnore: true }).addTo(state.map);
      if (!state.plan || state.plan.region_code !== region.code) {
        state.map.fitBounds(state.regionOutline.getBounds(), { animate: false, padding: [20, 20] });
      }
    }
    $("region-name").textContent = `${region.name} ${region.code}`;
    $("plans-section").hidden = false;
    await listPlans();
    await boundariesChanged();
  }

  async function listPlans() {
    const body = await api("/plans");  // not yet activated: draft, returned, submitted, approved
    const mine = body.items.filter((p) => p.region_code === state.region.code
      && !["activated", "discarded"].includes(p.status));
    const list = $("plan-list");
    list.innerHTML = "";
    if (!mine.length) { list.innerHTML = `<li class="hint">${esc(t("no_plans"))}</li>`; return; }
    mine.forEach((p) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button"; b.className = "link"; b.dataset.plan = p.id;
      b.textContent = `#${p.id} ${p.name}` + (p.stale ? ` ⚠ ${t("stale_badge")}` : "");
      b.addEventListener("click", () => guarded(() => openPlan(p.id)));
      li.appendChild(b);
      li.appendChild(document.createTextNode(` · ${who(p.created_by)} · ${fmtTime(p.updated_at)}`));
      list.appendChild(li);
    });
  }
  async function createPlan(ev) {
    ev.preventDefault();
    await guarded(async () => {
      const { body, etag } = await api("/plans", { method: "POST", withEtag: true,
        body: { name: $("plan-name").value.trim(), region_code: state.region.code } });
      $("plan-name").value = "";
      await committed(body.id, () => true);
      await listPlans();
      setPlan(body, etag);
      await loadFeatures(true);
      await refreshImpact();
    });
  }
  async function openPlan(id) {
    const { body, etag } = await api(`/plans/${encodeURIComponent(id)}`, { withEtag: true });
    setPlan(body, etag);
    await loadFeatures(true);
    await refreshImpact();
  }
  function setPlan(plan, etag) {
    const samePlan = state.plan && state.plan.id === plan.id;
    state.plan = plan;
    state.etag = etag || plan.etag;
    if (!samePlan) { state.oldCache = null; state.impact = null; showImpact(null); }
    $("plan-section").hidden = false;
    $("activate-result").hidden = true;
    showPlanMeta(); showEdits(); showProblems(plan.problems || []);
    const draft = plan.status === "draft" || plan.status === "returned";  // returned: editable again
    document.querySelectorAll(".tools button, #apply, #validate").forEach((b) => {
      b.disabled = !draft;
    });
    $("activate").disabled = plan.status !== "approved";
    $("discard").disabled = !["draft", "returned", "submitted", "approved"].includes(plan.status);
    if (draft) $("apply").disabled = !(state.check && state.check.ok);
    // Extension point: other planner files (staffing, review, undo) follow the open plan.
    document.dispatchEvent(new CustomEvent("cg:plan-changed", { detail: { plan, etag: state.etag } }));
  }
  function showPlanMeta() {
    const p = state.plan;
    $("plan-title").textContent = `#${p.id} ${p.name}`;
    $("plan-meta").innerHTML =
      `<span>${esc(t("status"))}: <b id="plan-status">${esc(tOr("status_" + p.status, p.status))}</b></span>` +
      `<span>${esc(t("base_version"))}: ${esc(p.base_version)}</span>` +
      `<span>${esc(t("created_by"))}: ${esc(who(p.created_by))}</span>` +
      `<span class="etag">${esc(t("etag"))}: <code id="plan-etag">${esc(state.etag)}</code></span>` +
      (p.stale && p.status === "draft" ? `<p id="plan-stale" class="stale">⚠ ${esc(t("plan_stale"))}</p>` : "");
  }
  // An edit in the page's language, from the facts the API stores with it (its English summary
  // when it has none: an edit stored before facts existed).
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, k) => (values[k] == null ? "" : String(values[k])));
  }
  function codesText(list) { return (list || []).join(state.lang === "en" ? ", " : "、"); }
  function describeEdit(e) {
    const f = e && e.facts;
    if (!f || !f.op || t("edit_" + f.op) === "edit_" + f.op) return (e && (e.summary || e.op)) || "";
    const v = { ...f };
    ["area_m2", "delta_m2"].forEach((k) => { if (f[k] != null) v[k] = fmtNum(f[k]); });
    if (f.delta_m2 != null && f.delta_m2 > 0) v.delta_m2 = "+" + v.delta_m2;
    ["codes", "neighbours", "from"].forEach((k) => { if (Array.isArray(f[k])) v[k] = codesText(f[k]); });
    ["changed", "new", "retired"].forEach((k) => { if (Array.isArray(f[k])) v[k] = f[k].length; });
    let text = fill(t("edit_" + f.op), v);
    if (f.op === "reshape" && f.neighbours && f.neighbours.length) text += fill(t("edit_reshape_neighbours"), v);
    if (f.op === "create" && f.from && f.from.length) text += fill(t("edit_create_from"), v);
    return text;
  }
  function opName(op) { return tOr("op_" + op, op); }
  function showEdits() {
    const edits = (state.plan && state.plan.edits) || [];
    $("edits").innerHTML = edits.length ? edits.map((e) => {
      const st = e.state && e.state !== "done" ? ` <span class="edit-state">${esc(t("edit_state_" + e.state))}</span>` : "";
      return `<li class="edit edit-${esc(e.state || "done")}" data-seq="${esc(e.seq)}"><b>${esc(opName(e.op))}</b> ` +
        `<span class="edit-text">${esc(describeEdit(e))}</span>${st} ` +
        `<span class="hint">${esc(who(e.by))} · ${esc(fmtTime(e.at))}</span></li>`;
    }).join("") : `<li class="hint">${esc(t("no_edits"))}</li>`;
  }
  // ---- the plan's grids on the map --------------------------------------------------------------
  async function loadFeatures(fit) {
    state.features = await api(`/plans/${encodeURIComponent(state.plan.id)}/features`);
    drawFeatures();
    if (fit) {
      const b = L.latLngBounds([]);
      state.gridLayer.eachLayer((l) => { if (l.feature && l.feature.properties.change !== "context") b.extend(l.getBounds()); });
      if (b.isValid()) state.map.fitBounds(b, { animate: false, padding: [20, 20] });
      await drawCommunities();
    }
    if (state.view !== "plan") await drawOld();
  }
  const isStreetPlan = () => !!state.plan && state.plan.region_code.endsWith("000");
  // In a street plan, the communities' current outlines (grids snap to them too).
  async function drawCommunities() {
    if (state.communityLayer) { state.communityLayer.remove(); state.communityLayer = null; }
    state.communities = [];
    if (!isStreetPlan()) return;
    const page = await api(`/regions/${encodeURIComponent(state.plan.region_code)}/children?limit=1000`);
    state.communities = page.items.filter((c) => c.level === "community").map((c) => ({ code: c.code, name: c.name }));
    const regions = await Promise.all(page.items.map((c) => api(`/regions/${encodeURIComponent(c.code)}`)));
    state.communityLayer = L.featureGroup().addTo(state.map);
    regions.filter((r) => r.geometry).forEach((r) => {
      L.geoJSON(r.geometry, { style: { color: "#2a9d8f", weight: 3, fill: false }, interactive: false,
        pmIgnore: true }).eachLayer((l) => state.communityLayer.addLayer(l));
    });
  }
  // Grid labels: the last 3 digits; in a street plan the community's 3 digits too (001-004).
  function shortCode(code) { return isStreetPlan() ? `${code.slice(9, 12)}-${code.slice(12)}` : code.slice(-3); }
  function drawFeatures() {
    state.gridLayer.clearLayers();
    state.byCode = {};
    const order = { context: 0, retired: 1, unchanged: 2, changed: 3, new: 4 };
    const feats = [...state.features.features].sort((a, b) =>
      (order[a.properties.change] || 0) - (order[b.properties.change] || 0));
    feats.forEach((f) => {
      if (!f.geometry) return;
      const change = f.properties.change;
      const layer = L.geoJSON(f, { style: () => ({ ...baseStyle(change),
        className: `grid grid-${change}` }) });
      layer.eachLayer((poly) => {
        poly.feature = f;
        state.gridLayer.addLayer(poly);
        const el = poly.getElement && poly.getElement();
        if (el) el.setAttribute("data-code", f.properties.code);
        if (change === "context" || change === "retired") {
          poly.bindTooltip(`${f.properties.code} ${f.properties.name || ""} · ${tOr("change_" + change, change)}`,
            { sticky: true });
          return;
        }
        state.byCode[f.properties.code] = poly;
        state.gridLayer.addLayer(label(f.geometry, shortCode(f.properties.code), "grid-label"));
        poly.on("click", (ev) => onGridClick(f.properties.code, ev));
      });
    });
    state.selected = state.selected.filter((c) => state.byCode[c]);
    styleSelection();
    applyView();
  }
  // A permanent label inside a (Multi)Polygon: the middle of the widest horizontal chord through
  // the centroid of its largest ring, so a grid with a hole is not labelled inside the hole.
  function labelPoint(geometry) {
    const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    const ringArea = (r) => Math.abs(r.reduce((acc, p, i) => {
      const q = r[(i + 1) % r.length]; return acc + p[0] * q[1] - q[0] * p[1];
    }, 0)) / 2;
    const poly = polys.reduce((best, p) => (ringArea(p[0]) > ringArea(best[0]) ? p : best));
    const outer = poly[0];
    const cy = outer.reduce((acc, p) => acc + p[1], 0) / outer.length;
    const ys = [cy, ...[0.5, 0.35, 0.65].map((f) => {
      const lo = Math.min(...outer.map((p) => p[1])), hi = Math.max(...outer.map((p) => p[1]));
      return lo + (hi - lo) * f;
    })];
    for (const y of ys) {
      const xs = [];
      poly.forEach((ring) => ring.forEach((p, i) => {
        const q = ring[(i + 1) % ring.length];
        if ((p[1] > y) !== (q[1] > y)) xs.push(p[0] + ((y - p[1]) / (q[1] - p[1])) * (q[0] - p[0]));
      }));
      xs.sort((a, b) => a - b);
      let best = null;
      for (let i = 0; i + 1 < xs.length; i += 2) {
        if (!best || xs[i + 1] - xs[i] > best[1] - best[0]) best = [xs[i], xs[i + 1]];
      }
      if (best) return L.latLng(y, (best[0] + best[1]) / 2);
    }
    return L.latLng(outer[0][1], outer[0][0]);
  }
  // The (Multi)Polygon part of a problem's location (a GeometryCollection may hold lines too).
  function polygonal(g) {
    if (g.type === "Polygon" || g.type === "MultiPolygon") return g;
    if (g.type === "GeometryCollection") {
      const polys = g.geometries.map(polygonal).filter(Boolean);
      if (polys.length) return { type: "MultiPolygon", coordinates: polys.flatMap((q) =>
        q.type === "Polygon" ? [q.coordinates] : q.coordinates) };
    }
    return null;
  }
  function label(geometry, text, className, offset = [0, 0]) {
    return L.tooltip({ permanent: true, direction: "center", className, offset, interactive: false })
      .setLatLng(labelPoint(geometry)).setContent(esc(text));
  }
  function workingCodes() {
    return state.features.features.filter((f) => !["context", "retired"].includes(f.properties.change))
      .map((f) => f.properties.code);
  }
  function featureOf(code) {
    return state.features && state.features.features.find((f) => f.properties.code === code);
  }
  // The plan's own style for a grid; in the old-versus-new view the new grids are outlines over the
  // grey current boundaries, and unchanged grids fade.
  function baseStyle(change) {
    const style = { ...(CHANGE_STYLE[change] || CHANGE_STYLE.unchanged) };
    if (state.view !== "diff") return change === "retired" ? { ...style, fillOpacity: 0 } : style;
    if (change === "unchanged" || change === "context") return { ...style, fillOpacity: 0.05, opacity: 0.4 };
    return { ...style, weight: 3, fillOpacity: 0.08 };
  }
  function styleSelection() {
    Object.entries(state.byCode).forEach(([code, poly]) => {
      const change = poly.feature.properties.change;
      const base = baseStyle(change);
      poly.setStyle(state.selected.includes(code) ? { ...base, ...SELECTED_STYLE } : base);
      if (state.selected.includes(code)) poly.bringToFront();
    });
    showSelection();
  }
  function showSelection() {
    $("selection").textContent = state.selected.length
      ? t("selection") + state.selected.join(", ") : t("selection_none");
  }
  function onGridClick(code, ev) {
    if (state.map.pm.globalDrawModeEnabled()) return;  // clicks belong to the drawing
    if (state.tool === "reshape") return;
    const multi = state.tool === "merge" || (ev.originalEvent && (ev.originalEvent.shiftKey || ev.originalEvent.ctrlKey));
    if (multi) {
      state.selected = state.selected.includes(code) ? state.selected.filter((c) => c !== code)
        : [...state.selected, code];
    } else {
      state.selected = state.selected.length === 1 && state.selected[0] === code ? [] : [code];
    }
    styleSelection();
    if (state.tool) { showToolBox(); rebuildPending(); }
  }

  // ---- old versus new ---------------------------------------------------------------------------
  async function oldGrids() {
    // Current boundaries of the plan's area: unchanged grids are the plan's own geometry; the others
    // come from the registry (GET /regions/{code}), once per plan until an edit changes the set.
    const region = state.plan.region_code;
    const prefix = region.endsWith("000") && region.length === 12 ? region.slice(0, 9) : region;
    const page = await api(`/regions?${new URLSearchParams({ level: "grid", q: prefix, limit: "1000" })}`);
    const codes = page.items.map((r) => r.code).filter((c) => c.startsWith(prefix));
    const cache = state.oldCache || (state.oldCache = {});
    await Promise.all(codes.map(async (code) => {
      const f = featureOf(code);
      if (f && f.properties.change === "unchanged") { cache[code] = f.geometry; return; }
      if (cache[code] === undefined || (f && f.properties.change === "unchanged")) {
        const r = await api(`/regions/${encodeURIComponent(code)}`);
        cache[code] = r.geometry;
      }
    }));
    return codes.map((code) => ({ code, geometry: cache[code] })).filter((g) => g.geometry);
  }
  async function drawOld() {
    state.oldLayer.clearLayers();
    if (state.view === "plan" || !state.plan) return;
    const grids = await oldGrids();
    grids.forEach((g) => {
      const f = featureOf(g.code);
      const changed = !f || f.properties.change !== "unchanged";
      if (state.view === "diff" && !changed) return;  // the diff shows only what changes
      const style = state.view === "old"
        ? { ...CHANGE_STYLE.unchanged, interactive: false, pmIgnore: true, snapIgnore: true } : OLD_STYLE;
      L.geoJSON(g.geometry, { style, interactive: false, pmIgnore: true, snapIgnore: true })
        .eachLayer((l) => state.oldLayer.addLayer(l));
      const text = state.view === "old" ? shortCode(g.code) : `${shortCode(g.code)}${t("old_suffix")}`;
      state.oldLayer.addLayer(label(g.geometry, text, "grid-label old-label",
        state.view === "old" ? [0, 0] : [0, -14]));
    });
    applyView();
  }
  function applyView() {
    const map = state.map;
    const showNew = state.view !== "old";
    if (showNew && !map.hasLayer(state.gridLayer)) state.gridLayer.addTo(map);
    if (!showNew && map.hasLayer(state.gridLayer)) map.removeLayer(state.gridLayer);
    state.gridLayer.bringToFront();  // new outlines above the grey current boundaries
    state.problemLayer.bringToFront();
    if (state.features) styleSelection();
    document.querySelectorAll(".tools button").forEach((b) => {
      b.disabled = !state.plan || state.plan.status !== "draft" || state.view === "old";
    });
  }
  async function setView(view) {
    state.view = view;
    if (view === "old" && state.tool) cancelTool();
    await guarded(drawOld);
    applyView();
  }

  // ---- tools ------------------------------------------------------------------------------------
  function field(id, labelKey, input) {
    return `<label class="row"><span>${esc(t(labelKey))}</span>${input}</label>`;
  }
  function options(codes, selected) {
    return codes.map((c) => `<option value="${esc(c)}"${c === selected ? " selected" : ""}>${esc(c)}</option>`).join("");
  }
  function showToolBox() {
    const tool = state.tool;
    $("tool-box").hidden = !tool;
    $("tool-buttons").hidden = false;
    document.querySelectorAll(".tools button").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
    if (!tool) return;
    $("tool-hint").textContent = t("hint_" + tool);
    const keep = (id) => { const el = $(id); return el ? el.value : ""; };
    const sel = state.selected;
    let html = "";
    if (tool === "split") {
      html = field("f-new-code", "field_new_code", `<input id="f-new-code" maxlength="15" value="${esc(keep("f-new-code"))}">`) +
        field("f-new-name", "field_new_name", `<input id="f-new-name" value="${esc(keep("f-new-name"))}">`);
    } else if (tool === "merge") {
      const current = keep("f-keep");
      html = field("f-keep", "field_keep", `<select id="f-keep">${options(sel, sel.includes(current) ? current : sel[0])}</select>`);
    } else if (tool === "create") {
      const parents = [...new Set(state.features.features.filter((f) => f.properties.change !== "context")
        .map((f) => f.properties.parent_code).filter(Boolean))];
      if (!parents.length && state.plan) parents.push(state.plan.region_code);
      html = field("f-parent", "field_parent", `<select id="f-parent">${options(parents, keep("f-parent"))}</select>`) +
        field("f-name", "field_name", `<input id="f-name" value="${esc(keep("f-name"))}">`) +
        field("f-code", "field_code", `<input id="f-code" maxlength="15" value="${esc(keep("f-code"))}">`);
    } else if (tool === "retire") {
      const others = workingCodes().filter((c) => !sel.includes(c));
      html = field("f-into", "field_into", `<select id="f-into"><option value=""></option>${options(others, keep("f-into"))}</select>`);
    } else if (tool === "recode") {
      html = field("f-recode", "field_recode", `<input id="f-recode" maxlength="15" value="${esc(keep("f-recode"))}">`);
    } else if (tool === "move") {
      // A grid changes community only inside a plan over their street (both communities change).
      const grid = featureOf(sel[0]);
      const from = grid ? grid.properties.parent_code : "";
      const others = (state.communities || []).filter((c) => c.code !== from);
      html = !isStreetPlan() ? `<p class="hint warn" id="move-needs-street">${esc(t("move_needs_street"))}</p>`
        : field("f-move", "field_move_parent", `<select id="f-move"><option value=""></option>` +
          others.map((c) => `<option value="${esc(c.code)}"${c.code === keep("f-move") ? " selected" : ""}>` +
            `${esc(c.name)} ${esc(c.code)}</option>`).join("") + "</select>");
    } else if (tool === "rename") {
      const grid = featureOf(sel[0]);
      const current = $("f-rename") ? keep("f-rename") : (grid ? grid.properties.name || "" : "");
      html = field("f-rename", "field_rename", `<input id="f-rename" maxlength="200" value="${esc(current)}">`);
    }
    $("tool-fields").innerHTML = html;
    $("tool-fields").querySelectorAll("input, select").forEach((el) => {
      el.addEventListener(el.tagName === "SELECT" ? "change" : "input", () => rebuildPending());
    });
  }
  function startTool(tool) {
    if (state.tool) cancelTool();
    const needsOne = ["reshape", "split", "retire", "recode", "move", "rename"].includes(tool);
    if (needsOne && state.selected.length !== 1) { showError({ message: t("need_one") }); return; }
    showError(null);
    state.tool = tool;
    setCheck(null);
    showToolBox();
    const map = state.map;
    if (tool === "reshape") {
      const poly = state.byCode[state.selected[0]];
      // Generated boundaries are dense: without the middle markers the vertices stay legible.
      poly.pm.enable({ snappable: true, snapDistance: 15, allowSelfIntersection: false, draggable: false,
        removeVertexOn: "contextmenu", hideMiddleMarkers: true });
      poly.on("pm:edit", onReshape);
    } else if (tool === "split") {
      map.pm.enableDraw("Line", { snappable: true, snapDistance: 15 });
    } else if (tool === "create") {
      map.pm.enableDraw("Polygon", { snappable: true, snapDistance: 15 });
    }
    rebuildPending();
  }
  function cancelTool() {
    const map = state.map;
    if (map.pm.globalDrawModeEnabled()) map.pm.disableDraw();
    Object.values(state.byCode).forEach((poly) => {
      if (poly.pm && poly.pm.enabled()) poly.pm.disable();
      poly.off("pm:edit", onReshape);
    });
    if (state.drawn) { state.drawn.remove(); state.drawn = null; }
    const wasReshape = state.tool === "reshape" && state.pending;
    state.tool = null; state.pending = null;
    setCheck(null);
    showToolBox();
    if (wasReshape && state.features) drawFeatures();  // undo the moved vertices on screen
    showProblems(state.plan ? state.plan.problems || [] : []);
  }
  function onReshape() { rebuildPending(); }
  function onDrawn(e) {
    if (state.drawn) state.drawn.remove();
    state.drawn = e.layer;
    e.layer.options.pmIgnore = true;
    e.layer.options.snapIgnore = true;
    e.layer.setStyle({ color: DRAWN_COLOUR, weight: 3, fillColor: DRAWN_COLOUR, fillOpacity: 0.2 });
    rebuildPending();
  }
  function value(id) { const el = $(id); return el ? el.value.trim() : ""; }
  // The edit the tool describes now, or null if it is not complete yet.
  function currentEdit() {
    const sel = state.selected;
    switch (state.tool) {
      case "reshape": {
        const poly = state.byCode[sel[0]];
        if (!poly || !poly.pm.enabled()) return null;
        return { op: "reshape", code: sel[0], geometry: poly.toGeoJSON(15).geometry };
      }
      case "split": {
        if (!state.drawn || sel.length !== 1) return null;
        const edit = { op: "split", code: sel[0], line: state.drawn.toGeoJSON(15).geometry };
        if (value("f-new-code")) edit.new_code = value("f-new-code");
        if (value("f-new-name")) edit.new_name = value("f-new-name");
        return edit;
      }
      case "merge":
        if (sel.length < 2) return null;
        return { op: "merge", codes: [...sel], keep: value("f-keep") || sel[0] };
      case "create": {
        if (!state.drawn) return null;
        const edit = { op: "create", parent_code: value("f-parent"), geometry: state.drawn.toGeoJSON(15).geometry };
        if (value("f-name")) edit.name = value("f-name");
        if (value("f-code")) edit.code = value("f-code");
        return edit;
      }
      case "retire":
        if (sel.length !== 1 || !value("f-into")) return null;
        return { op: "retire", code: sel[0], into: value("f-into") };
      case "recode":
        if (sel.length !== 1 || !value("f-recode")) return null;
        return { op: "recode", code: sel[0], new_code: value("f-recode") };
      case "move":
        if (sel.length !== 1 || !value("f-move")) return null;
        return { op: "move", code: sel[0], parent_code: value("f-move") };
      case "rename": {
        const grid = featureOf(sel[0]);
        if (sel.length !== 1 || !value("f-rename") || (grid && grid.properties.name === value("f-rename"))) return null;
        return { op: "rename", code: sel[0], name: value("f-rename") };
      }
      default:
        return null;
    }
  }
  let checkTimer = null;
  function rebuildPending() {
    state.pending = currentEdit();
    $("apply").disabled = true;
    clearTimeout(checkTimer);
    if (!state.pending) { setCheck(null); return; }
    setCheck({ running: true });
    checkTimer = setTimeout(dryRun, 250);  // one check per pause while dragging or typing
  }
  // Live validation: the edit is checked with ?dry_run=true; nothing is stored.
  async function dryRun() {
    const edit = state.pending;
    if (!edit) return;
    const seq = ++state.checkSeq;
    let result;
    try {
      const body = await api(`/plans/${encodeURIComponent(state.plan.id)}/edits?dry_run=true`, {
        method: "POST", body: edit, ifMatch: state.etag });
      // Problems the edit does not add (already in the data) do not block it, but are shown.
      result = { ok: true, problems: body.problems || [], summary: body.summary, facts: body.facts };
    } catch (err) {
      result = checkFailure(err);
    }
    if (seq !== state.checkSeq || edit !== state.pending) return;  // a newer check is on its way
    setCheck(result);
  }
  function checkFailure(err) {
    if (!(err instanceof ApiError)) return { ok: false, problems: [], error: err };
    if (err.status === 422 && err.detail && Array.isArray(err.detail.problems)) {
      return { ok: false, problems: err.detail.problems, message: err.message };
    }
    return { ok: false, problems: [], error: err };
  }
  function setCheck(result) {
    state.check = result;
    if (!result) { $("check").innerHTML = `<span class="hint">${esc(t("check_idle"))}</span>`; }
    showCheck(result);
    if (result && !result.running) showProblems(result.problems || []);
    $("apply").disabled = !(result && result.ok) || !state.plan || state.plan.status !== "draft";
  }
  function showCheck(result) {
    const box = $("check");
    box.className = "check";
    if (!result) { box.innerHTML = `<span class="hint">${esc(t("check_idle"))}</span>`; return; }
    if (result.running) { box.classList.add("running"); box.textContent = t("check_running"); return; }
    if (result.ok) {
      box.classList.add("ok");
      const what = result.facts ? describeEdit({ facts: result.facts, summary: result.summary }) : result.summary;
      box.textContent = `✓ ${t("check_ok")}` + (what ? ` (${what})` : "");
      return;
    }
    box.classList.add("bad");
    if (result.error) {
      box.textContent = "";
      if (result.error instanceof ApiError && result.error.status === 409) { box.appendChild(conflictNode(result.error)); return; }
      box.textContent = `✗ ${t("check_bad")}${result.error.message}` + (result.error.code ? ` (${result.error.code})` : "");
      return;
    }
    box.textContent = result.problems.length ? `✗ ${t("check_bad")}${result.problems.length} ${t("check_problems")}`
      : `✗ ${t("check_bad")}${result.message || ""}`;
  }
  async function applyEdit() {
    const edit = currentEdit();
    if (!edit) return;
    await guarded(async () => {
      let res;
      try {
        res = await api(`/plans/${encodeURIComponent(state.plan.id)}/edits`, { method: "POST", body: edit,
          ifMatch: state.etag, withEtag: true });
      } catch (err) {
        const failure = checkFailure(err);
        if (failure.problems.length) { setCheck(failure); return; }
        throw err;
      }
      await committed(state.plan.id, hasEtag(res.etag || res.body.etag));
      const tool = state.tool;
      state.pending = null;  // the screen must not be reset to the old shape: the edit is stored
      cancelTool();
      setPlan(res.body, res.etag);
      state.oldCache = null;
      state.selected = [];
      await loadFeatures(false);
      $("check").innerHTML = "";
      const last = (res.body.edits || []).slice(-1)[0];
      $("tool-box").hidden = false;
      $("tool-hint").textContent = "";
      $("tool-fields").innerHTML = "";
      $("check").className = "check ok";
      $("check").textContent = `✓ ${t("applied")}${last ? describeEdit(last) : tool}`;
      $("tool-buttons").hidden = true;
      state.impact = null;
      await refreshImpact();
    });
  }

  // The API answers a write before its transaction has committed (FastAPI ends the connection
  // dependency after the response is sent), so a read right after it may still see the old plan.
  // Wait until GET /plans/{id} shows the new ETag (usually at once) before reading the result.
  async function committed(planId, done) {
    for (let i = 0; i < 30; i += 1) {
      try {
        const got = await api(`/plans/${encodeURIComponent(planId)}`, { withEtag: true });
        if (done(got.body, got.etag || got.body.etag)) return;
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;  // not committed yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const hasEtag = (want) => (_, etag) => etag === want;
  // The history (planner-history.js) lists the versions again: another region, a new version.
  const boundariesChanged = async () => { if (window.citygrid.history) await window.citygrid.history.refresh(); };

  // ---- problems ---------------------------------------------------------------------------------
  function problemKind(p) { return tOr("kind_" + p.kind, p.kind); }
  function showProblems(problems) {
    state.lastProblems = problems || [];
    if (!state.problemLayer) return;
    state.problemLayer.clearLayers();
    const list = $("problems");
    if (!state.lastProblems.length) { list.innerHTML = `<li class="hint">${esc(t("no_problems"))}</li>`; return; }
    list.innerHTML = "";
    state.lastProblems.forEach((p, i) => {
      const li = document.createElement("li");
      const where = p.location ? ` <button type="button" class="small link" data-problem="${i}">${esc(t("problem_at"))}</button>` : "";
      const area = p.area_m2 != null ? ` (${fmtNum(p.area_m2, 1)} m²)` : "";
      li.innerHTML = `<b>${esc(problemKind(p))}</b>${area}: ${esc(p.message)}` +
        (p.codes && p.codes.length ? ` <span class="hint">[${p.codes.map(esc).join(", ")}]</span>` : "") + where;
      list.appendChild(li);
      if (!p.location) return;
      const layer = L.geoJSON(p.location, { style: PROBLEM_STYLE, pmIgnore: true, snapIgnore: true,
        pointToLayer: (_, ll) => L.circleMarker(ll, { radius: 8, color: "#fff", weight: 2, fillColor: "#d00000",
          fillOpacity: 1, pmIgnore: true, snapIgnore: true }) });
      layer.bindTooltip(`${problemKind(p)}: ${p.message}`, { sticky: true, className: "problem-tip" });
      layer.eachLayer((l) => { l.options.pmIgnore = true; l.options.snapIgnore = true; });
      const spot = polygonal(p.location);
      if (spot) {  // a pin too: a thin sliver or overlap is hard to see
        L.circleMarker(labelPoint(spot), { radius: 7, color: "#fff", weight: 2, fillColor: "#d00000",
          fillOpacity: 1, pmIgnore: true, snapIgnore: true }).addTo(layer);
      }
      layer.addTo(state.problemLayer);
      const btn = li.querySelector("button");
      if (btn) btn.addEventListener("click", () => {
        const b = layer.getBounds();
        if (b.isValid()) state.map.fitBounds(b.pad(2), { maxZoom: 18 });
        layer.openTooltip(b.getCenter());
      });
    });
    state.problemLayer.bringToFront();
  }
  async function validatePlan() {
    await guarded(async () => {
      const res = await api(`/plans/${encodeURIComponent(state.plan.id)}/validate`, { method: "POST" });
      showProblems(res.problems || []);
    });
  }

  // ---- impact -----------------------------------------------------------------------------------
  async function refreshImpact() {
    if (!state.plan) return;
    await guarded(async () => {
      $("impact").innerHTML = `<span class="hint">${esc(t("loading"))}</span>`;
      state.impact = await api(`/plans/${encodeURIComponent(state.plan.id)}/impact`);
      showImpact(state.impact);
    });
  }
  function listOf(items, fmt, limit = 20) {
    if (!items || !items.length) return "";
    const shown = items.slice(0, limit).map((x) => `<li>${fmt(x)}</li>`).join("");
    const more = items.length > limit ? `<li class="hint">${esc(t("more"))} ${items.length - limit} ${esc(t("items"))}</li>` : "";
    return `<ul>${shown}${more}</ul>`;
  }
  function person(w) {
    if (w == null || typeof w !== "object") return esc(w);
    const who = [w.staff_code, w.name].filter(Boolean).map(esc).join(" ");
    const move = w.from_grid || w.to_grid ? ` ${esc(w.from_grid || "–")} → ${esc(w.to_grid || t("no_grid"))}` : "";
    const duty = w.duty ? ` <span class="hint">${esc(tOr("duty_" + w.duty, w.duty))}</span>` : "";
    return (who || esc(JSON.stringify(w))) + move + duty;
  }
  function showImpact(impact) {
    const box = $("impact");
    if (!impact) { box.innerHTML = `<span class="hint">${esc(t("impact_none"))}</span>`; return; }
    const grids = (impact.grids || []).filter((g) => g.change !== "unchanged" || Math.abs(g.delta_m2 || 0) > 0);
    const rows = grids.map((g) => `<tr data-code="${esc(g.code)}"><td>${esc(g.code)}</td>` +
      `<td class="change-${esc(g.change)}">${esc(tOr("change_" + g.change, g.change))}</td>` +
      `<td class="num">${fmtNum(g.old_area_m2)}</td><td class="num">${fmtNum(g.new_area_m2)}</td>` +
      `<td class="num">${g.delta_m2 > 0 ? "+" : ""}${fmtNum(g.delta_m2)}` +
      (g.delta_pct != null && Number.isFinite(g.delta_pct)
        ? `<span class="pct">${g.delta_pct > 0 ? "+" : ""}${fmtNum(g.delta_pct, 1)}%</span>` : "") +
      `</td></tr>`).join("");
    const inc = impact.incidents || {};
    const workers = impact.workers || {};
    let html = `<h4>${esc(t("impact_grids"))}</h4>` + (rows
      ? `<table id="impact-grids"><thead><tr><th>${esc(t("impact_code"))}</th><th>${esc(t("impact_change"))}</th>` +
        `<th>${esc(t("impact_old"))}</th><th>${esc(t("impact_new"))}</th><th>${esc(t("impact_delta"))}</th></tr>` +
        `</thead><tbody>${rows}</tbody></table>`
      : `<p class="hint">${esc(t("impact_no_change"))}</p>`);
    html += `<h4>${esc(t("impact_incidents"))}: <span id="impact-incidents">${esc(inc.open_moving ?? 0)}</span></h4>` +
      listOf(inc.items, (i) => `#${esc(i.id)} ${esc(i.from_grid || "–")} → ${esc(i.to_grid || "–")}`) +
      `<p class="hint">${esc(t("incidents_note"))}</p>`;
    html += `<h4>${esc(t("impact_workers_moving"))}: ${esc((workers.moving || []).length)}</h4>` +
      listOf(workers.moving, person);
    html += `<h4 class="${(workers.without_grid || []).length ? "warn" : ""}">${esc(t("impact_without_grid"))}: ` +
      `${esc((workers.without_grid || []).length)}</h4>` + listOf(workers.without_grid, person);
    const orphan = impact.grids_without_worker || [];
    html += `<h4 class="${orphan.length ? "warn" : ""}">${esc(t("impact_grids_without_worker"))}: ${esc(orphan.length)}</h4>` +
      (orphan.length ? `<p>${orphan.map(esc).join(", ")}</p>` : "");
    const h = impact.households;
    if (h && h.available === false) {
      html += `<h4>${esc(t("impact_households"))}</h4><p class="hint">${esc(t("households_none"))}</p>`;
    } else if (h) {
      const n = h.moving ?? h.count ?? h.total ?? (Array.isArray(h.items) ? h.items.length : "");
      html += `<h4>${esc(t("impact_households"))}: ${esc(n)}</h4>` +
        (Array.isArray(h.items) ? listOf(h.items, (x) => esc(typeof x === "object"
          ? [x.address || x.name || x.id, x.from_grid && `${x.from_grid} → ${x.to_grid}`].filter(Boolean).join(" ")
          : x)) : "");
    }
    box.innerHTML = html;
  }

  // ---- activation -------------------------------------------------------------------------------
  async function activate(ev) {
    ev.preventDefault();
    if (!state.plan) return;
    if (!window.confirm(t("activate_confirm"))) return;
    await guarded(async () => {
      const body = { reroute_open_incidents: $("reroute").checked };
      const when = $("effective-at").value;
      if (when) body.effective_at = new Date(when).toISOString();
      let res;
      try {
        res = await api(`/plans/${encodeURIComponent(state.plan.id)}/activate`, { method: "POST", body,
          ifMatch: state.etag });
      } catch (err) {
        const failure = checkFailure(err);
        if (failure.problems.length) { showProblems(failure.problems); }
        throw err;
      }
      await committed(res.plan.id, hasEtag(res.plan.etag));
      if (state.tool) cancelTool();
      $("tool-box").hidden = true;
      setPlan(res.plan, res.plan.etag);
      const box = $("activate-result");
      box.innerHTML = `<strong>✓ ${esc(t("activated"))}</strong><dl>` +
        `<dt>${esc(t("boundary_version"))}</dt><dd id="activated-version">${esc(res.boundary_version)}</dd>` +
        `<dt>${esc(t("effective"))}</dt><dd>${esc(fmtTime(res.effective_at))}</dd>` +
        `<dt>${esc(t("rerouted"))}</dt><dd id="activated-rerouted">${esc(res.rerouted)}</dd></dl>` +
        (new Date(res.effective_at) > new Date() ? `<p class="hint" id="activated-scheduled">${esc(t("scheduled_note"))}</p>` : "") +
        `<p><a href="/portal">${esc(t("to_portal"))}</a></p>`;
      box.hidden = false;
      await loadFeatures(false);
      await listPlans();
      await boundariesChanged();  // the new boundary version is in the history at once
      box.scrollIntoView({ block: "nearest" });
    });
  }
  async function discard() {
    if (!state.plan || !window.confirm(t("discard_confirm"))) return;
    await guarded(async () => {
      await api(`/plans/${encodeURIComponent(state.plan.id)}`, { method: "DELETE", ifMatch: state.etag });
      await committed(state.plan.id, (p) => p.status === "discarded");
      if (state.tool) cancelTool();
      state.plan = null; state.features = null;
      state.gridLayer.clearLayers(); state.oldLayer.clearLayers(); state.problemLayer.clearLayers();
      if (state.communityLayer) { state.communityLayer.remove(); state.communityLayer = null; }
      $("plan-section").hidden = true;
      await listPlans();
      showNotice(t("discarded"));
    });
  }

  // ---- start ------------------------------------------------------------------------------------
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem("citygrid.lang", state.lang);
    render();
  });
  $("search-form").addEventListener("submit", searchRegions);
  $("new-plan-form").addEventListener("submit", createPlan);
  document.querySelectorAll(".tools button").forEach((b) => b.addEventListener("click", () => {
    if (state.tool === b.dataset.tool) cancelTool(); else startTool(b.dataset.tool);
  }));
  $("apply").addEventListener("click", applyEdit);
  $("cancel").addEventListener("click", cancelTool);
  $("validate").addEventListener("click", validatePlan);
  $("impact-refresh").addEventListener("click", refreshImpact);
  $("activate-form").addEventListener("submit", activate);
  $("discard").addEventListener("click", discard);
  $("effective-at").addEventListener("input", () => {
    // The API re-routes only on immediate activation (422 reroute_needs_immediate otherwise).
    const later = $("effective-at").value && new Date($("effective-at").value) > new Date();
    $("reroute").disabled = !!later;
    if (later) $("reroute").checked = false;
    $("reroute-hint").hidden = !later;
  });
  document.querySelectorAll('input[name="view"]').forEach((r) => r.addEventListener("change", (e) => setView(e.target.value)));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.tool) cancelTool(); });
  render();
  state.csrf = cookie("citygrid_csrf");
  if (state.csrf) {
    showEditor().catch(() => { state.csrf = null; showLogin(); });
  } else {
    showLogin();
  }
  // Extension point: another planner file asks for the open plan to be read again after it changed it.
  document.addEventListener("cg:plan-reload", () => guarded(async () => {
    if (!state.plan) return;
    await openPlan(state.plan.id);
    await listPlans();
  }));
  // For the other planner files (they load after this one), debugging and the UI tests.
  window.citygrid = { state, t, tOr, api, guarded, showError, showNotice, openPlan, listPlans,
    refreshImpact, loadFeatures, who, fmtTime, describeEdit, fill, setPlan, committed, hasEtag,
    cancelTool, label, history: null };
})();

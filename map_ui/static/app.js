// CityGrid portal: log in, draw streets (and one street's communities), answer "who is responsible here?".
// Data calls go to the API on the same origin with the http-only session cookie; writes echo the CSRF
// token. Nothing is fetched from elsewhere unless an operator configures a base map.
"use strict";
(function () {
  const STRINGS = window.CG_I18N;
  const $ = (id) => document.getElementById(id);
  const state = {
    lang: localStorage.getItem("citygrid.lang") || "zh-CN",
    csrf: null, map: null, config: null, gcj: false,
    streets: null, communities: null, grid: null, point: null, lastLocate: null,
  };
  let pending = 0;

  // ---- i18n -------------------------------------------------------------------------------------
  function t(key) {
    const table = STRINGS[state.lang] || STRINGS["zh-CN"];
    return key in table ? table[key] : key;
  }
  function label(prefix, value) {  // a translated enum value, or the value itself if unknown
    const key = prefix + value;
    return t(key) === key ? value : t(key);
  }
  function render() {
    document.documentElement.lang = state.lang;
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    if (state.lastLocate) showCard(state.lastLocate);
    if (state.legend) state.legend.getContainer().innerHTML = legendHtml();
  }

  // ---- requests ---------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || String(status));
      this.status = status; this.code = body && body.code; this.detail = body && body.detail;
    }
  }
  function busy(delta) {
    pending += delta;
    $("loading").hidden = pending <= 0;
  }
  async function api(path, options = {}) {
    const opts = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
    if (opts.body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    if (opts.method && opts.method !== "GET" && state.csrf) opts.headers["X-CSRF-Token"] = state.csrf;
    busy(1);
    try {
      let res;
      try { res = await fetch(path, opts); } catch (e) { throw new ApiError(0, { message: t("error_network") }); }
      if (res.status === 204) return null;
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      if (!res.ok) throw new ApiError(res.status, body);
      return body;
    } finally { busy(-1); }
  }
  function showError(err) {
    const box = $("error");
    if (!err) { box.hidden = true; box.textContent = ""; return; }
    let text = err.message || String(err);
    if (err.code) text += ` (${err.code})`;
    box.textContent = `${t("error")}: ${text}`;
    box.hidden = false;
  }
  async function guarded(fn) {
    try { showError(null); return await fn(); } catch (err) {
      if (err instanceof ApiError && err.status === 401 && state.map) { showLogin(); }
      showError(err);
      return undefined;
    }
  }

  // ---- coordinates: the map shows GCJ-02 only when the configured base map is in GCJ-02 --------
  const A = 6378245.0, EE = 0.00669342162296594323;
  function outOfChina(lon, lat) { return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271; }
  function wgsToGcj(lon, lat) {
    if (outOfChina(lon, lat)) return [lon, lat];
    const x = lon - 105.0, y = lat - 35.0;
    let dLat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
    dLat += (20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0 / 3.0;
    dLat += (20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin(y / 3.0 * Math.PI)) * 2.0 / 3.0;
    dLat += (160.0 * Math.sin(y / 12.0 * Math.PI) + 320 * Math.sin(y * Math.PI / 30.0)) * 2.0 / 3.0;
    let dLon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
    dLon += (20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0 / 3.0;
    dLon += (20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin(x / 3.0 * Math.PI)) * 2.0 / 3.0;
    dLon += (150.0 * Math.sin(x / 12.0 * Math.PI) + 300.0 * Math.sin(x / 30.0 * Math.PI)) * 2.0 / 3.0;
    const radLat = lat / 180.0 * Math.PI;
    let magic = Math.sin(radLat); magic = 1 - EE * magic * magic;
    const sqrtMagic = Math.sqrt(magic);
    dLat = (dLat * 180.0) / ((A * (1 - EE)) / (magic * sqrtMagic) * Math.PI);
    dLon = (dLon * 180.0) / (A / sqrtMagic * Math.cos(radLat) * Math.PI);
    return [lon + dLon, lat + dLat];
  }
  function toMap(lon, lat) {  // a WGS84 lon, lat → the map's LatLng
    const [x, y] = state.gcj ? wgsToGcj(lon, lat) : [lon, lat];
    return L.latLng(y, x);
  }
  const geoOptions = (style) => ({ style, interactive: false,
    coordsToLatLng: (c) => toMap(c[0], c[1]) });

  // ---- session ----------------------------------------------------------------------------------
  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function showLogin() {
    $("login-view").hidden = false; $("map-view").hidden = true;
    $("logout").hidden = true; $("who").textContent = "";
  }
  async function showMap(who) {
    $("login-view").hidden = true; $("map-view").hidden = false; $("logout").hidden = false;
    $("who").textContent = who || "";
    if (!state.map) await initMap();
    state.map.invalidateSize();
  }
  async function login(ev) {
    ev.preventDefault();
    await guarded(async () => {
      const body = await api("/auth/session", { method: "POST",
        body: { username: $("username").value, password: $("password").value } });
      state.csrf = body.csrf_token;
      $("password").value = "";
      await showMap(`${body.username} (${body.role})`);
    });
  }
  async function logout() {
    await guarded(() => api("/auth/logout", { method: "POST" }));
    state.csrf = null;
    showLogin();
  }

  // ---- map --------------------------------------------------------------------------------------
  function legendHtml() {
    return `<h3>${t("legend")}</h3>` +
      `<div><i class="street"></i>${t("legend_street")}</div>` +
      `<div><i class="community"></i>${t("legend_community")}</div>` +
      `<div><i class="grid"></i>${t("legend_grid")}</div>` +
      `<div><i class="point"></i>${t("legend_point")}</div>` +
      (state.config && state.config.base_map ? "" : `<div class="hint">${t("basemap_none")}</div>`);
  }
  async function initMap() {
    state.config = await api("/portal/config.json");
    const base = state.config.base_map;
    state.gcj = !!(base && base.crs === "GCJ02");
    const map = L.map("map", { zoomControl: true, attributionControl: !!base, preferCanvas: false });
    state.map = map;
    if (base) L.tileLayer(base.url, { maxZoom: 19 }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    const legend = L.control({ position: "bottomright" });
    legend.onAdd = () => { const div = L.DomUtil.create("div", "legend"); div.innerHTML = legendHtml(); return div; };
    legend.addTo(map);
    state.legend = legend;
    map.setView([29.3, 120.07], 11);
    map.on("click", (e) => {
      // The map's own CRS: WGS84 unless the base map is GCJ-02.
      locate(e.latlng.lng, e.latlng.lat, state.gcj ? "gcj02" : "EPSG:4326");
    });
    await guarded(loadStreets);
    state.ready = true;  // streets drawn (or their error shown)
  }
  async function loadStreets() {
    const page = await api("/regions?level=street&limit=1000");
    const select = $("street");
    page.items.forEach((s) => {
      const opt = document.createElement("option");
      opt.value = s.code; opt.textContent = `${s.name} ${s.code}`;
      select.appendChild(opt);
    });
    const regions = await Promise.all(page.items.map((s) => api(`/regions/${encodeURIComponent(s.code)}`)));
    state.streets = L.layerGroup().addTo(state.map);
    const bounds = L.latLngBounds([]);
    regions.filter((r) => r.geometry).forEach((r) => {
      const layer = L.geoJSON(r.geometry, geoOptions({ color: "#1d3557", weight: 2, fill: true,
        fillColor: "#a8dadc", fillOpacity: 0.15 }));
      layer.bindTooltip(r.name, { permanent: false });
      layer.addTo(state.streets);
      bounds.extend(layer.getBounds());
    });
    if (bounds.isValid()) state.map.fitBounds(bounds, { animate: false });
  }
  async function loadCommunities(street) {
    if (state.communities) { state.communities.remove(); state.communities = null; }
    if (!street) return;
    const page = await api(`/regions/${encodeURIComponent(street)}/children?limit=1000`);
    const regions = await Promise.all(page.items.map((c) => api(`/regions/${encodeURIComponent(c.code)}`)));
    state.communities = L.layerGroup().addTo(state.map);
    const bounds = L.latLngBounds([]);
    regions.filter((r) => r.geometry).forEach((r) => {
      const layer = L.geoJSON(r.geometry, geoOptions({ color: "#2a9d8f", weight: 1, dashArray: "4 3",
        fill: false }));
      layer.addTo(state.communities);
      bounds.extend(layer.getBounds());
    });
    if (bounds.isValid()) state.map.fitBounds(bounds);
  }

  // ---- responsibility lookup --------------------------------------------------------------------
  async function locate(lon, lat, crs) {
    await guarded(async () => {
      const q = new URLSearchParams({ lon: String(lon), lat: String(lat), crs });
      let body;
      try { body = await api(`/locate?${q}`); } catch (err) {
        $("card").hidden = true; state.lastLocate = null; throw err;
      }
      state.lastLocate = body;
      showCard(body);
      if (state.point) state.point.remove();
      state.point = L.circleMarker(toMap(body.point.lon, body.point.lat), { radius: 6, color: "#fff",
        weight: 2, fillColor: "#d62828", fillOpacity: 1 }).addTo(state.map);
      if (state.grid) { state.grid.remove(); state.grid = null; }
      const target = body.grid || body.region;
      if (target) {
        const region = await api(`/regions/${encodeURIComponent(target.code)}`);
        if (region.geometry) {
          state.grid = L.geoJSON(region.geometry, geoOptions({ color: "#e76f51", weight: 2,
            fillColor: "#e76f51", fillOpacity: 0.35 })).addTo(state.map);
        }
      }
    });
  }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;" }[c]));
  }
  function person(p) {
    if (!p) return `<span class="warn">${t("nobody")}</span>`;
    const status = t(`staff_${p.status}`);
    return `<span class="person-name">${esc(p.name)}</span> · ${esc(p.phone)} · ${esc(label("role_", p.role))}` +
      ` · <span class="${p.status === "available" ? "" : "warn"}">${esc(status)}</span>`;
  }
  function showCard(b) {
    const grid = b.grid || b.region;
    const rows = [
      [t("card_grid"), grid ? `<span id="card-grid-code">${esc(grid.code)}</span> ${esc(grid.name)}` : t("nobody")],
      [t("card_chain"), b.chain.map((c) => esc(c.name)).join(" › ") || t("nobody")],
      [t("card_status"), esc(t(`status_${b.status}`))],
      [t("card_responsible"), `<span id="card-responsible">${person(b.responsible)}</span>`],
      [t("card_backup"), person(b.backup)],
      [t("card_fallback"), esc(t(`fallback_${b.fallback}`))],
      [t("card_escalation"), b.escalation.length ? "<ul>" + b.escalation.map((s) =>
        `<li>${esc(s.name)}: ${s.head ? person(s.head) : t("nobody")}</li>`).join("") + "</ul>" : t("nobody")],
      [t("card_point"), `${b.point.lon.toFixed(6)}, ${b.point.lat.toFixed(6)}`],
      [t("card_read_as"), esc(b.point.crs_in)],
    ];
    if (b.unavailable && b.unavailable.length) {
      rows.push([t("card_unavailable"), b.unavailable.map(person).join("<br>")]);
    }
    $("card").innerHTML = (b.stale ? `<p class="warn">${t("card_stale")}</p>` : "") + "<dl>" +
      rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("") + "</dl>";
    $("card").hidden = false;
  }
  function pasted(ev) {
    ev.preventDefault();
    const parts = $("coords").value.trim().split(/[\s,，;]+/).filter(Boolean).map(Number);
    if (parts.length !== 2 || parts.some((v) => !Number.isFinite(v))) {
      showError({ message: t("error_coords") });
      return;
    }
    locate(parts[0], parts[1], $("crs").value);
  }

  // ---- start ------------------------------------------------------------------------------------
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem("citygrid.lang", state.lang);
    render();
  });
  $("street").addEventListener("change", (e) => guarded(() => loadCommunities(e.target.value)));
  $("coord-form").addEventListener("submit", pasted);
  render();
  // A session cookie from earlier: reuse it if the API still accepts it.
  state.csrf = cookie("citygrid_csrf");
  if (state.csrf) {
    api("/regions?level=street&limit=1").then(() => showMap(""), () => { state.csrf = null; showLogin(); });
  } else {
    showLogin();
  }
  window.citygrid = { state };  // for debugging and the UI tests
})();

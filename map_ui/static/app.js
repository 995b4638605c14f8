// CityGrid portal: outlines by zoom with choropleths, heatmap, open cases (live), lookup card,
// patrol coverage. Data calls go to the API on the same origin with the http-only session cookie;
// writes echo the CSRF token. Nothing is fetched from elsewhere unless an operator configures a
// base map. Every answer is already cut to the user's jurisdiction by the API.
"use strict";
(function () {
  const STRINGS = window.CG_I18N;
  const { $, esc, ApiError } = window.CG;
  const OPEN = ["received", "registered", "dispatched", "handling", "reported", "verified"];
  const CLOSED = ["closed", "evaluated"];
  const LIGHT = { red: "#d62828", yellow: "#f4a261", green: "#2a9d8f" };
  const RAMP = ["#fff5eb", "#fdd0a2", "#fd8d3c", "#e6550d", "#a63603"];  // sequential, 5 classes
  const COVER_RAMP = ["#a50f15", "#ef3b2c", "#fc9272", "#c7e9c0", "#41ab5d"];  // low → high share
  const SINCE_RAMP = [...COVER_RAMP].reverse();  // hours since the last patrol: recent is good
  const PATROL_THEMES = ["coverage", "since_patrol"];
  const isPatrolTheme = () => PATROL_THEMES.includes($("theme").value);
  const rampFor = (theme) => theme === "coverage" ? COVER_RAMP : theme === "since_patrol" ? SINCE_RAMP : RAMP;
  const state = {
    lang: localStorage.getItem("citygrid.lang") || "zh-CN",
    csrf: null, map: null, config: null, gcj: false, me: null, errorSource: null,
    outlines: null, outlineData: null, labels: null, outlineSeq: 0, values: null, breaks: null,
    countsCache: new Map(), coverage: null, grid: null, point: null, lastLocate: null,
    heat: null, heatSeq: 0, heatDrawn: false, cases: [], caseLayer: null, selectedCase: null,
    events: null, unpatrolled: null, track: null, categories: [], ready: false,
    firstView: false, firstViewMs: null, loginAt: null,
  };

  // ---- i18n -------------------------------------------------------------------------------------
  const t = window.CG.translator(STRINGS, () => state.lang);
  // The city's time zone (its profile, via /portal/config.json); Beijing time until it is known.
  const cityTz = () => (state.config && state.config.city && state.config.city.tz) || Intl.DateTimeFormat().resolvedOptions().timeZone;  // config not loaded yet: the browser's
  function label(prefix, value) {  // a translated enum value, or the value itself if unknown
    const key = prefix + value;
    return t(key) === key ? value : t(key);
  }
  function render() {
    document.documentElement.lang = state.lang;
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    if (state.lastLocate) window.citygrid.showCard(state.lastLocate);  // app-lookup.js
    if (state.legend) state.legend.getContainer().innerHTML = legendHtml();
    if (state.cases.length) window.citygrid.renderCases();  // app-cases.js
    fillCategories();
    setLive(state.liveState || null);
    if (!$("map-view").hidden) showWho();
    document.dispatchEvent(new Event("cg:render"));  // views in other files (month.js) follow
  }

  // ---- requests ---------------------------------------------------------------------------------
  const api = window.CG.client({ csrf: () => state.csrf, t });
  // An error stays up until the user acts again, or until the background refresh that raised it
  // (outlines, heat, cases: named by ``source``) succeeds: a refresh must not hide the user's error.
  function showError(err, source = "action") {
    const box = $("error");
    if (!err) { box.hidden = true; box.textContent = ""; state.errorSource = null; return; }
    let text = err.message || String(err);
    if (err.code) text += ` (${err.code})`;
    box.textContent = `${t("error")}: ${text}`;
    box.hidden = false;
    state.errorSource = source;
  }
  async function guarded(fn, source = "action") {
    try {
      if (source === "action" || state.errorSource === source) showError(null);
      return await fn();
    } catch (err) {
      if (err && err.name === "AbortError") return undefined;
      if (err instanceof ApiError && err.status === 401 && state.map) {
        showLogin(); err = new ApiError(401, { message: t("error_session") });
      }
      showError(err, source);
      return undefined;
    }
  }
  const can = (perm) => !!(state.me && state.me.permissions.includes(perm));

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
  function fromMap(latlng) {  // the map's LatLng → WGS84 [lon, lat] (one step: ~1 m, enough for a view)
    if (!state.gcj) return [latlng.lng, latlng.lat];
    const [x, y] = wgsToGcj(latlng.lng, latlng.lat);
    return [2 * latlng.lng - x, 2 * latlng.lat - y];
  }
  const geoOptions = (style, extra = {}) => ({ style, interactive: false,
    coordsToLatLng: (c) => toMap(c[0], c[1]), ...extra });
  function viewBbox() {
    const b = state.map.getBounds().pad(0.1);
    const [x0, y0] = fromMap(b.getSouthWest()), [x1, y1] = fromMap(b.getNorthEast());
    return [x0, y0, x1, y1].map((v) => v.toFixed(5)).join(",");
  }

  // ---- session ----------------------------------------------------------------------------------
  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function showLogin() {
    $("login-view").hidden = false; $("map-view").hidden = true;
    $("logout").hidden = true; $("who").textContent = ""; $("planner-link").hidden = true;
    if (state.events) { state.events.close(); state.events = null; }
    $("live-status").hidden = true;
  }
  async function showMap() {
    // Who I am and the page settings, side by side: the first view waits on the slower one only.
    const [me, config] = await Promise.all([api("/auth/me"), state.config || api("/portal/config.json")]);
    if (state.me && state.me.name !== me.name) { location.reload(); return; }  // another user: start clean
    state.me = me; state.config = config;
    $("login-view").hidden = true; $("map-view").hidden = false; $("logout").hidden = false;
    showWho();
    document.dispatchEvent(new Event("cg:render"));
    $("planner-link").hidden = !can("plans:read");
    // What the role may not read is not offered (the API would refuse it anyway).
    const patrols = can("patrols:read");
    document.querySelector("[data-tab=tab-patrol]").hidden = !patrols;
    PATROL_THEMES.forEach((v) => { $("theme").querySelector(`option[value=${v}]`).hidden = !patrols; });
    $("register-form").hidden = true;
    if (!state.map) { defaultDates(); await initMap(); return; }
    // The same user again (the session had expired): bring the view up to date.
    state.map.invalidateSize();
    const cases = window.citygrid;  // loadCases, startLive: app-cases.js
    await Promise.all([guarded(cases.loadCases), cases.startLive(), guarded(drawOutlines)]);
  }
  function showWho() {
    if (state.me) $("who").textContent = `${state.me.name.replace(/^user:/, "")} (${label("userrole_", state.me.role)})`;
  }
  async function login(ev) {
    ev.preventDefault();
    state.loginAt = performance.now();
    await guarded(async () => {
      const body = await api("/auth/session", { method: "POST",
        body: { username: $("username").value, password: $("password").value } });
      state.csrf = body.csrf_token;
      $("password").value = "";
      await showMap();
    });
  }
  async function logout() {
    await guarded(() => api("/auth/logout", { method: "POST" }));
    state.csrf = null;
    // A fresh page: nothing of this user's view (streets, cases, stream) may survive the next login.
    location.reload();
  }

  // ---- dates and filters ------------------------------------------------------------------------
  // A day in Beijing time, as YYYY-MM-DD (the API's windows are Beijing days whatever the browser's zone).
  const isoDay = (d) => d.toLocaleDateString("sv-SE", { timeZone: cityTz() });
  function setDays(days) {
    const today = new Date();
    $("until").value = isoDay(new Date(today.getTime() + 86400000));
    $("since").value = isoDay(new Date(today.getTime() - (days - 1) * 86400000));
  }
  // The default windows, as days on the city's clock: set again once the city's config has
  // arrived, since before that the browser's zone stands in (a UTC browser is a day behind Beijing
  // after 16:00 UTC).
  function defaultDates() {
    setDays(90);
    const yesterday = isoDay(new Date(Date.now() - 86400000));
    $("patrol-since").value = yesterday;
    $("patrol-until").value = isoDay(new Date());
    $("track-date").value = yesterday;
  }
  function windowParams(q) {  // dates are local (Beijing) days; until is exclusive
    if ($("since").value) q.set("since", window.CG.dayStart($("since").value, cityTz()));
    if ($("until").value) q.set("until", window.CG.dayStart($("until").value, cityTz()));
    const street = $("street").value;
    if (street) q.set("region", street);
    return q;
  }
  function heatParams() {
    const q = windowParams(new URLSearchParams());
    const cat = $("heat-category").value;
    if (cat) q.append("category", cat);
    const st = $("heat-state").value;
    const states = st === "open" ? OPEN : st === "closed" ? CLOSED : st === "voided" ? ["voided"] : [];
    states.forEach((s) => q.append("state", s));
    return q;
  }

  // ---- map --------------------------------------------------------------------------------------
  function themeTitle() {
    const theme = $("theme").value;
    return theme === "none" ? "" : t(theme === "per_km2" ? "theme_rate" : `theme_${theme}`);
  }
  function legendHtml() {
    let html = `<h3>${t("legend")}</h3>`;
    const theme = $("theme").value;
    if (theme !== "none" && state.breaks) {
      const ramp = rampFor(theme);
      html += `<div class="legend-title">${esc(themeTitle())}</div>`;
      state.breaks.forEach((b, i) => {
        const next = state.breaks[i + 1];
        const fmt = (v) => theme === "coverage" ? `${Math.round(v * 100)}%`
          : theme === "since_patrol" ? t("hours_ago").replace("{n}", String(v)) : (Math.round(v * 10) / 10);
        html += `<div><i style="background:${ramp[i]}"></i>${fmt(b)}${next !== undefined ? " – " + fmt(next) : "+"}</div>`;
      });
      if (PATROL_THEMES.includes(theme)) html += `<div><i class="nodata"></i>${t(theme === "since_patrol" ? "never_patrolled" : "no_data")}</div>`;
    }
    html += `<div class="extra"><i class="outline"></i>${t("level_" + (state.outlineData ? state.outlineData.level : "street"))}</div>`;
    if (state.grid) html += `<div class="extra"><i class="grid"></i>${t("legend_grid")}</div>`;
    if (state.point) html += `<div class="extra"><i class="point"></i>${t("legend_point")}</div>`;
    if (state.runnerUp) html += `<div class="extra"><i class="runner"></i>${t("card_runner_up")}</div>`;
    if (state.heat) html += `<div><i class="heat"></i>${t("heat")}</div>`;
    if (state.cases.length) {
      html += `<div class="extra"><i class="dot" style="background:${LIGHT.red}"></i>${t("light_red")}</div>` +
        `<div class="extra"><i class="dot" style="background:${LIGHT.yellow}"></i>${t("light_yellow")}</div>` +
        `<div class="extra"><i class="dot" style="background:${LIGHT.green}"></i>${t("light_green")}</div>`;
    }
    if (state.unpatrolled) html += `<div><i class="unpatrolled"></i>${t("unpatrolled")}</div>`;
    if (state.track) html += `<div><i class="track"></i>${t("track")}</div>`;
    if (!(state.config && state.config.base_map)) html += `<div class="hint extra">${t("basemap_none")}</div>`;
    return html;
  }
  function refreshLegend() { if (state.legend) state.legend.getContainer().innerHTML = legendHtml(); }

  async function initMap() {
    const base = state.config.base_map;
    state.gcj = !!(base && base.crs === "GCJ02");
    const map = L.map("map", { zoomControl: true, attributionControl: !!base, preferCanvas: true });
    state.map = map;
    map.createPane("outlines").style.zIndex = 350;
    map.createPane("labels").style.zIndex = 450;
    map.getPane("labels").style.pointerEvents = "none";
    if (base) L.tileLayer(base.url, { maxZoom: 19 }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    const legend = L.control({ position: "bottomright" });
    legend.onAdd = () => { const div = L.DomUtil.create("div", "legend"); div.innerHTML = legendHtml(); return div; };
    legend.addTo(map);
    state.legend = legend;
    const city = state.config.city || {};
    if (city.bounds) map.fitBounds(city.bounds, { animate: false });  // the city's extent
    else map.setView([35, 105], 4);  // no city loaded yet: China
    map.on("click", (e) => {
      // The map's own CRS: WGS84 unless the base map is GCJ-02.
      window.citygrid.locate(e.latlng.lng, e.latlng.lat, state.gcj ? "gcj02" : "EPSG:4326", { keepView: true });
    });
    let timer = null;
    map.on("moveend", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        guarded(drawOutlines, "outlines");
        if (state.heat) guarded(drawHeat, "heat");
      }, 150);
    });
    await guarded(async () => {
      // Everything the first view needs, side by side.
      const lists = Promise.all([api("/regions?level=street&limit=1000"),
        api("/categories").catch(() => [])]).then(([streets, cats]) => {
        const select = $("street");
        streets.items.forEach((s) => {
          const opt = document.createElement("option");
          opt.value = s.code; opt.textContent = `${s.name} ${s.code.slice(0, 9)}`;
          select.appendChild(opt);
        });
        state.categories = cats;
        fillCategories();
      });
      // The whole jurisdiction at street level frames the first view.
      const cases = window.citygrid;  // loadCases, startLive: app-cases.js
      await Promise.all([lists, drawOutlines({ fit: true }), guarded(cases.loadCases), cases.startLive()]);
    });
    state.ready = true;
    markFirstView();
  }
  function markFirstView() {
    if (state.firstView) return;
    state.firstView = true;
    if (state.loginAt !== null) state.firstViewMs = Math.round(performance.now() - state.loginAt);
  }
  function fillCategories() {
    const groups = state.categories.filter((c) => !c.parent_code);
    const leaves = state.categories.filter((c) => c.parent_code && c.active);
    const name = (c) => state.lang === "en" && c.name_en ? c.name_en : c.name;
    const heat = $("heat-category"), keep = heat.value;
    heat.innerHTML = `<option value="">${t("all")}</option>` + groups.map((g) =>
      `<option value="${esc(g.code)}">${esc(name(g))}</option>`).join("");
    heat.value = keep;
    const reg = $("reg-category"), keepReg = reg.value;
    reg.innerHTML = leaves.map((c) => `<option value="${esc(c.code)}">${esc(c.code)} ${esc(name(c))}</option>`).join("");
    if (keepReg) reg.value = keepReg;
  }

  // Outlines: the level follows the zoom; only what is in view, simplified for the zoom.
  async function drawOutlines(opts = {}) {
    const map = state.map;
    const seq = ++state.outlineSeq;
    const zoom = map.getZoom();
    const q = new URLSearchParams({ zoom: String(zoom) });
    if (!opts.fit) q.set("bbox", viewBbox());
    if ($("street").value) q.set("parent", $("street").value);
    if (isPatrolTheme()) q.set("level", "grid");
    // The level follows the zoom by the server's rule; ask for its values at the same time.
    const guess = isPatrolTheme() ? "grid" : zoom < 13 ? "street" : zoom < 14 ? "community" : "grid";
    let [data, values] = await Promise.all([api(`/portal/outlines?${q}`), loadValues(guess)]);
    if (seq !== state.outlineSeq) return;  // a newer view was asked for meanwhile
    if (data.level !== guess) values = await loadValues(data.level);
    if (seq !== state.outlineSeq) return;
    state.outlineData = data;
    useValues(values);
    if (state.outlines) state.outlines.remove();
    if (state.labels) state.labels.remove();
    state.outlines = L.geoJSON(data, geoOptions(styleFor, { pane: "outlines", interactive: false }));
    state.outlines.addTo(map);
    // Labels when they can be read: few enough features, and grids only close in.
    state.labels = L.layerGroup();
    const show = data.level === "grid" ? zoom >= 16 || (zoom >= 15 && data.features.length <= 100)
      : data.features.length <= 250;
    if (show) {
      data.features.forEach((f) => {
        const p = f.properties;
        const text = data.level === "grid" ? p.code.slice(12) + " " + p.name.replace(/^.*?(第)/, "$1") : p.name;
        L.marker(toMap(p.label[0], p.label[1]), { pane: "labels", interactive: false, keyboard: false,
          icon: L.divIcon({ className: `region-label ${data.level}`, html: esc(text), iconSize: null }) })
          .addTo(state.labels);
      });
    }
    state.labels.addTo(map);
    if (opts.fit && data.features.length) {
      map.fitBounds(state.outlines.getBounds(), { animate: false });
    }
    refreshLegend();
  }
  function valueOf(code) {
    return state.values ? state.values.get(code) : undefined;
  }
  function styleFor(feature) {
    const level = feature.properties.level;
    const base = { street: { color: "#1d3557", weight: 2 }, community: { color: "#2a6f97", weight: 1.2 },
      grid: { color: "#4a5568", weight: 0.8 } }[level];
    const theme = $("theme").value;
    const v = valueOf(feature.properties.code);
    if (theme === "none" || !state.breaks) return { ...base, fill: true, fillColor: "#a8dadc", fillOpacity: 0.12 };
    if (v === undefined || v === null) {
      return { ...base, fill: true, fillColor: "#cccccc", fillOpacity: PATROL_THEMES.includes(theme) ? 0.35 : 0.1 };
    }
    const ramp = rampFor(theme);
    let k = 0;
    state.breaks.forEach((b, i) => { if (v >= b) k = i; });
    // Under the heatmap the choropleth steps back, so the two do not fight.
    return { ...base, fill: true, fillColor: ramp[k], fillOpacity: state.heat ? 0.2 : 0.6 };
  }
  function quantileBreaks(values, n) {
    const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
    if (!sorted.length) return null;
    const out = [];
    for (let i = 0; i < n; i++) out.push(sorted[Math.floor((sorted.length - 1) * i / n)]);
    return out.filter((v, i) => i === 0 || v > out[i - 1]);
  }
  // The values behind the choropleth for a level: { values, breaks } (counts cached per filters).
  async function loadValues(level) {
    const theme = $("theme").value;
    if (theme === "none") return { values: null, breaks: null };
    if (PATROL_THEMES.includes(theme)) {
      if (!state.coverage) return { values: null, breaks: null, missing: true };
      if (theme === "since_patrol") {  // hours; a grid never patrolled in the window has no value
        return { values: new Map(state.coverage.grids.map((g) => [g.code,
          g.seconds_since == null ? null : g.seconds_since / 3600])), breaks: [0, 6, 12, 24, 48] };
      }
      return { values: new Map(state.coverage.grids.map((g) => [g.code, g.share])),
        breaks: [0, 0.2, 0.4, 0.6, 0.8] };
    }
    const q = windowParams(new URLSearchParams({ level }));
    const key = q.toString();
    let counts = state.countsCache.get(key);
    if (!counts) {
      counts = await api(`/maps/counts?${q}`);
      state.countsCache.set(key, counts);
    }
    const field = theme === "per_km2" ? "per_km2" : theme;
    return { values: new Map(counts.items.map((i) => [i.code, i[field]])),
      breaks: quantileBreaks(counts.items.map((i) => i[field]), 5) };
  }
  function useValues(v) {
    state.values = v.values; state.breaks = v.breaks;
    if (v.missing) showError({ message: t("coverage_first") });
  }
  function restyle() {
    guarded(async () => {
      if (!state.outlineData) return;
      const seq = state.outlineSeq;
      const values = await loadValues(state.outlineData.level);
      if (seq !== state.outlineSeq) return;
      useValues(values);
      if (state.outlines) state.outlines.setStyle(styleFor);
      refreshLegend();
    });
  }

  // ---- heatmap: server bins, drawn by leaflet-heat ----------------------------------------------
  async function drawHeat() {
    const seq = ++state.heatSeq;
    state.heatDrawn = false;
    $("heat-info").textContent = t("heat_loading");
    const q = heatParams();
    q.set("zoom", String(state.map.getZoom()));
    q.set("bbox", viewBbox());
    q.set("pixels", "16");
    state.heatQuery = q.toString();
    const data = await api(`/maps/heat?${q}`);
    if (seq !== state.heatSeq || !$("heat-on").checked) return;
    // Scale to the 98th percentile, so one hot bin does not wash out the rest.
    const sorted = data.features.map((f) => f.properties.count).sort((a, b) => a - b);
    const max = Math.max(1, sorted.length ? sorted[Math.floor((sorted.length - 1) * 0.98)] : 1);
    const pts = data.features.map((f) => {
      const g = f.geometry;
      let lon, lat;
      if (g.type === "Point") { [lon, lat] = g.coordinates; } else {
        const ring = g.coordinates[0];
        lon = ring.reduce((s, c) => s + c[0], 0) / ring.length;
        lat = ring.reduce((s, c) => s + c[1], 0) / ring.length;
      }
      const ll = toMap(lon, lat);
      return [ll.lat, ll.lng, Math.min(1, f.properties.count / max)];
    });
    const radius = data.kind === "points" ? 10 : 12;
    if (state.heat) state.heat.remove();
    state.heat = L.heatLayer(pts, { radius, blur: radius * 0.8, max: 1, minOpacity: 0.25 }).addTo(state.map);
    state.heatData = data;
    if (state.outlines) state.outlines.setStyle(styleFor);
    $("heat-info").textContent = t("heat_info").replace("{n}", data.total.toLocaleString())
      .replace("{b}", String(data.features.length)).replace("{k}", t("heat_kind_" + data.kind));
    state.heatDrawn = true;
    refreshLegend();
  }
  function toggleHeat() {
    if ($("heat-on").checked) { guarded(drawHeat); return; }
    state.heatSeq++;
    if (state.heat) { state.heat.remove(); state.heat = null; }
    state.heatDrawn = false;
    if (state.outlines) state.outlines.setStyle(styleFor);
    $("heat-info").textContent = "";
    refreshLegend();
  }

  // ---- the live badge (app-cases.js keeps the stream) ---------------------------------------
  function setLive(s) {
    state.liveState = s;
    const el = $("live-status");
    if (!s) { el.hidden = true; return; }
    el.hidden = false;
    el.className = `live ${s}`;
    el.textContent = t(`live_${s}`);
  }

  // ---- search by name or code -------------------------------------------------------------------
  let searchTimer = null, searchSeq = 0;
  function onSearch() {
    clearTimeout(searchTimer);
    const q = $("search").value.trim();
    if (q.length < 1) { $("search-results").hidden = true; return; }
    searchTimer = setTimeout(() => guarded(async () => {
      const seq = ++searchSeq;
      const page = await api(`/regions?${new URLSearchParams({ q, limit: "12" })}`);
      if (seq !== searchSeq) return;
      const ul = $("search-results");
      ul.innerHTML = page.items.length ? page.items.map((r) =>
        `<li data-code="${esc(r.code)}" data-level="${esc(r.level)}"><b>${esc(r.name)}</b> ` +
        `<span class="hint">${esc(t("level_" + r.level))} ${esc(r.code)}</span></li>`).join("")
        : `<li class="hint">${t("no_match")}</li>`;
      ul.hidden = false;
    }), 200);
  }
  async function chooseRegion(code) {
    $("search-results").hidden = true;
    await guarded(async () => {
      const region = await api(`/regions/${encodeURIComponent(code)}`);
      highlight(region.geometry);
      if (state.grid) state.map.fitBounds(state.grid.getBounds(), { animate: false, maxZoom: 16 });
      if (region.level === "grid") {
        // The card for a grid: ask who is responsible at a point inside it.
        const f = await api(`/portal/outlines?${new URLSearchParams({ zoom: "16", level: "grid", parent: code })}`);
        const p = f.features.find((x) => x.properties.code === region.code);
        if (p) await window.citygrid.locate(p.properties.label[0], p.properties.label[1], "EPSG:4326", { keepView: true });
      } else {
        const staff = can("staff:read") ? await api(`/regions/${encodeURIComponent(code)}/staff`).catch(() => []) : [];
        showRegionCard(region, staff);
      }
    });
  }
  function highlight(geometry) {
    if (state.grid) { state.grid.remove(); state.grid = null; }
    if (geometry) {
      state.grid = L.geoJSON(geometry, geoOptions({ color: "#e76f51", weight: 2.5,
        fillColor: "#e76f51", fillOpacity: 0.3 })).addTo(state.map);
    }
    refreshLegend();
  }
  function showRegionCard(region, staff) {
    state.lastLocate = null;
    $("register-form").hidden = true;
    const chain = (region.chain || []).map((c) => esc(c.name)).join(" › ");
    $("card").innerHTML = `<dl><dt>${t("level_" + region.level)}</dt><dd><span id="card-grid-code">${esc(region.code)}</span> ${esc(region.name)}</dd>` +
      (chain ? `<dt>${t("card_chain")}</dt><dd>${chain}</dd>` : "") +
      `<dt>${t("card_staff")}</dt><dd>${staff.length ? "<ul>" + staff.map((s) =>
        `<li>${person(s.staff || s)}</li>`).join("") + "</ul>" : t("nobody")}</dd></dl>`;
    $("card").hidden = false;
  }

  // ---- people on cards and in search results (app-lookup.js uses it too) -------------------
  function person(p) {
    if (!p) return `<span class="warn">${t("nobody")}</span>`;
    const status = t(`staff_${p.status}`);
    return `<span class="person-name">${esc(p.name)}</span> · ${esc(p.phone)} · ${esc(label("role_", p.role))}` +
      ` · <span class="${p.status === "available" ? "" : "warn"}">${esc(status)}</span>`;
  }

  // ---- tabs and start ---------------------------------------------------------------------------
  function showTab(id) {
    document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === id));
    document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== id; });
  }
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem("citygrid.lang", state.lang);
    render();
  });
  $("street").addEventListener("change", () => guarded(async () => {
    state.coverage = null;
    if (isPatrolTheme()) $("theme").value = "incidents";
    await drawOutlines({ fit: true });
    await window.citygrid.loadCases();
    if (state.heat) await drawHeat();
  }));
  $("theme").addEventListener("change", () => {
    if (isPatrolTheme() || state.outlineData.level === "grid") guarded(drawOutlines); else restyle();
  });
  const windowChanged = () => { restyle(); if (state.heat || $("heat-on").checked) guarded(drawHeat); };
  $("since").addEventListener("change", windowChanged);
  $("until").addEventListener("change", windowChanged);
  document.querySelectorAll(".presets button").forEach((b) => b.addEventListener("click", () => {
    setDays(Number(b.dataset.days)); windowChanged();
  }));
  $("heat-on").addEventListener("change", toggleHeat);
  $("heat-category").addEventListener("change", () => { if ($("heat-on").checked) guarded(drawHeat); });
  $("heat-state").addEventListener("change", () => { if ($("heat-on").checked) guarded(drawHeat); });
  $("search").addEventListener("input", onSearch);
  $("search").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      const first = document.querySelector("#search-results li[data-code]");
      if (first) chooseRegion(first.dataset.code);
    }
  });
  $("search-results").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-code]");
    if (li) chooseRegion(li.dataset.code);
  });
  $("reg-result").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-case]");
    if (a) { ev.preventDefault(); window.citygrid.selectCase(Number(a.dataset.case)); }
  });
  $("theme").value = "incidents";
  defaultDates();
  render();
  // A session cookie from earlier: reuse it if the API still accepts it.
  state.csrf = cookie("citygrid_csrf");
  if (state.csrf) {
    api("/auth/me").then(() => guarded(showMap), () => { state.csrf = null; showLogin(); });
  } else {
    showLogin();
  }
  // selectCase, loadCases, renderCases, startLive: app-cases.js; locate, showCard: app-lookup.js
  window.citygrid = { state, chooseRegion, toMap, showTab, cityTz };  // debugging, UI tests, desk.js
  // What the portal's other files (app-patrol.js) build on: one closure's helpers, shared.
  window.citygrid.portal = { t, api, guarded, showError, drawOutlines, isPatrolTheme, geoOptions,
    refreshLegend, can, label, highlight, person, setLive, OPEN, LIGHT };
})();

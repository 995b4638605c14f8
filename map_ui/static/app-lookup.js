// CityGrid portal, lookup: who is responsible at a point (a click, a pasted coordinate or map
// link, a search result), the card with its uncertainty rows, and registering an incident from
// the card. Split from app.js along its seam; it runs right after app.js, uses the helpers app.js
// shares on window.citygrid.portal and adds locate and showCard to window.citygrid.
"use strict";
(function () {
  const { $, esc } = window.CG;
  const { state, toMap, showTab } = window.citygrid;
  const { t, api, guarded, showError, geoOptions, refreshLegend, can, label, highlight, person } =
    window.citygrid.portal;

  // The looked-up point: a blue ring with a cross (case markers are filled dots coloured by their
  // light, red for overdue: the two must not be confused).
  const LOOKUP_ICON = () => L.divIcon({ className: "lookup-pin", iconSize: [26, 26], iconAnchor: [13, 13],
    html: '<span class="lookup-ring"></span><span class="lookup-cross"></span>' });
  function clearLookup() {
    $("card").hidden = true; $("register-form").hidden = true; state.lastLocate = null;
    if (state.point) { state.point.remove(); state.point = null; }
    if (state.runnerUp) { state.runnerUp.remove(); state.runnerUp = null; }
    highlight(null);
  }
  async function locate(lon, lat, crs, opts = {}) {
    showTab("tab-lookup");
    await guarded(async () => {
      // detail=edges: the card says how far the point is from its grid's edge, names the
      // runner-up grid and flags a WGS84/GCJ-02 doubt (computed only when asked).
      const q = opts.link ? new URLSearchParams({ link: opts.link, detail: "edges" })
        : new URLSearchParams({ lon: String(lon), lat: String(lat), crs, detail: "edges" });
      let body;
      try { body = await api(`/locate?${q}`); } catch (err) {
        // a failed lookup leaves nothing of the previous one on the map or in the card
        clearLookup();
        if (err && err.code && state.lang !== "en" && t("err_" + err.code) !== "err_" + err.code) {
          err.message = t("err_" + err.code);
        }
        throw err;
      }
      state.lastLocate = body;
      showCard(body);
      if (state.point) state.point.remove();
      if (state.runnerUp) { state.runnerUp.remove(); state.runnerUp = null; }
      state.point = L.marker(toMap(body.point.lon, body.point.lat), { icon: LOOKUP_ICON(),
        keyboard: false, interactive: false, zIndexOffset: 1000 }).addTo(state.map);
      // A pasted point is shown close up; a click keeps the view (the user is looking at it).
      if (opts.zoomTo || (!opts.keepView && !state.map.getBounds().contains(state.point.getLatLng()))) {
        state.map.setView(state.point.getLatLng(), Math.max(state.map.getZoom(), 15), { animate: false });
      }
      const target = body.grid || body.region;
      if (target) {
        const region = await api(`/regions/${encodeURIComponent(target.code)}`);
        highlight(region.geometry);
      } else {
        highlight(null);
      }
      const runner = body.uncertainty && body.uncertainty.runner_up;
      if (runner) {
        const other = await api(`/regions/${encodeURIComponent(runner.code)}`).catch(() => null);
        if (other && other.geometry) {
          state.runnerUp = L.geoJSON(other.geometry, geoOptions({ color: "#1d3557", weight: 2,
            dashArray: "6 4", fill: false })).addTo(state.map);
          refreshLegend();
        }
      }
      if (body.grid) document.dispatchEvent(new CustomEvent("cg:grid", { detail: body.grid.code }));
    });
  }
  function uncertaintyRows(b) {
    const rows = [];
    const u = b.uncertainty;
    const fill = (key, vars) => Object.entries(vars).reduce(
      (acc, [k, v]) => acc.split(`{${k}}`).join(v), t(key));
    if (b.link) {
      rows.push([t("card_link"), `<span id="card-link">${esc(t("link_" + b.link.provider))} · ${esc(b.link.crs)}</span>`]);
    }
    if (u && u.edge_m != null) {
      rows.push([t("card_edge"), `<span id="card-edge">${esc(fill("card_edge_m", { m: u.edge_m.toFixed(1) }))}</span>`]);
      rows.push([t("card_runner_up"), u.runner_up
        ? `<span id="card-runner-up" class="warn">${esc(fill("card_runner_up_text", { code: u.runner_up.code,
          name: u.runner_up.name, m: u.runner_up.distance_m.toFixed(1), acc: String(u.accuracy_m) }))}</span>`
        : `<span id="card-runner-up" class="hint">${esc(fill("card_runner_up_none", { acc: String(u.accuracy_m) }))}</span>`]);
    }
    const d = b.datum_doubt;
    if (d) {
      const g = d.grid || {};
      const who = d.responsible ? d.responsible.name : t("nobody");
      rows.push([t("card_datum_doubt"), `<span id="card-datum-doubt" class="warn">${esc(fill("card_datum_doubt_text", {
        crs: d.read_as, code: g.code || "—", name: g.name || "", who }))}</span>`]);
    }
    return rows;
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
    rows.push(...uncertaintyRows(b));
    if (b.unavailable && b.unavailable.length) {
      rows.push([t("card_unavailable"), b.unavailable.map(person).join("<br>")]);
    }
    $("card").innerHTML = (b.stale ? `<p class="warn">${t("card_stale")}</p>` : "") + "<dl>" +
      rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("") + "</dl>";
    $("card").hidden = false;
    const inCity = b.status !== "outside";
    $("register-form").hidden = !(can("incidents:create") && inCity);
    $("reg-result").hidden = true;
  }
  function pasted(ev) {
    ev.preventDefault();
    const text = $("coords").value.trim();
    // a link copied from Amap, Baidu or Tencent maps: the server reads it in that map's CRS
    if (/^(https?:)?\/\//i.test(text) || /^[a-z0-9.-]+\.(com|cn)\//i.test(text)) {
      locate(null, null, null, { link: text, zoomTo: true });
      return;
    }
    const parts = $("coords").value.trim().split(/[\s,，;]+/).filter(Boolean).map(Number);
    if (parts.length !== 2 || parts.some((v) => !Number.isFinite(v))) {
      clearLookup();
      showError({ message: t("error_coords") });
      return;
    }
    locate(parts[0], parts[1], $("crs").value, { zoomTo: true });
  }
  async function registerIncident(ev) {
    ev.preventDefault();
    const b = state.lastLocate;
    if (!b) return;
    await guarded(async () => {
      const rand = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 18);
      const res = await api("/incidents", { method: "POST", body: {
        source: $("reg-source").value, external_id: `portal-${rand}`, category: $("reg-category").value,
        description: $("reg-description").value, address: $("reg-address").value,
        lon: b.point.lon, lat: b.point.lat, crs: "EPSG:4326" } });
      const id = res.id || (res.incident && res.incident.id);
      $("reg-result").innerHTML = esc(t("registered").replace("{id}", String(id))) +
        ` <a href="#" data-case="${Number(id)}">${esc(t("show_case"))}</a>`;
      $("reg-result").hidden = false;
      $("reg-description").value = "";
    });
  }

  $("coord-form").addEventListener("submit", pasted);
  $("register-form").addEventListener("submit", registerIncident);
  window.citygrid.locate = locate;
  window.citygrid.showCard = showCard;
})();

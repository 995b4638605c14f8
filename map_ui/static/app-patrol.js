// CityGrid portal, patrol tab: a street's coverage table, a grid's unpatrolled part, a worker's
// track. Split from app.js along its seam; it runs after app.js and uses the helpers app.js
// shares on window.citygrid.portal (the same state, requests, errors and map).
"use strict";
(function () {
  const { $, esc } = window.CG;
  const { state, cityTz } = window.citygrid;
  const { t, api, guarded, showError, drawOutlines, isPatrolTheme, geoOptions, refreshLegend } =
    window.citygrid.portal;

  function patrolRegion() {
    if ($("street").value) return $("street").value;
    const scope = state.me ? state.me.scope : [];
    return scope.length === 1 && scope[0].length >= 9 ? scope[0] : null;
  }
  async function showCoverage() {
    const region = patrolRegion();
    if (!region) { showError({ message: t("patrol_choose_street") }); return; }
    await guarded(async () => {
      const q = new URLSearchParams({ region,
        since: window.CG.dayStart($("patrol-since").value, cityTz()), until: window.CG.dayStart($("patrol-until").value, cityTz()) });
      const cov = await api(`/patrols/coverage?${q}`);
      state.coverage = cov;
      if (!isPatrolTheme()) $("theme").value = "coverage";
      if ($("street").value !== region.slice(0, 9) && $("street").querySelector(`option[value^="${region.slice(0, 9)}"]`)) {
        $("street").value = $("street").querySelector(`option[value^="${region.slice(0, 9)}"]`).value;
      }
      const rows = [...cov.grids].sort((a, b) => a.share - b.share);
      const tbody = $("patrol-table").querySelector("tbody");
      tbody.innerHTML = rows.map((g) => `<tr data-code="${esc(g.code)}"><td>${esc(g.code.slice(9))} ${esc(g.name)}</td>` +
        `<td>${Math.round(g.share * 100)}%</td><td>${g.seconds_since == null ? t("never") : ago(g.seconds_since)}</td></tr>`).join("");
      $("patrol-table").hidden = false;
      await drawOutlines();
      if (state.outlines && state.outlines.getLayers().length) {
        state.map.fitBounds(state.outlines.getBounds(), { animate: false });
      }
    });
  }
  function ago(seconds) {
    const h = seconds / 3600;
    return h < 48 ? t("hours_ago").replace("{n}", h.toFixed(1)) : t("days_ago").replace("{n}", (h / 24).toFixed(1));
  }
  async function showUnpatrolled(code) {
    await guarded(async () => {
      const q = new URLSearchParams({ since: window.CG.dayStart($("patrol-since").value, cityTz()),
        until: window.CG.dayStart($("patrol-until").value, cityTz()) });
      const fc = await api(`/patrols/coverage/${encodeURIComponent(code)}/unpatrolled?${q}`);
      if (state.unpatrolled) state.unpatrolled.remove();
      state.unpatrolled = L.geoJSON(fc, geoOptions({ color: "#7b2cbf", weight: 1, fillColor: "#7b2cbf",
        fillOpacity: 0.45, dashArray: "3 2" })).addTo(state.map);
      if (state.unpatrolled.getLayers().length) state.map.fitBounds(state.unpatrolled.getBounds(), { maxZoom: 16, animate: false });
      document.querySelectorAll("#patrol-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.code === code));
      refreshLegend();
    });
  }
  async function showTrack(ev) {
    ev.preventDefault();
    await guarded(async () => {
      const q = new URLSearchParams({ staff: $("track-staff").value.trim(), date: $("track-date").value });
      const fc = await api(`/patrols/tracks?${q}`);
      if (state.track) state.track.remove();
      state.track = L.geoJSON(fc, geoOptions({ color: "#0077b6", weight: 3, opacity: 0.9 })).addTo(state.map);
      const p = fc.properties || {};
      $("track-info").textContent = t("track_info").replace("{name}", p.name || "").replace("{n}", String(p.shifts || 0))
        .replace("{km}", ((p.length_m || 0) / 1000).toFixed(2)).replace("{fixes}", String(p.fixes || 0));
      if (state.track.getLayers().length) state.map.fitBounds(state.track.getBounds(), { maxZoom: 16, animate: false });
      refreshLegend();
    });
  }

  $("patrol-show").addEventListener("click", showCoverage);
  $("patrol-table").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-code]");
    if (tr) showUnpatrolled(tr.dataset.code);
  });
  $("track-form").addEventListener("submit", showTrack);
})();

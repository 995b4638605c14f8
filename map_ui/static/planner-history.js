// Boundary history in the planners' editor: the versions of the chosen region, a diff map between
// two of them, and a restore as a new plan. planner.js calls window.citygrid.history.refresh() when
// the region changes or a plan is activated; the rest goes through its helpers on window.citygrid.
"use strict";
(function () {
  const { $, esc } = window.CG;
  const cg = window.citygrid;  // planner.js, loaded before this file
  const { state, t, tOr, api, guarded, fmtTime, label, committed, listPlans, setPlan, loadFeatures,
    refreshImpact } = cg;

  function clear() {
    if (state.historyLayer) state.historyLayer.clearLayers();
    $("hist-summary").innerHTML = "";
  }
  async function listVersions() {
    const body = await api("/boundaries/versions");
    state.versions = body.items;
    const opt = (v) => `<option value="${esc(v.version)}">v${esc(v.version)} · ${esc(v.label || "")} · ` +
      `${esc(fmtTime(v.effective_at || v.activated_at))}</option>`;
    const oldest = body.items.length ? body.items[body.items.length - 1].version : "";
    $("hist-from").innerHTML = body.items.map(opt).join("");
    $("hist-from").value = String(oldest);
    $("hist-to").innerHTML = `<option value="">${esc(t("hist_now"))}</option>` + body.items.map(opt).join("");
    $("history-section").hidden = !body.items.length;
  }
  async function showHistory() {
    await guarded(async () => {
      const q = new URLSearchParams({ region: state.region.code, from: $("hist-from").value });
      if ($("hist-to").value) q.set("to", $("hist-to").value);
      const fc = await api(`/boundaries/diff?${q}`);
      if (!state.historyLayer) state.historyLayer = L.featureGroup().addTo(state.map);
      state.historyLayer.clearLayers();
      // The new side first, the old one dashed on top of it, so both outlines stay visible.
      const sides = [...fc.features].sort((x, y) => (x.properties.side === "from") - (y.properties.side === "from"));
      sides.forEach((f) => {
        if (!f.geometry) return;
        const from = f.properties.side === "from";
        L.geoJSON(f, { interactive: false, pmIgnore: true, snapIgnore: true, style: from
          ? { color: "#9b1c1c", weight: 2.5, dashArray: "6 4", fillColor: "#e5383b", fillOpacity: 0.1 }
          : { color: "#1b6f65", weight: 2.5, fillColor: "#2a9d8f", fillOpacity: 0.15 } })
          .eachLayer((l) => state.historyLayer.addLayer(l));
        if (!from || f.properties.change === "retired") {
          state.historyLayer.addLayer(label(f.geometry, f.properties.code.slice(-3), "grid-label hist-label"));
        }
      });
      state.historyLayer.bringToFront();
      const byCode = {};
      fc.features.forEach((f) => { byCode[f.properties.code] = f.properties.change; });
      const codes = Object.keys(byCode).sort();
      $("hist-summary").innerHTML = codes.length
        ? `<p class="hint">${esc(t("hist_legend"))}</p><h4>${esc(t("hist_changes"))}</h4><ul id="hist-list">` +
          codes.map((c) => `<li>${esc(c)} <span class="change-${esc(byCode[c])}">` +
            `${esc(tOr("change_" + byCode[c], byCode[c]))}</span></li>`).join("") + "</ul>"
        : `<p class="hint" id="hist-list">${esc(t("hist_no_change"))}</p>`;
      const b = state.historyLayer.getBounds();
      if (b.isValid()) state.map.fitBounds(b, { animate: false, padding: [40, 40] });
    });
  }
  async function restoreVersion() {
    await guarded(async () => {
      const v = Number($("hist-from").value);
      const { body, etag } = await api("/plans", { method: "POST", withEtag: true,
        body: { name: `${t("hist_restore_name")} v${v}`, region_code: state.region.code, restore_version: v } });
      await committed(body.id, () => true);
      if (state.historyLayer) state.historyLayer.clearLayers();
      await listPlans();
      setPlan(body, etag);
      await loadFeatures(true);
      await refreshImpact();
    });
  }

  $("hist-show").addEventListener("click", showHistory);
  $("hist-clear").addEventListener("click", clear);
  $("hist-restore").addEventListener("click", restoreVersion);
  cg.history = { refresh: async () => { clear(); await listVersions(); } };
})();

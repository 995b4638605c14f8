// CityGrid portal, cases: open cases in the caller's jurisdiction with their traffic lights,
// synced with markers on the map, a case's detail and history, and live arrivals over
// /portal/events. Split from app.js along its seam; it runs right after app.js, uses the helpers
// app.js shares on window.citygrid.portal and adds selectCase, loadCases, renderCases and
// startLive to window.citygrid.
"use strict";
(function () {
  const { $, esc } = window.CG;
  const { state, toMap, showTab, cityTz } = window.citygrid;
  const { t, api, guarded, refreshLegend, can, label, setLive, OPEN, LIGHT } =
    window.citygrid.portal;

  async function loadCases() {
    const q = new URLSearchParams({ open_only: "true", limit: "50", sort: "-received_at" });
    if ($("case-light").value) q.append("light", $("case-light").value);
    if ($("street").value) q.set("region", $("street").value);
    const page = await api(`/incidents?${q}`);
    state.cases = page.items;
    state.caseTotal = page.total;
    renderCases();
  }
  function renderCases() {
    $("case-total").textContent = t("cases_total").replace("{n}", (state.caseTotal || 0).toLocaleString())
      .replace("{k}", String(state.cases.length));
    $("cases").innerHTML = state.cases.map((c) => `
      <li data-id="${c.id}" class="${c.id === state.selectedCase ? "selected" : ""} ${c.fresh ? "fresh" : ""}">
        <i class="dot" style="background:${LIGHT[c.light] || "#999"}" title="${esc(label("light_", c.light))}"></i>
        <span class="case-id">#${c.id}</span> ${esc(c.category_name)}
        <span class="hint">${esc(label("state_", c.state))} · ${esc(fmtTime(c.received_at))}</span>
      </li>`).join("");
    if (state.caseLayer) state.caseLayer.remove();
    state.caseLayer = L.layerGroup().addTo(state.map);
    state.caseMarkers = new Map();
    state.cases.forEach((c) => {
      if (c.lon == null) return;
      const m = L.circleMarker(toMap(c.lon, c.lat), { radius: c.id === state.selectedCase ? 9 : 6,
        color: "#fff", weight: 1.5, fillColor: LIGHT[c.light] || "#999", fillOpacity: 0.95, bubblingMouseEvents: false })
        .bindTooltip(`#${c.id} ${esc(c.category_name)}`);
      m.on("click", () => selectCase(c.id, false));
      m.addTo(state.caseLayer);
      state.caseMarkers.set(c.id, m);
    });
    refreshLegend();
  }
  function fmtTime(s) {
    const d = new Date(s);
    return d.toLocaleString(state.lang === "en" ? "en-GB" : "zh-CN", { timeZone: cityTz(),
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  }
  async function selectCase(id, pan = true) {
    state.selectedCase = id;
    showTab("tab-cases");
    renderCases();
    const li = document.querySelector(`#cases li[data-id="${id}"]`);
    if (li) li.scrollIntoView({ block: "nearest" });
    await guarded(async () => {
      const c = await api(`/incidents/${id}`);
      if (pan && c.lon != null) state.map.setView(toMap(c.lon, c.lat), Math.max(state.map.getZoom(), 15), { animate: false });
      const rows = [
        [t("case_category"), `${esc(c.category)} ${esc(c.category_name)}`],
        [t("state"), esc(label("state_", c.state))],
        [t("light"), `<i class="dot" style="background:${LIGHT[c.light] || "#999"}"></i> ${esc(label("light_", c.light))}`],
        [t("source"), esc(label("source_", c.source))],
        [t("case_received"), esc(fmtTime(c.received_at))],
        [t("case_due"), c.due_at ? esc(fmtTime(c.due_at)) : "–"],
        [t("card_grid"), esc(c.grid_code || c.region_code || "–")],
        [t("card_responsible"), esc(c.responsible_code || "–") + (c.fallback ? ` (${esc(label("fallback_", c.fallback))})` : "")],
        [t("address"), esc(c.address || "–")],
        [t("description"), esc(c.description || "–")],
      ];
      $("case-detail").innerHTML = `<h3>#${c.id}</h3><dl>` + rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("") +
        `</dl><h4>${t("history")}</h4><ol class="history">` + c.history.map((h) =>
          `<li><span class="hint">${esc(fmtTime(h.at))}</span> ${esc(label("action_", h.action))}` +
          ` → ${esc(label("state_", h.to_state))} <span class="hint">${esc(h.actor)}</span>` +
          (h.note ? `<br><span class="note">${esc(h.note)}</span>` : "") + "</li>").join("") + "</ol>";
      $("case-detail").hidden = false;
    });
  }
  async function startLive() {
    if (!can("incidents:read") || typeof EventSource === "undefined") return;
    if (state.events) state.events.close();
    const es = new EventSource("/portal/events", { withCredentials: true });
    state.events = es;
    state.liveLog = [];  // what arrived, for the UI tests
    es.addEventListener("hello", (ev) => { state.liveLog.push(["hello", ev.lastEventId]); setLive("on"); });
    es.addEventListener("incident", (ev) => {
      const c = JSON.parse(ev.data);
      state.liveLog.push(["incident", c.id]);
      window.dispatchEvent(new CustomEvent("citygrid:incident", { detail: c }));  // the desk (desk.js)
      const street = $("street").value;
      if (street && !(c.region_code || "").startsWith(street.slice(0, 9))) return;
      if (!OPEN.includes(c.state)) return;
      if ($("case-light").value && c.light !== $("case-light").value) return;
      c.fresh = true;
      state.cases = [c, ...state.cases.filter((x) => x.id !== c.id)].slice(0, 100);
      state.caseTotal = (state.caseTotal || 0) + 1;
      state.liveCount = (state.liveCount || 0) + 1;
      renderCases();
      state.countsCache.clear();
    });
    es.addEventListener("reload", (ev) => {
      state.liveLog.push(["reload", ev.lastEventId]); state.countsCache.clear(); guarded(loadCases, "cases");
    });
    es.onerror = () => setLive(es.readyState === EventSource.CLOSED ? "off" : "retry");
  }

  $("case-light").addEventListener("change", () => guarded(loadCases));
  $("cases").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-id]");
    if (li) selectCase(Number(li.dataset.id));
  });
  Object.assign(window.citygrid, { selectCase, loadCases, renderCases, startLive });
})();

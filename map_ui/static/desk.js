// The dispatch desk (调度台): the case queue (server-paged, filters, counts per state and light,
// saved views, live arrivals), the case view with the actions the server allows this user,
// duplicates and merges, and audited reveals of phones. It lives in the portal's "desk" tab and
// uses the portal's session, map and strings (app.js, common.js, i18n.js + i18n-desk.js).
"use strict";
(function () {
  const { $, esc, ApiError } = window.CG;
  const app = window.citygrid;
  const S = app.state;
  const t = window.CG.translator(window.CG_I18N, () => S.lang);
  const api = window.CG.client({ csrf: () => S.csrf, t });
  const OPEN = ["received", "registered", "dispatched", "handling", "reported", "verified"];
  const LIGHTS = ["red", "yellow", "green"];
  const COLOR = { red: "#d62828", yellow: "#f4a261", green: "#2a9d8f" };
  const SOURCES = ["hotline_12345", "police_110", "supervisor", "grid_worker", "citizen_app", "other_centre"];
  const SORTS = ["due_at", "-due_at", "-received_at", "received_at"];
  const blank = () => ({ states: [], lights: [], categories: [], sources: [], region: "", assignee: "",
    department: "", since: "", until: "", q: "", sort: "due_at" });
  const desk = { me: null, filters: blank(), offset: 0, after: null, back: [], limit: 50, page: null, view: null, form: null,
    views: [], viewId: "", badge: 0, marker: null, seq: 0, categories: [], built: false, reveal: null,
    revealed: {}, notice: null, loads: 0 };

  // ---- words ------------------------------------------------------------------------------------
  function fmt(key, vars = {}) {
    let s = t(key);
    Object.entries(vars).forEach(([k, v]) => { s = s.split(`{${k}}`).join(String(v)); });
    return s;
  }
  function label(prefix, value) { const k = prefix + value; return t(k) === k ? String(value) : t(k); }
  function when(s) {
    if (!s) return "–";
    return new Date(s).toLocaleString(S.lang === "en" ? "en-GB" : "zh-CN", { timeZone: app.cityTz(),
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  }
  const catName = (c) => (S.lang === "en" && c.category_name_en ? c.category_name_en : c.category_name);
  // An API error in the page's language: zh-CN by its code, English as the API says it.
  function errorText(err) {
    const code = (err && err.code) || (err && err.status === 0 ? "network" : "unknown");
    if (S.lang === "en") return `${(err && err.message) || t("err_unknown")} (${code})`;
    const key = "err_" + code;
    return t(key) !== key ? `${t(key)}（${code}）` : `${t("err_unknown")}：${(err && err.message) || ""}（${code}）`;
  }
  function showError(err) {
    const box = $("desk-error");
    if (!box) return;
    box.hidden = !err;
    box.textContent = err ? `${t("error")}: ${errorText(err)}` : "";
  }
  function notify(html) {
    desk.notice = html;
    const box = $("desk-notice");
    if (!box) return;
    box.hidden = !html;
    box.innerHTML = html || "";
  }
  async function guarded(fn) {
    try { showError(null); return await fn(); } catch (err) {
      if (err && err.name === "AbortError") return undefined;
      showError(err);
      return undefined;
    }
  }

  // ---- the skeleton (rebuilt on a language switch; filters, forms and typed text survive) ------
  function build() {
    const f = desk.filters;
    const opt = (v, text, sel) => `<option value="${esc(v)}"${sel ? " selected" : ""}>${esc(text)}</option>`;
    const groups = desk.categories.filter((c) => !c.parent_code);
    const name = (c) => (S.lang === "en" && c.name_en ? c.name_en : c.name);
    const cats = groups.map((g) => opt(g.code, `${g.code} ${name(g)}`, f.categories.includes(g.code)) +
      desk.categories.filter((c) => c.parent_code === g.code).map((c) =>
        opt(c.code, `\u00a0\u00a0${c.code} ${name(c)}`, f.categories.includes(c.code))).join("")).join("");
    const depts = [...new Map(desk.categories.filter((c) => c.department)
      .map((c) => [c.department, c.department_name || c.department])).entries()]
      .sort().map(([code, n]) => opt(code, n, f.department === code)).join("");
    $("tab-desk").innerHTML = `
      <div class="desk">
        <div id="desk-error" class="desk-error" role="alert" hidden></div>
        <div id="desk-notice" class="desk-notice" role="status" hidden></div>
        <div class="desk-cols">
          <div class="desk-queue">
            <p id="desk-liaison" class="desk-liaison" hidden></p>
            <div class="desk-views">
              <label class="inline"><span>${t("desk_views")}</span>
                <select id="desk-view">${opt("", t("desk_view_none"), !desk.viewId)}${desk.views.map((v) =>
                  opt(String(v.id), v.name, String(v.id) === desk.viewId)).join("")}</select></label>
              <button type="button" id="desk-view-save">${t("desk_view_save")}</button>
              <button type="button" id="desk-view-delete"${desk.viewId ? "" : " disabled"}>${t("desk_view_delete")}</button>
            </div>
            <div id="desk-counts" class="desk-counts"></div>
            <form id="desk-filter" class="desk-filter">
              <input id="desk-q" type="search" value="${esc(f.q)}" placeholder="${esc(t("desk_q_placeholder"))}" aria-label="${esc(t("desk_q"))}">
              <select id="desk-category" aria-label="${esc(t("desk_category"))}">${opt("", `${t("desk_category")}: ${t("desk_all")}`, !f.categories.length)}${cats}</select>
              <select id="desk-source" aria-label="${esc(t("desk_source"))}">${opt("", `${t("desk_source")}: ${t("desk_all")}`, !f.sources.length)}${SOURCES.map((s) =>
                opt(s, label("source_", s), f.sources.includes(s))).join("")}</select>
              <select id="desk-department" aria-label="${esc(t("desk_department"))}"${desk.me && desk.me.department ? " disabled" : ""}>${opt("", `${t("desk_department")}: ${t("desk_all")}`, !f.department)}${depts}</select>
              <input id="desk-region" value="${esc(f.region)}" placeholder="${esc(t("desk_region_placeholder"))}" title="${esc(t("desk_region"))}" aria-label="${esc(t("desk_region"))}">
              <input id="desk-assignee" value="${esc(f.assignee)}" placeholder="${esc(t("desk_assignee"))}" aria-label="${esc(t("desk_assignee"))}">
              <label class="inline"><span>${t("desk_since")}</span><input id="desk-since" type="date" value="${esc(f.since)}"></label>
              <label class="inline"><span>${t("desk_until")}</span><input id="desk-until" type="date" value="${esc(f.until)}"></label>
              <select id="desk-sort" aria-label="${esc(t("desk_sort"))}">${SORTS.map((s) => opt(s, t("sort_" + s), f.sort === s)).join("")}</select>
              <button type="submit" id="desk-apply">${t("desk_apply")}</button>
              <button type="button" id="desk-reset">${t("desk_reset")}</button>
            </form>
            <p id="desk-total" class="hint"></p>
            <div class="desk-scroll"><table id="desk-table" class="desk-table">
              <thead><tr><th></th><th>${t("col_id")}</th><th>${t("col_category")}</th><th>${t("col_address")}</th>
                <th>${t("col_state")}</th><th>${t("col_due")}</th><th>${t("col_responsible")}</th><th>${t("col_department")}</th></tr></thead>
              <tbody></tbody></table></div>
            <div class="desk-pager"><button type="button" id="desk-prev">${t("desk_prev")}</button>
              <button type="button" id="desk-next">${t("desk_next")}</button></div>
          </div>
          <div id="desk-case" class="desk-case" hidden></div>
        </div>
      </div>`;
    desk.built = true;
    wire();
    notify(desk.notice);
    renderQueue();
    renderCase();
    window.dispatchEvent(new CustomEvent("citygrid:desk-built"));  // desk-address.js mounts here
  }

  function readFilters() {
    if (!desk.built) return;
    const f = desk.filters;
    f.q = $("desk-q").value.trim();
    f.categories = $("desk-category").value ? [$("desk-category").value] : [];
    f.sources = $("desk-source").value ? [$("desk-source").value] : [];
    f.department = $("desk-department").value;
    f.region = $("desk-region").value.trim();
    f.assignee = $("desk-assignee").value.trim();
    f.since = $("desk-since").value;
    f.until = $("desk-until").value;
    f.sort = $("desk-sort").value;
  }
  function params() {
    const f = desk.filters;
    // keyset paging: the page after the previous page's last row (`next`), so cases arriving
    // between two pages neither repeat a row nor push one out of sight; `offset` is only shown
    const q = new URLSearchParams({ limit: String(desk.limit), sort: f.sort });
    if (desk.after) q.set("after", desk.after);
    f.states.forEach((s) => q.append("state", s));
    f.lights.forEach((s) => q.append("light", s));
    f.categories.forEach((s) => q.append("category", s));
    f.sources.forEach((s) => q.append("source", s));
    if (f.region) q.set("region", f.region);
    if (f.assignee) q.set("assignee", f.assignee);
    if (f.department) q.set("department", f.department);
    if (f.since) q.set("since", window.CG.dayStart(f.since, app.cityTz()));
    if (f.until) q.set("until", window.CG.dayStart(f.until, app.cityTz()));
    if (f.q) q.set("q", f.q);
    return q;
  }

  function firstPage() { desk.offset = 0; desk.after = null; desk.back = []; }

  // ---- the queue --------------------------------------------------------------------------------
  async function loadQueue() {
    const seq = ++desk.seq;
    const page = await api(`/desk/queue?${params()}`);
    if (seq !== desk.seq) return;
    desk.page = page;
    desk.loads += 1;
    renderQueue();
  }
  function renderQueue() {
    if (!desk.built) return;
    const p = desk.page;
    const f = desk.filters;
    const liaison = desk.me && desk.me.department;
    $("desk-liaison").hidden = !liaison;
    if (liaison) $("desk-liaison").textContent = fmt("desk_liaison", { name: desk.me.department_name || liaison });
    if (!p) return;
    const chip = (kind, value, n, text, color) => `<button type="button" class="chip${
      f[kind].includes(value) ? " on" : ""}" data-kind="${kind}" data-value="${value}">${
      color ? `<i class="dot" style="background:${color}"></i>` : ""}${esc(text)} <b>${n}</b></button>`;
    $("desk-counts").innerHTML = `<div>${OPEN.map((s) => chip("states", s, p.counts.state[s] || 0, label("state_", s))).join("")}</div>` +
      `<div>${LIGHTS.map((l) => chip("lights", l, p.counts.light[l] || 0, label("light_", l), COLOR[l])).join("")}</div>`;
    $("desk-total").textContent = p.total ? fmt("desk_total", { n: p.total.toLocaleString(),
      a: desk.offset + 1, b: desk.offset + p.items.length }) : t("desk_none");
    $("desk-table").querySelector("tbody").innerHTML = p.items.map((c) => `
      <tr data-id="${c.id}" class="${desk.view && desk.view.id === c.id ? "selected" : ""}${c.fresh ? " fresh" : ""}">
        <td><i class="dot" style="background:${COLOR[c.light] || "#999"}" title="${esc(label("light_", c.light))}"></i></td>
        <td class="num">#${c.id}${c.duplicates ? ` <span class="dup-badge" title="${esc(fmt("desk_dup_badge", { n: c.duplicates }))}">${
          Number(c.duplicates)}</span>` : ""}</td><td>${esc(catName(c))}</td><td class="addr" title="${esc(c.description)}">${esc(c.address || "–")}</td>
        <td>${esc(label("state_", c.state))}${c.card ? ` <span class="card-${esc(c.card)}">●</span>` : ""}</td>
        <td class="due">${esc(when(c.due_at))}</td><td class="resp">${esc(c.responsible_name || c.responsible_code || "–")}</td>
        <td>${esc(c.department_name || "–")}</td></tr>`).join("");
    $("desk-prev").disabled = !desk.back.length;
    $("desk-next").disabled = !p.next;
  }

  // ---- one case ---------------------------------------------------------------------------------
  async function openCase(id, opts = {}) {
    const view = await api(`/desk/cases/${Number(id)}`);
    desk.view = view;
    if (!opts.keepForm) desk.form = null;
    if (!opts.keepReveal) { desk.reveal = null; desk.revealed = {}; }
    renderCase();
    renderQueue();
    showOnMap(view);
    return view;
  }
  function showOnMap(c) {
    if (!S.map || c.lon == null) return;
    if (desk.marker) desk.marker.remove();
    const ll = app.toMap(c.lon, c.lat);
    desk.marker = L.circleMarker(ll, { radius: 10, color: "#1d3557", weight: 3, fillColor: COLOR[c.light] || "#999",
      fillOpacity: 0.9 }).bindTooltip(`#${c.id}`).addTo(S.map);
    S.map.setView(ll, Math.max(S.map.getZoom(), 16), { animate: false });
  }
  function phone(field, masked) {
    const shown = desk.revealed[field];
    if (shown) return `<a class="tel" href="${esc(shown.tel)}">${esc(shown.value)}</a> <span class="hint">${t("reveal_logged")} · ${t("reveal_call")}</span>`;
    if (!masked) return "–";
    let html = `<span class="masked">${esc(masked)}</span>`;
    if (desk.view.may_reveal) {
      html += desk.reveal === field
        ? ` <span class="reveal-form"><input id="desk-reveal-reason" maxlength="500" placeholder="${esc(t("reveal_reason"))}">` +
          `<button type="button" id="desk-reveal-go" data-field="${field}">${t("reveal_confirm")}</button></span>`
        : ` <button type="button" class="link" data-reveal="${field}">${t("reveal")}</button>`;
    }
    return html;
  }
  function actionForm(action) {
    const f = desk.form;
    let extra = "";
    if (action === "extend") extra = `<label class="inline"><span>${t("form_hours")}</span><input id="desk-form-hours" type="number" min="1" max="720" value="${esc(f.hours || "24")}"></label>`;
    if (action === "card") extra = `<label class="inline"><span>${t("form_card")}</span><select id="desk-form-card">` +
      ["yellow", "red"].map((c) => `<option value="${c}"${f.card === c ? " selected" : ""}>${t("card_" + c)}</option>`).join("") + "</select></label>";
    if (action === "evaluate") extra = `<label class="inline"><span>${t("form_score")}</span><input id="desk-form-score" type="number" min="1" max="5" value="${esc(f.score || "5")}"></label>`;
    return `<form id="desk-action-form" class="desk-action-form" data-action="${esc(action)}">
      <h4>${esc(label("action_", action))}</h4>
      <div id="desk-conflict" class="desk-conflict" role="alert"${f.conflict ? "" : " hidden"}>${f.conflict || ""}</div>
      <label><span>${t("form_note")}</span><textarea id="desk-form-note" rows="2" maxlength="2000">${esc(f.note || "")}</textarea></label>
      ${extra}
      <div><button type="submit" id="desk-form-submit">${t("form_submit")}</button>
        <button type="button" id="desk-form-cancel">${t("form_cancel")}</button></div></form>`;
  }
  function renderCase() {
    if (!desk.built) return;
    const box = $("desk-case");
    const c = desk.view;
    if (!c) { box.hidden = true; return; }
    const resp = c.responsible;
    const unit = c.limits.unit && c.limits.unit !== "hours" ? " " + t("limit_unit_" + c.limits.unit) : "h";
    const rows = [
      [t("state"), `${esc(label("state_", c.state))}${c.card ? ` · <span class="card-${esc(c.card)}">${esc(t("card_" + c.card))}</span>` : ""}`],
      [t("light"), `<i class="dot" style="background:${COLOR[c.light] || "#999"}"></i> ${esc(label("light_", c.light))}` +
        (c.limits.step_used != null ? ` · ${t("case_step_used")} ${Math.round(c.limits.step_used * 100)}%` +
          ` / ${c.limits.step_hours}${unit}${c.limits.extension_hours ? ` +${c.limits.extension_hours}h` : ""}` : "")],
      [t("case_source"), esc(label("source_", c.source)) + ` <span class="hint">${esc(c.external_id)}</span>`],
      [t("case_received"), esc(when(c.received_at))],
      [t("case_due"), esc(when(c.due_at)) + ` <span class="hint">(${c.limits.total_hours}${unit})</span>`],
      [t("case_grid"), c.grid_code ? `${esc(c.grid_code)} ${esc(c.grid_name || "")}` : esc(c.region_code || "–")],
      [t("case_responsible"), resp ? `<span id="desk-resp-name" class="person-name">${esc(resp.name || resp.code)}</span>` +
        ` <span class="hint">${esc(resp.code)} · ${esc(label("role_", resp.role))} · ${esc(label("staff_", resp.status))}</span><br>` +
        phone("responsible_phone", resp.phone) : `<span class="warn">${t("nobody_named")}</span>` +
        (c.fallback ? ` (${esc(label("fallback_", c.fallback))})` : "")],
      [t("case_department"), esc(c.department_name || c.department || "–")],
      [t("case_address"), esc(c.address || "–")],
      [t("case_description"), esc(c.description || "–")],
      [t("case_reporter"), c.reporter_name || c.reporter_phone
        ? `${esc(c.reporter_name || "")} <span id="desk-reporter-phone">${phone("reporter_phone", c.reporter_phone)}</span>` : "–"],
    ];
    const acts = c.allowed_actions.filter((a) => a !== "merge");
    let html = `<div class="desk-case-head"><h3>${fmt("case_title", { id: c.id })} · ${esc(catName(c))}</h3>
      <button type="button" id="desk-case-close" class="link">${t("case_close_view")}</button></div>`;
    if (c.merged_into) {
      html += `<p class="desk-merged">${fmt("case_merged_into", { id: c.merged_into })}
        <button type="button" class="link" data-open="${c.merged_into}">→</button></p>`;
    }
    html += "<dl>" + rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("") + "</dl>";
    html += `<h4>${t("case_actions")}</h4><div id="desk-actions" class="desk-actions">` + (acts.length
      ? acts.map((a) => `<button type="button" data-action="${esc(a)}" class="${desk.form && desk.form.action === a ? "on" : ""}">${esc(label("action_", a))}</button>`).join("")
      : `<span class="hint">${t("case_no_actions")}</span>`) + "</div>";
    if (desk.form) html += actionForm(desk.form.action);
    const merged = c.links.merged.filter((m) => !m.undone_at);
    if (merged.length) {
      html += `<h4>${t("case_merged_list")}</h4><ul class="desk-list">` + merged.map((m) =>
        `<li data-dup="${m.duplicate_id}"><button type="button" class="link" data-open="${m.duplicate_id}">#${m.duplicate_id}</button>
          ${esc(label("source_", m.duplicate_source))} · ${esc(when(m.duplicate_received_at))}
          ${c.allowed_actions.includes("merge") ? `<button type="button" class="link" data-unmerge="${m.duplicate_id}">${t("unmerge")}</button>` : ""}</li>`).join("") + "</ul>";
    }
    if (c.allowed_actions.includes("merge")) {
      html += `<h4>${t("case_candidates")}</h4>`;
      html += c.candidates.length ? `<ul id="desk-candidates" class="desk-list">` + c.candidates.map((d) =>
        `<li><label class="inline"><input type="checkbox" value="${d.id}">
          <b>#${d.id}</b> ${esc(label("source_", d.source))} · ${esc(S.lang === "en" && d.category_name_en ? d.category_name_en : d.category_name)}</label>
          <span class="hint">${fmt("cand_line", { d: Math.round(d.distance_m), h: Math.abs(d.hours_apart).toFixed(1), s: d.score.toFixed(2) })}</span>
          <button type="button" class="link" data-open="${d.id}">→</button></li>`).join("") + "</ul>" +
        `<button type="button" id="desk-merge">${t("merge_selected")}</button>`
        : `<p class="hint">${t("case_no_candidates")}</p>`;
    }
    html += `<h4>${t("case_timeline")}</h4><ol id="desk-timeline" class="desk-timeline">` + c.history.map((h) =>
      `<li><span class="hint">${esc(when(h.at))}</span> <b>${esc(label("action_", h.action))}</b>` +
      (h.from_state !== h.to_state ? ` ${esc(label("state_", h.from_state || "–"))} → ${esc(label("state_", h.to_state))}` : "") +
      ` <span class="actor">${esc(h.actor)}</span>` + (h.note ? `<div class="note">${esc(h.note)}</div>` : "") +
      (h.photos && h.photos.length ? `<div class="photos">${t("case_photos")}: ` + h.photos.map((p, i) =>
        `<a href="${esc(p)}" target="_blank" rel="noopener noreferrer">${i + 1}</a>`).join(" ") + "</div>" : "") +
      "</li>").join("") + "</ol>";
    box.innerHTML = html;
    box.hidden = false;
    document.dispatchEvent(new CustomEvent("cg:desk-case", { detail: c }));  // call-ups (desk-callup.js)
  }

  // ---- acting -----------------------------------------------------------------------------------
  function readForm() {
    if (!desk.form || !$("desk-action-form")) return;
    desk.form.note = $("desk-form-note").value;
    if ($("desk-form-hours")) desk.form.hours = $("desk-form-hours").value;
    if ($("desk-form-card")) desk.form.card = $("desk-form-card").value;
    if ($("desk-form-score")) desk.form.score = $("desk-form-score").value;
  }
  // Someone else changed the case (409): say what happened in words, show the case as it is now,
  // and keep the form with everything typed in it.
  async function explainConflict(err, action) {
    const before = desk.view;
    const fresh = await api(`/desk/cases/${before.id}`);
    desk.view = fresh;
    const last = fresh.history[fresh.history.length - 1] || {};
    let text;
    if (err.code === "illegal_transition" || !fresh.allowed_actions.includes(action)) {
      text = fmt("conflict_illegal", { state: label("state_", fresh.state), action: label("action_", action),
        allowed: fresh.allowed_actions.map((a) => label("action_", a)).join("、") || "–" });
    } else {
      text = fmt("conflict_text", { actor: last.actor || "?", at: when(last.at), action: label("action_", last.action),
        state: label("state_", fresh.state) });
    }
    if (desk.form) desk.form.conflict = `<b>${esc(t("conflict_title"))}</b><br>${esc(text)}`;
    else notify(`<b>${esc(t("conflict_title"))}</b> ${esc(text)}`);
    renderCase();
    showOnMap(fresh);
    loadQueue().catch(() => {});
  }
  async function submitAction(ev) {
    ev.preventDefault();
    readForm();
    const f = desk.form;
    const c = desk.view;
    const body = { action: f.action, note: f.note || "", expected_version: c.version };
    if (f.action === "extend") body.hours = Number(f.hours);
    if (f.action === "card") body.card = f.card || "yellow";
    if (f.action === "evaluate") body.score = Number(f.score);
    try {
      showError(null);
      const view = await api(`/desk/cases/${c.id}/actions`, { method: "POST", body });
      desk.view = view; desk.form = null;
      notify(esc(fmt("done_action", { action: label("action_", body.action), state: label("state_", view.state) })));
      renderCase();
      showOnMap(view);
      await loadQueue();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) { await guarded(() => explainConflict(err, body.action)); return; }
      showError(err);
    }
  }
  async function mergeSelected() {
    const c = desk.view;
    const ids = [...document.querySelectorAll("#desk-candidates input:checked")].map((i) => Number(i.value));
    if (!ids.length) { notify(esc(t("merge_none_selected"))); return; }
    try {
      showError(null);
      const view = await api(`/desk/cases/${c.id}/merge`, { method: "POST",
        body: { duplicates: ids, expected_version: c.version } });
      desk.view = view;
      notify(esc(fmt("merge_done", { n: ids.length, id: c.id })));
      renderCase();
      await loadQueue();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && err.code === "conflict") {
        await guarded(() => explainConflict(err, "merge")); return;
      }
      showError(err);
    }
  }
  async function unmerge(id) {
    await guarded(async () => {
      const back = await api(`/desk/cases/${Number(id)}/unmerge`, { method: "POST", body: {} });
      notify(esc(fmt("unmerge_done", { id, state: label("state_", back.state) })));
      if (desk.view && desk.view.id !== Number(id)) await openCase(desk.view.id); else { desk.view = back; renderCase(); }
      await loadQueue();
    });
  }
  async function reveal(field) {
    const reason = $("desk-reveal-reason").value.trim();
    await guarded(async () => {
      const got = await api(`/desk/cases/${desk.view.id}/reveal`, { method: "POST", body: { field, reason } });
      desk.revealed[field] = got;
      desk.reveal = null;
      renderCase();
    });
  }

  // ---- saved views ------------------------------------------------------------------------------
  async function loadViews() { desk.views = await api("/desk/views"); }
  function viewFilters() {
    const f = desk.filters;
    const out = {};
    ["states", "lights", "categories", "sources"].forEach((k) => { if (f[k].length) out[k] = f[k]; });
    ["region", "assignee", "department", "q"].forEach((k) => { if (f[k]) out[k] = f[k]; });
    if (f.since) out.since = window.CG.dayStart(f.since, app.cityTz());
    if (f.until) out.until = window.CG.dayStart(f.until, app.cityTz());
    if (f.sort !== "due_at") out.sort = f.sort;
    return out;
  }
  async function saveView() {
    readFilters();
    const current = desk.views.find((v) => String(v.id) === desk.viewId);
    const name = (window.prompt(t("desk_view_name"), current ? current.name : "") || "").trim();
    if (!name) return;
    await guarded(async () => {
      const v = await api("/desk/views", { method: "POST", body: { name, filters: viewFilters() } });
      await loadViews();
      desk.viewId = String(v.id);
      notify(esc(fmt("desk_view_saved", { name: v.name })));
      build();
    });
  }
  function useView(id) {
    desk.viewId = id;
    const v = desk.views.find((x) => String(x.id) === id);
    const f = blank();
    if (v) {
      Object.assign(f, v.filters);
      ["since", "until"].forEach((k) => { if (f[k]) f[k] = String(f[k]).slice(0, 10); });
    }
    desk.filters = f;
    firstPage();
    build();
    guarded(loadQueue);
  }
  async function deleteView() {
    if (!desk.viewId) return;
    await guarded(async () => {
      await api(`/desk/views/${Number(desk.viewId)}`, { method: "DELETE" });
      await loadViews();
      desk.viewId = "";
      build();
    });
  }

  // ---- events -----------------------------------------------------------------------------------
  function wire() {
    $("desk-filter").addEventListener("submit", (ev) => {
      ev.preventDefault(); readFilters(); firstPage(); desk.viewId = ""; guarded(loadQueue);
    });
    $("desk-reset").addEventListener("click", () => { desk.filters = blank(); firstPage(); desk.viewId = ""; build(); guarded(loadQueue); });
    ["desk-category", "desk-source", "desk-department", "desk-sort"].forEach((id) => $(id).addEventListener("change", () => {
      readFilters(); firstPage(); guarded(loadQueue);
    }));
    $("desk-counts").addEventListener("click", (ev) => {
      const b = ev.target.closest("button.chip");
      if (!b) return;
      readFilters();
      const list = desk.filters[b.dataset.kind];
      const i = list.indexOf(b.dataset.value);
      if (i >= 0) list.splice(i, 1); else list.push(b.dataset.value);
      firstPage();
      guarded(loadQueue);
    });
    $("desk-table").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-id]");
      if (tr) guarded(() => openCase(Number(tr.dataset.id)));
    });
    $("desk-prev").addEventListener("click", () => {
      if (!desk.back.length) return;
      const b = desk.back.pop();
      desk.after = b.after; desk.offset = b.offset;
      guarded(loadQueue);
    });
    $("desk-next").addEventListener("click", () => {
      const p = desk.page;
      if (!p || !p.next) return;
      desk.back.push({ after: desk.after, offset: desk.offset });
      desk.after = p.next; desk.offset += p.items.length;
      guarded(loadQueue);
    });
    $("desk-view").addEventListener("change", (ev) => useView(ev.target.value));
    $("desk-view-save").addEventListener("click", saveView);
    $("desk-view-delete").addEventListener("click", deleteView);
    const box = $("desk-case");
    box.addEventListener("click", (ev) => {
      const el = ev.target.closest("button, a");
      if (!el) return;
      if (el.id === "desk-case-close") { desk.view = null; desk.form = null; renderCase(); renderQueue(); return; }
      if (el.dataset.open) { guarded(() => openCase(Number(el.dataset.open))); return; }
      if (el.dataset.unmerge) { unmerge(el.dataset.unmerge); return; }
      if (el.dataset.reveal) { readForm(); desk.reveal = el.dataset.reveal; renderCase(); $("desk-reveal-reason").focus(); return; }
      if (el.id === "desk-reveal-go") { readForm(); reveal(el.dataset.field); return; }
      if (el.id === "desk-merge") { mergeSelected(); return; }
      if (el.id === "desk-form-cancel") { desk.form = null; renderCase(); return; }
      if (el.dataset.action && el.closest("#desk-actions")) {
        const a = el.dataset.action;
        if (a === "unmerge") { unmerge(desk.view.id); return; }
        readForm();
        if (!desk.form || desk.form.action !== a) desk.form = { action: a, note: desk.form ? desk.form.note : "" };
        renderCase();
        $("desk-form-note").focus();
      }
    });
    box.addEventListener("submit", (ev) => { if (ev.target.id === "desk-action-form") submitAction(ev); });
    box.addEventListener("input", (ev) => { if (ev.target.closest("#desk-action-form")) readForm(); });
  }

  // ---- the tab, live arrivals, language --------------------------------------------------------
  function setBadge(n) {
    desk.badge = n;
    const b = $("desk-badge");
    b.hidden = !n;
    b.textContent = n > 99 ? "99+" : String(n);
  }
  function deskActive() { return !$("tab-desk").hidden; }
  async function open() {
    $("map-view").classList.add("desk-wide");
    setBadge(0);
    if (S.map) setTimeout(() => S.map.invalidateSize(), 0);
    if (desk.me && desk.me.name === (S.me && S.me.name)) { if (!desk.built) build(); return; }
    await guarded(async () => {
      const [me, cats] = await Promise.all([api("/desk/me"), api("/categories").catch(() => [])]);
      desk.me = me; desk.categories = cats;
      if (me.department) desk.filters.department = me.department;
      await loadViews().catch(() => { desk.views = []; });
      build();
      await loadQueue();
    });
  }
  function toast(c) {
    let box = $("desk-toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "desk-toasts"; box.className = "desk-toasts";
      document.body.appendChild(box);
    }
    const el = document.createElement("div");
    el.className = "desk-toast";
    el.dataset.id = String(c.id);
    el.innerHTML = `${esc(fmt("toast_new", { id: c.id, category: S.lang === "en" && c.category_name_en ? c.category_name_en : c.category_name }))}` +
      `<span class="hint"> ${esc(c.address || "")}</span> <button type="button" class="link">${t("toast_open")}</button>`;
    el.querySelector("button").addEventListener("click", () => {
      el.remove();
      app.showTab("tab-desk");
      open().then(() => guarded(() => openCase(c.id)));
    });
    box.appendChild(el);
    setTimeout(() => el.remove(), 8000);
  }
  let reloadTimer = null;
  window.addEventListener("citygrid:incident", (ev) => {
    const c = ev.detail;
    if (!["received", "registered", "dispatched", "handling", "reported", "verified"].includes(c.state)) return;
    toast(c);
    if (!deskActive()) { setBadge(desk.badge + 1); return; }
    if (desk.built && !desk.after) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(() => guarded(loadQueue), 300);
    }
  });
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => {
    if (b.dataset.tab === "tab-desk") { open(); return; }
    $("map-view").classList.remove("desk-wide");
    if (S.map) setTimeout(() => S.map.invalidateSize(), 0);
  }));
  $("lang").addEventListener("click", () => {
    if (!desk.built) return;
    readFilters(); readForm();
    build();
  });
  window.citygridDesk = { desk, openCase, loadQueue, open };  // for debugging and the UI tests
})();

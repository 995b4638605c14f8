// CityGrid planners' editor (issue 8): open or create a redraw plan for a community, edit its grids
// with Leaflet-Geoman (reshape, split, merge, create, retire, recode, move) with snapping, validate
// every edit live (?dry_run=true) and draw the problems, compare old and new boundaries, preview the
// impact and activate. Same session, CSRF and offline rules as the portal (app.js): data calls go to
// the API on this origin with the http-only session cookie; writes echo the CSRF token; plan edits and
// activation carry If-Match with the plan's ETag.
"use strict";
(function () {
  const STRINGS = {
    "zh-CN": {
      title: "网格规划编辑器", to_portal: "门户", loading: "加载中…", logout: "退出", lang_switch: "English",
      login_title: "登录", username: "用户名", password: "密码", login: "登录",
      pick_title: "选择社区", search_placeholder: "社区名称或代码", search: "搜索",
      no_results: "没有找到辖区内的社区或街道。",
      plans_title: "规划方案", plan_name_placeholder: "新方案名称", create_plan: "新建方案",
      no_plans: "该区域暂无草稿方案。", open: "打开",
      view: "视图", view_plan: "方案", view_old: "现行边界", view_diff: "新旧对比",
      problems_title: "校验问题", edits_title: "修改记录", impact_title: "影响预览", activate_title: "启用方案",
      edit_title: "编辑", tool_reshape: "修改边界", tool_split: "划线拆分", tool_merge: "合并",
      tool_create: "新建网格", tool_retire: "撤销网格", tool_recode: "改代码", tool_move: "移交社区",
      apply: "应用修改", cancel: "取消", validate: "整体校验", refresh: "刷新",
      selection_none: "点击地图上的网格以选中；合并时可多选。",
      selection: "已选：",
      need_one: "请先在地图上选中一个网格。",
      hint_reshape: "拖动顶点修改边界，右键顶点可删除。顶点会吸附到相邻网格的边和顶点。",
      hint_split: "在网格上画一条穿过它的线：逐点单击，最后一点再单击一次结束。线会吸附到边界。",
      hint_merge: "在地图上单击要合并的相邻网格（至少两个），并选择保留哪个代码。",
      hint_create: "逐点单击画出新网格，单击第一个点闭合。它会从所覆盖的网格中划出。",
      hint_retire: "选择并入的相邻网格：被撤销网格的范围并入该网格。",
      hint_recode: "输入新的15位网格代码。",
      hint_move: "输入接收社区的代码：网格将移交并按该社区重新编码。",
      field_new_code: "新代码（可选）", field_new_name: "新名称（可选）", field_keep: "保留代码",
      field_into: "并入", field_parent: "所属社区", field_name: "名称（可选）", field_code: "代码（可选）",
      field_recode: "新代码", field_move_parent: "接收社区代码",
      check_idle: "完成绘制后自动校验。", check_running: "校验中…", check_ok: "校验通过，可以应用。",
      check_bad: "校验未通过：", check_problems: "个问题（见下方与地图）",
      applied: "已应用：", no_problems: "无问题。", problems_plan: "方案当前的问题",
      problem_at: "定位",
      kind_invalid_geometry: "几何无效", kind_outside_parent: "超出所属社区", kind_overlap: "与相邻网格重叠",
      kind_gap: "社区内留有空隙", kind_sliver: "碎片面积过小", kind_code_collision: "代码冲突",
      kind_not_neighbours: "不相邻", kind_error: "错误", kind_disconnected: "网格不连通",
      kind_empty: "几何为空", kind_code_format: "代码格式不对", kind_bad_split: "拆分线无效",
      kind_unknown_code: "代码不存在", kind_unsupported: "不支持的操作",
      no_edits: "尚无修改。",
      status: "状态", status_draft: "草稿", status_activated: "已启用", status_discarded: "已放弃",
      base_version: "基于边界版本", etag: "版本标记", created_by: "创建人",
      change_unchanged: "未变", change_changed: "已改", change_new: "新增", change_retired: "撤销",
      change_context: "周边（只读）",
      impact_none: "打开方案后显示。", impact_grids: "面积变化的网格", impact_code: "网格",
      impact_change: "变化", impact_old: "原面积 m²", impact_new: "新面积 m²", impact_delta: "差值",
      impact_incidents: "改变网格的未结事件", impact_workers_moving: "改变网格的网格员",
      impact_without_grid: "将没有网格的网格员", impact_grids_without_worker: "将没有网格员的网格",
      impact_households: "改变网格的住户/地址", impact_no_change: "没有网格面积变化。",
      more: "另有", items: "项",
      effective_at: "生效时间", effective_hint: "留空表示立即生效。",
      reroute: "将未结事件改派到新网格（记录在案）", activate: "启用", discard: "放弃方案",
      activate_confirm: "启用后全市立即（或在生效时间）切换到新边界。确定启用？",
      discard_confirm: "放弃这个草稿方案？", discarded: "方案已放弃。",
      activated: "方案已启用", boundary_version: "边界版本", rerouted: "改派事件",
      effective: "生效", activate_blocked: "方案有未解决的问题，不能启用。",
      conflict_edit: "冲突：你打开方案后，它已被别人修改。", conflict_last: "最近一次修改",
      conflict_activate: "冲突：这些网格在你打开方案后已经改变（可能另一个方案已先启用）。",
      conflict_reload: "请重新载入方案后再试。", reload: "重新载入",
      conflict_status: "这个方案已是“{status}”状态，只有草稿可以修改或启用。",
      conflict_other: "期间启用的边界版本", plan: "方案",
      conflict_new_plan: "请在现行边界上新建方案。",
      plan_stale: "打开此方案后，这些网格的现行边界已被他人修改（另一方案已启用或直接编辑），启用会冲突。请在现行边界上新建方案。",
      stale_badge: "已过时",
      history_title: "边界版本历史", hist_from: "从", hist_to: "到", hist_show: "对比", hist_clear: "清除",
      hist_restore: "恢复“从”版本（新建方案）", hist_now: "现行边界", hist_no_change: "两个版本之间本区域没有变化。",
      hist_changes: "本区域的变化", hist_restore_name: "恢复到版本",
      hist_legend: "虚线红色为“从”版本，实线绿色为“到”版本。",
      scheduled_note: "定时生效：到生效时间前，全市查询仍按现行边界回答。",
      households_none: "登记库中没有住户或地址数据，无法统计", no_grid: "（无网格）",
      duty_primary: "主责", duty_backup: "备岗", duty_head: "负责人",
      incidents_note: "已结事件无论方案如何都保留原网格。",
      err_invalid_effective_at: "生效时间不能早于现在。", err_reroute_needs_immediate: "只有立即生效时才能改派未结事件。",
      err_empty_plan: "方案没有任何修改，无需启用。", err_invalid_edit: "方案有未解决的问题，见“校验问题”。",
      err_precondition_required: "缺少版本标记（If-Match），请重新载入方案。", err_forbidden: "没有权限。",
      err_plan_not_found: "方案不存在，或不在你的辖区内。",
      err_region_not_found: "区域不存在，或不在你的辖区内。", err_csrf_failed: "安全校验失败，请重新登录。", err_invalid_request: "请求内容有误。",
      reroute_future: "定时生效时不能改派；生效后可在事件中处理。",
      error: "出错了", error_network: "无法连接服务器。", error_session: "登录已失效，请重新登录。",
      legend: "图例", legend_selected: "已选中", legend_problem: "校验问题", legend_old: "现行边界（对比）", old_suffix: "（旧）", legend_drawn: "正在绘制",
      basemap_none: "无底图：仅显示本市边界", basemap_gcj: "底图为GCJ-02，编辑器不显示以免坐标偏移",
    },
    en: {
      title: "Grid planner", to_portal: "Portal", loading: "Loading…", logout: "Log out", lang_switch: "中文",
      login_title: "Log in", username: "User name", password: "Password", login: "Log in",
      pick_title: "Choose a community", search_placeholder: "Community name or code", search: "Search",
      no_results: "No community or street in your jurisdiction matches.",
      plans_title: "Plans", plan_name_placeholder: "New plan name", create_plan: "New plan",
      no_plans: "No draft plan for this area.", open: "Open",
      view: "View", view_plan: "Plan", view_old: "Current", view_diff: "Old vs new",
      problems_title: "Validation", edits_title: "Edits", impact_title: "Impact preview",
      activate_title: "Activate", edit_title: "Edit", tool_reshape: "Reshape", tool_split: "Split by line", tool_merge: "Merge",
      tool_create: "New grid", tool_retire: "Retire", tool_recode: "Re-code", tool_move: "Move",
      apply: "Apply", cancel: "Cancel", validate: "Validate all", refresh: "Refresh",
      selection_none: "Click a grid on the map to select it; merging takes several.",
      selection: "Selected: ",
      need_one: "Select one grid on the map first.",
      hint_reshape: "Drag vertices to reshape; right-click a vertex to remove it. Vertices snap to the "
        + "neighbours' edges and vertices.",
      hint_split: "Draw a line across the grid: click point by point, click the last point again to finish. "
        + "The line snaps to edges.",
      hint_merge: "Click the neighbouring grids to merge (two or more) and choose which code stays.",
      hint_create: "Click point by point to draw the new grid; click the first point to close it. It is "
        + "carved out of the grids it covers.",
      hint_retire: "Choose the neighbour that takes over the retired grid's area.",
      hint_recode: "Enter the new 15-digit grid code.",
      hint_move: "Enter the receiving community's code: the grid moves there and is re-coded under it.",
      field_new_code: "New code (optional)", field_new_name: "New name (optional)", field_keep: "Keep code",
      field_into: "Into", field_parent: "Community", field_name: "Name (optional)",
      field_code: "Code (optional)", field_recode: "New code", field_move_parent: "Community code",
      check_idle: "Checked automatically once drawn.", check_running: "Checking…",
      check_ok: "Valid: ready to apply.", check_bad: "Not valid: ",
      check_problems: "problem(s), listed below and drawn on the map",
      applied: "Applied: ", no_problems: "No problems.", problems_plan: "Problems in the plan",
      problem_at: "show",
      kind_invalid_geometry: "Invalid geometry", kind_outside_parent: "Outside its community",
      kind_overlap: "Overlaps a neighbour", kind_gap: "Gap in the community", kind_sliver: "Sliver",
      kind_code_collision: "Code collision", kind_not_neighbours: "Not neighbours", kind_error: "Error",
      kind_disconnected: "Disconnected", kind_empty: "Empty geometry", kind_code_format: "Bad code",
      kind_bad_split: "Bad split line", kind_unknown_code: "Unknown code", kind_unsupported: "Unsupported",
      no_edits: "No edits yet.",
      status: "Status", status_draft: "draft", status_activated: "activated", status_discarded: "discarded",
      base_version: "Based on version", etag: "ETag", created_by: "Created by",
      change_unchanged: "unchanged", change_changed: "changed", change_new: "new", change_retired: "retired",
      change_context: "neighbours (read-only)",
      impact_none: "Open a plan to see its impact.", impact_grids: "Grids whose area changes",
      impact_code: "Grid", impact_change: "Change", impact_old: "Old m²", impact_new: "New m²",
      impact_delta: "Delta", impact_incidents: "Open incidents changing grid",
      impact_workers_moving: "Workers changing grid", impact_without_grid: "Workers left without a grid",
      impact_grids_without_worker: "Grids left without a worker",
      impact_households: "Households / addresses changing grid", impact_no_change: "No grid changes area.",
      more: "and", items: "more",
      effective_at: "Takes effect", effective_hint: "Empty means now.",
      reroute: "Re-route open incidents to the new grids (recorded)", activate: "Activate",
      discard: "Discard plan",
      activate_confirm: "The whole city switches to the new boundaries now (or at the stated time). Activate?",
      discard_confirm: "Discard this draft plan?", discarded: "Plan discarded.",
      activated: "Plan activated", boundary_version: "Boundary version", rerouted: "Incidents re-routed",
      effective: "Effective", activate_blocked: "The plan has unresolved problems and cannot be activated.",
      conflict_edit: "Conflict: someone else changed this plan after you opened it.",
      conflict_last: "Their last edit",
      conflict_activate: "Conflict: these grids changed after you opened the plan (another plan may have "
        + "been activated first).",
      conflict_reload: "Reload the plan and try again.", reload: "Reload",
      conflict_status: "This plan is {status}; only a draft can be edited or activated.",
      conflict_other: "Boundary version activated meanwhile:", plan: "plan",
      conflict_new_plan: "Open a new plan on the current boundaries.",
      plan_stale: "Since this plan was opened, someone else changed these grids' current boundaries (another "
        + "plan was activated, or a direct edit): activating it will conflict. Open a new plan on the current "
        + "boundaries.",
      stale_badge: "out of date",
      history_title: "Boundary history", hist_from: "From", hist_to: "To", hist_show: "Compare",
      hist_clear: "Clear", hist_restore: "Restore “From” (new plan)", hist_now: "current boundaries",
      hist_no_change: "Nothing changed in this area between the two versions.",
      hist_changes: "Changes in this area", hist_restore_name: "Restore version",
      hist_legend: "Dashed red: the “From” version; solid green: the “To” version.",
      scheduled_note: "Scheduled: until then every lookup still answers with the current boundaries.",
      households_none: "The registry holds no households or addresses: nothing to count",
      no_grid: "(no grid)", duty_primary: "primary", duty_backup: "backup", duty_head: "head",
      incidents_note: "Closed incidents keep their grid whatever the plan does.",
      err_invalid_effective_at: "The effective time cannot be in the past.",
      err_reroute_needs_immediate: "Open incidents can be re-routed only when the plan takes effect now.",
      err_empty_plan: "The plan changes nothing: there is nothing to activate.",
      err_invalid_edit: "The plan has unresolved problems: see Validation.",
      err_precondition_required: "The plan's ETag (If-Match) is missing: reload the plan.",
      err_forbidden: "Not allowed.", err_plan_not_found: "No such plan in your jurisdiction.",
      err_region_not_found: "No such region in your jurisdiction.",
      err_csrf_failed: "The security check failed; please log in again.",
      err_invalid_request: "The request is not valid.",
      reroute_future: "A scheduled plan cannot re-route; handle the incidents once it takes effect.",
      error: "Error", error_network: "Cannot reach the server.",
      error_session: "The session has ended; please log in again.",
      legend: "Legend", legend_selected: "Selected", legend_problem: "Problem", legend_old: "Current boundary (diff)", old_suffix: " (old)", legend_drawn: "Being drawn",
      basemap_none: "No base map: the city's own outlines only",
      basemap_gcj: "Base map is GCJ-02: hidden in the editor so edits are not shifted",
    },
  };
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
      html += `${esc(t("conflict_last"))}: ${esc(who(e.by) || "?")} · ${esc(fmtTime(e.at))} · ${esc(e.op || "")} ` +
        `${esc(e.summary || "")}. `;
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
    if (state.historyLayer) state.historyLayer.clearLayers();
    $("hist-summary").innerHTML = "";
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
    await listVersions();
  }

  // ---- history: versions, a diff map between two, restore as a new plan -------------------------
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
  async function listPlans() {
    const body = await api("/plans?status=draft");
    const mine = body.items.filter((p) => p.region_code === state.region.code);
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
    const draft = plan.status === "draft";
    document.querySelectorAll(".tools button, #apply, #activate, #discard, #validate").forEach((b) => {
      b.disabled = !draft;
    });
    if (draft) $("apply").disabled = !(state.check && state.check.ok);
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
  function showEdits() {
    const edits = (state.plan && state.plan.edits) || [];
    $("edits").innerHTML = edits.length ? edits.map((e) =>
      `<li><b>${esc(e.op)}</b> ${esc(e.summary)} <span class="hint">${esc(who(e.by))} · ${esc(fmtTime(e.at))}</span></li>`
    ).join("") : `<li class="hint">${esc(t("no_edits"))}</li>`;
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
    if (!isStreetPlan()) return;
    const page = await api(`/regions/${encodeURIComponent(state.plan.region_code)}/children?limit=1000`);
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
      html = field("f-move", "field_move_parent", `<input id="f-move" maxlength="15" value="${esc(keep("f-move"))}">`);
    }
    $("tool-fields").innerHTML = html;
    $("tool-fields").querySelectorAll("input, select").forEach((el) => {
      el.addEventListener(el.tagName === "SELECT" ? "change" : "input", () => rebuildPending());
    });
  }
  function startTool(tool) {
    if (state.tool) cancelTool();
    const needsOne = ["reshape", "split", "retire", "recode", "move"].includes(tool);
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
      result = { ok: true, problems: body.problems || [], summary: body.summary };
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
      box.textContent = `✓ ${t("check_ok")}` + (result.summary ? ` (${result.summary})` : "");
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
      $("check").textContent = `✓ ${t("applied")}${last ? last.summary || last.op : tool}`;
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
  $("hist-show").addEventListener("click", showHistory);
  $("hist-clear").addEventListener("click", () => {
    if (state.historyLayer) state.historyLayer.clearLayers();
    $("hist-summary").innerHTML = "";
  });
  $("hist-restore").addEventListener("click", restoreVersion);
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
  window.citygrid = { state };  // for debugging and the UI tests
})();

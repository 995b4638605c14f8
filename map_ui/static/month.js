// The supervisor's month (考核 tab): the jurisdiction's figures for a month, per street, community,
// grid, worker or department, ranked, beside the month before and the same month last year; every
// figure opens the cases behind it. Also the grid summary under the lookup card when a grid is
// clicked on the map, the scores, the 12-month trend and the meeting pack button.
// Hooks into app.js by events only: "cg:render" (language or user changed) and "cg:grid" (a grid
// was located). Uses window.CG (common.js) and window.citygrid (app.js) for the shared state.
"use strict";
(function () {
  const { $, esc } = window.CG;
  const STRINGS = window.CG_I18N;
  const lang = () => (window.citygrid && window.citygrid.state.lang) || "zh-CN";
  const t = window.CG.translator(STRINGS, lang);
  const fmt = (s, vars) => s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? vars[k] : `{${k}}`));
  const csrf = () => window.citygrid && window.citygrid.state.csrf;
  const api = window.CG.client({ csrf, t });
  const FIGS = ["closure_rate", "on_time_rate", "rework_rate", "mean_handling_h", "patrol_coverage"];
  const LOWER = new Set(["rework_rate", "mean_handling_h"]);
  const LIGHT = { red: "#d62828", yellow: "#f4a261", green: "#2a9d8f" };
  const st = { data: null, drill: null, grid: null, gridCode: null, scores: null, trend: null,
    chart: null, pack: null, judge: null, place: null, giLayer: null, giLegend: null, placeLayer: null,
    themeBefore: null };

  const can = (perm) => { const me = window.citygrid && window.citygrid.state.me; return !!(me && me.permissions.includes(perm)); };
  const cityTz = () => (window.citygrid && window.citygrid.cityTz ? window.citygrid.cityTz() : undefined);
  function lastFullMonth() {
    const today = new Date().toLocaleDateString("sv-SE", { timeZone: cityTz() });  // the city's wall clock
    const y = +today.slice(0, 4), m = +today.slice(5, 7) - 1;  // the previous month's number
    return m === 0 ? `${y - 1}-12` : `${y}-${String(m).padStart(2, "0")}`;
  }
  // An API error in the page's language: a known code has its own string, else the server's text.
  const errText = (err) => {
    const key = err && err.code ? "m_err_" + err.code : null;
    return key && t(key) !== key ? t(key) : (err && err.message) || String(err);
  };
  function show(v, fig) {
    if (v === null || v === undefined) return "–";
    if (fig === "mean_handling_h") return `${v.toFixed(1)} ${t("m_hours")}`;
    if (fig.endsWith("_rate") || fig === "patrol_coverage") return `${(v * 100).toFixed(1)}%`;
    return String(v);
  }
  function delta(cur, prev, fig) {
    if (cur == null || prev == null || cur === prev) return "";
    const better = LOWER.has(fig) ? cur < prev : cur > prev;
    const d = fig === "mean_handling_h" ? (cur - prev).toFixed(1) : ((cur - prev) * 100).toFixed(1);
    return ` <small class="${better ? "m-up" : "m-down"}" title="${t(better ? "m_better" : "m_worse")}">${better ? "▲" : "▼"}${esc(d)}</small>`;
  }
  const fig = (name, code, value, extra = "") =>
    `<a href="#" class="m-fig" data-fig="${name}" data-code="${esc(code == null ? "" : code)}">${esc(show(value, name))}</a>${extra}`;

  // ---- the view ------------------------------------------------------------------------------
  async function load() {
    const month = $("m-month").value || lastFullMonth();
    const level = $("m-level").value;
    const q = new URLSearchParams({ month, level, boundaries: bounds() });
    const street = $("street") && $("street").value;
    if (street) q.set("region", street);
    st.data = await api(`/analysis/month?${q}`);
    st.drill = null;
    renderView();
    loadScores().catch(() => {});
    loadTrend().catch(() => {});
    // what was drawn for another month follows: the 研判 layer and the grid summary
    if (st.judge && st.judge.month !== st.data.month) loadJudge().catch(() => {});
    if (st.gridCode && st.grid && st.grid.month !== st.data.month) gridSummary(st.gridCode).catch(() => {});
  }
  // The units' boundaries the figures are cut by: those in force in that month, or today's.
  const bounds = () => ($("m-bounds") && $("m-bounds").value) || "then";
  function boundsSwitch() {
    if ($("m-bounds")) return;
    const label = document.createElement("label");
    label.className = "inline";
    label.innerHTML = `<span data-i18n="m_bounds">${t("m_bounds")}</span><select id="m-bounds">` +
      `<option value="then" data-i18n="m_bounds_then">${t("m_bounds_then")}</option>` +
      `<option value="today" data-i18n="m_bounds_today">${t("m_bounds_today")}</option></select>`;
    $("m-show").before(label);
    $("m-bounds").addEventListener("change", () => guard(load));
  }
  function renderView() {
    const d = st.data;
    if (!d) return;
    const tot = d.total.current, prev = d.total.prev, ly = d.total.last_year;
    $("m-total").innerHTML = `<h3>${t("m_total")} · ${esc(d.month)}</h3><div class="m-kpis">` + FIGS.map((f) =>
      `<div class="m-kpi"><span>${t("m_" + f)}</span><b>${fig(f, null, tot[f])}</b>` +
      `<small>${t("m_prev")} ${esc(show(prev[f], f))} · ${t("m_last_year")} ${esc(show(ly[f], f))}</small></div>`).join("") +
      `</div><p class="hint">${t("m_received")} ${tot.received} · ${t("m_due")} ${tot.due} · ${t("m_closed")} ${tot.closed} · ` +
      (tot.coverage_days ? esc(fmt(t("m_coverage_days"), { n: tot.coverage_days })) : t("m_no_patrol")) +
      `</p><p class="hint">${t("m_click_hint")}</p>`;
    const sort = $("m-sort").value;
    const rows = [...d.rows].sort((a, b) => {
      const ra = a.rank[sort], rb = b.rank[sort];
      if (ra == null && rb == null) return String(a.code).localeCompare(String(b.code));
      if (ra == null) return 1;
      if (rb == null) return -1;
      return ra - rb;
    });
    const head = `<tr><th>${t("m_rank")}</th><th>${t("m_name")}</th>` +
      FIGS.map((f) => `<th>${t("m_" + f)}</th>`).join("") + `<th>${t("m_due")}</th></tr>`;
    const body = rows.map((r) => `<tr data-code="${esc(r.code || "")}"><td>${r.rank[sort] ?? "–"}</td>` +
      `<td class="m-name" title="${esc(r.code || "")}">${esc(r.name)}</td>` +
      FIGS.map((f) => `<td title="${t("m_prev")} ${esc(show(r.prev[f], f))} · ${t("m_last_year")} ${esc(show(r.last_year[f], f))}">` +
        fig(f, r.code, r[f], delta(r[f], r.prev[f], f)) + "</td>").join("") +
      `<td>${fig("due", r.code, r.due)}</td></tr>`).join("");
    $("m-table").innerHTML = `<thead>${head}</thead><tbody>${body}</tbody>`;
    $("m-table").hidden = false;
    const q = new URLSearchParams({ month: d.month, level: d.level, boundaries: d.boundaries || "then" });
    if (d.region) q.set("region", d.region);
    $("m-xlsx").href = `/assessment.xlsx?${q}`;
    $("m-xlsx").hidden = false;
    renderDrill();
    renderScores();
    if (!$("m-judge")) renderJudgeShell();
  }
  async function drill(figure, code) {
    const d = st.data;
    const q = new URLSearchParams({ month: d.month, figure, limit: "500" });
    if (code === null) { q.set("level", "all"); } else { q.set("level", d.level); q.set("code", code); }
    if (d.region) q.set("region", d.region);
    const body = await api(`/analysis/cases?${q}`);
    const unit = code === null ? t("m_total") : ((d.rows.find((r) => (r.code || "") === code) || {}).name || code);
    st.drill = { body, unit };
    renderDrill();
    $("m-drill").scrollIntoView({ block: "nearest" });
  }
  function renderDrill() {
    const box = $("m-drill");
    if (!st.drill) { box.hidden = true; return; }
    const { body, unit } = st.drill;
    const rate = body.hits !== null && body.hits !== undefined;
    box.innerHTML = `<h3>${esc(fmt(t("m_drill_title"), { unit, figure: t("m_" + body.figure) === "m_" + body.figure ? body.figure : t("m_" + body.figure), n: body.total }))}` +
      ` <button type="button" id="m-drill-close">${t("m_close")}</button></h3>` +
      (rate ? `<p class="hint">${esc(fmt(t("m_drill_hits"), { h: body.hits }))}</p>` : "") +
      (body.truncated ? `<p class="hint">${esc(fmt(t("m_drill_truncated"), { k: body.rows.length }))}</p>` : "") +
      `<table class="m-cases"><thead><tr>${rate ? "<th></th>" : ""}<th>${t("m_case")}</th><th>${t("m_category")}</th>` +
      `<th>${t("m_state")}</th><th>${t("m_due_at")}</th><th>${t("m_closed_at")}</th></tr></thead><tbody>` +
      body.rows.map((c) => `<tr data-id="${c.id}">${rate ? `<td>${c.hit ? "✔" : "✘"}</td>` : ""}` +
        `<td><a href="#" class="m-case" data-id="${c.id}">${esc(c.external_id)}</a></td><td>${esc(c.category_name)}</td>` +
        `<td>${c.light ? `<i class="dot" style="background:${LIGHT[c.light]}"></i>` : ""}${esc(t("state_" + c.state))}</td>` +
        `<td>${esc((c.due_at || "").slice(0, 16).replace("T", " "))}</td><td>${esc((c.closed_at || "").slice(0, 16).replace("T", " "))}</td></tr>`).join("") +
      "</tbody></table>";
    box.hidden = false;
  }

  // ---- scores and the 12-month trend -----------------------------------------------------------
  async function loadScores() {
    const d = st.data;
    const q = new URLSearchParams({ month: d.month });
    if (d.region) q.set("region", d.region);
    st.scores = await api(`/analysis/scores?${q}`);
    $("m-scores-xlsx").href = `/analysis/scores.xlsx?${q}`;
    renderScores();
  }
  function renderScores() {
    const box = $("m-scores");
    if (!st.scores) { box.hidden = true; return; }
    const part = (kind) => {
      const rows = st.scores[kind];
      return `<h4>${t("m_level_" + kind)}</h4><table class="m-cases"><thead><tr><th>${t("m_rank")}</th><th>${t("m_name")}</th><th>${t("m_score")}</th>` +
        st.scores.rules.map((r) => `<th title="${esc(r.points)} / ${esc(r.per || "")}">${esc(lang() === "en" ? r.label_en : r.label_zh)}</th>`).join("") + "</tr></thead><tbody>" +
        rows.map((r) => `<tr><td>${r.rank}</td><td>${esc(r.name)}</td><td><b>${r.score.toFixed(1)}</b></td>` +
          st.scores.rules.map((rule) => `<td>${rule.kind === "rate" ? show(r.counts[rule.key], "on_time_rate") : r.counts[rule.key]} <small>(${r.points[rule.key] >= 0 ? "+" : ""}${r.points[rule.key].toFixed(1)})</small></td>`).join("") + "</tr>").join("") +
        "</tbody></table>";
    };
    box.innerHTML = `<h3>${t("m_scores_title")} <a id="m-scores-xlsx2" class="m-link m-small" href="${esc($("m-scores-xlsx").href)}">${t("m_scores_xlsx")}</a></h3>` +
      `<div class="m-scores-body"><div class="m-scores-tables">${part("street")}${part("department")}</div>` +
      `<div class="m-rules-box">${rulesHtml(st.scores)}</div></div>`;
    box.hidden = false;
    $("m-scores-xlsx").hidden = false;
  }
  // The scoring rules as the server applies them (layers/analysis/scoring_rules.json).
  function rulesHtml(sc) {
    const en = lang() === "en";
    const items = sc.rules.map((r) => {
      const vars = { label: esc(en ? r.label_en : r.label_zh), p: (r.points > 0 ? "+" : "") + r.points };
      return `<li data-key="${esc(r.key)}">${fmt(t(r.kind === "rate" ? "m_rule_rate" : "m_rule_case"), vars)}` +
        (r.cap != null ? esc(fmt(t("m_rule_cap"), { cap: r.cap })) : "") + "</li>";
    });
    return `<h4>${t("m_rules_title")}</h4><p class="hint" id="m-rules-base">${esc(fmt(t("m_rules_base"), { base: sc.base, min: sc.min, max: sc.max }))}</p>` +
      `<ul class="m-rules">${items.join("")}</ul>`;
  }
  async function loadTrend() {
    const d = st.data;
    const q = new URLSearchParams({ month: d.month, boundaries: bounds() });
    if (d.region) q.set("region", d.region);
    st.trend = await api(`/analysis/trend?${q}`);
    renderTrend();
  }
  function renderTrend() {
    const box = $("m-trend");
    if (!st.trend || !window.uPlot) { box.hidden = true; return; }
    box.hidden = false;
    box.querySelector("h3").textContent = t("m_trend_title");
    const el = box.querySelector(".m-chart");
    el.innerHTML = "";
    const months = st.trend.months.map((m) => Date.UTC(+m.slice(0, 4), +m.slice(5, 7) - 1, 1) / 1000);
    const pct = (k) => st.trend.rows.map((r) => (r[k] == null ? null : r[k] * 100));
    const width = Math.max(300, el.clientWidth || 600);
    st.chart = new window.uPlot({
      width, height: 220, scales: { x: { time: true }, "%": { range: [0, 100] } },
      // the x series' legend: "月份 2026-11", not uPlot's English "Time"
      series: [{ label: t("m_month"), value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 7)) },
        { label: t("m_closure_rate"), stroke: "#1d3557", width: 2, scale: "%", value: (u, v) => (v == null ? "–" : v.toFixed(1) + "%") },
        { label: t("m_on_time_rate"), stroke: "#2a9d8f", width: 2, scale: "%", value: (u, v) => (v == null ? "–" : v.toFixed(1) + "%") },
        { label: t("m_rework_rate"), stroke: "#e76f51", width: 2, scale: "%", value: (u, v) => (v == null ? "–" : v.toFixed(1) + "%") },
        { label: t("m_received"), stroke: "#8d99ae", width: 1, dash: [4, 4], scale: "n" }],
      axes: [{}, { scale: "%", values: (u, vs) => vs.map((v) => v + "%") }, { scale: "n", side: 1, grid: { show: false } }],
    }, [months, pct("closure_rate"), pct("on_time_rate"), pct("rework_rate"), st.trend.rows.map((r) => r.received)], el);
  }

  // ---- the meeting pack ----------------------------------------------------------------------
  async function pack() {
    const d = st.data;
    const month = (d && d.month) || $("m-month").value || lastFullMonth();
    const body = { month, lang: lang() === "en" ? "en" : "zh-CN", boundaries: bounds() };
    const street = $("street") && $("street").value;
    if (street) body.region = street;
    $("m-pack-out").textContent = t("m_pack_busy");
    $("m-pack-out").hidden = false;
    try {
      st.pack = await api("/analysis/pack", { method: "POST", body });
    } catch (err) { $("m-pack-out").textContent = `${t("error")}: ${errText(err)}`; throw err; }
    renderPack();
  }
  function renderPack() {
    const out = $("m-pack-out");
    if (!st.pack) return;
    out.innerHTML = `${t("m_pack_ready")}` + st.pack.files.map((f) =>
      `<a href="${esc(f.url)}" target="_blank" rel="noopener" data-kind="${esc(f.kind)}">${esc(f.kind.toUpperCase())}</a>`).join(" · ");
    out.hidden = false;
  }

  // ---- 研判: Gi* hot and cold spots on the map, recurring places, category spikes, hot topics ----
  const GI = { hot_99: "#b2182b", hot_95: "#ef8a62", hot_90: "#fddbc7", cold_90: "#d1e5f0", cold_95: "#67a9cf", cold_99: "#2166ac" };
  const KIND = { new: "#e7298a", persistent: "#b2182b", consecutive: "#ef8a62", sporadic: "#fdb863", diminished: "#92c5de" };
  function judgeBox() {
    let box = $("m-judge");
    if (box) return box;
    box = document.createElement("div");
    box.id = "m-judge"; box.className = "card";
    $("tab-month").appendChild(box);
    return box;
  }
  function renderJudgeShell() {
    const box = judgeBox();
    const keepCat = $("m-gi-cat") ? $("m-gi-cat").value : "";
    const keepMonths = $("m-gi-months") ? $("m-gi-months").value : "1";
    const cats = (window.citygrid && window.citygrid.state.categories) || [];
    const name = (c) => (lang() === "en" && c.name_en ? c.name_en : c.name);
    const groups = cats.filter((c) => !c.parent_code);
    const opts = groups.map((g) => `<option value="${esc(g.code)}">${esc(name(g))}</option>` +
      cats.filter((c) => c.parent_code === g.code).map((c) => `<option value="${esc(c.code)}">　${esc(name(c))}</option>`).join("")).join("");
    box.innerHTML = `<h3>${t("m_judge_title")}</h3><div class="row2 m-controls">` +
      `<label class="inline"><span>${t("m_category")}</span><select id="m-gi-cat"><option value="">${t("m_all_categories")}</option>${opts}</select></label>` +
      `<label class="inline"><span>${t("m_gi_view")}</span><select id="m-gi-months"><option value="1">${t("m_gi_month")}</option><option value="6">${t("m_gi_6")}</option></select></label>` +
      `<button type="button" id="m-gi-show">${t("m_gi_show")}</button> <button type="button" id="m-gi-clear">${t("m_gi_clear")}</button></div>` +
      `<div id="m-judge-out"></div>`;
    $("m-gi-cat").value = keepCat;
    $("m-gi-months").value = keepMonths;
    box.hidden = false;
  }
  async function loadJudge() {
    const month = (st.data && st.data.month) || $("m-month").value || lastFullMonth();
    const q = new URLSearchParams({ month });
    const street = $("street") && $("street").value;
    if (street) q.set("region", street);
    const gq = new URLSearchParams(q);
    gq.set("months", $("m-gi-months").value); gq.set("geometry", "true");
    if ($("m-gi-cat").value) gq.set("category", $("m-gi-cat").value);
    const [gi, rec, spikes, topics] = await Promise.all([api(`/analysis/hotspots?${gq}`),
      api(`/analysis/recurring?${q}`), api(`/analysis/spikes?${q}`), api(`/analysis/topics?${q}`)]);
    st.judge = { month, gi, rec, spikes, topics, months: Number(gq.get("months")), category: gq.get("category") };
    st.place = null;
    renderJudge();
    drawGi();
  }
  function renderJudge() {
    const out = $("m-judge-out");
    if (!out || !st.judge) return;
    const { gi, rec, spikes, topics, months } = st.judge;
    let html = "";
    if (months > 1) {
      html += `<h4>${esc(fmt(t("m_gi_trend_title"), { n: gi.months.length }))}</h4><p class="hint">${t("m_gi_trend_rule")}</p>` +
        (gi.grids.length ? `<table class="m-cases" id="m-gi-table"><thead><tr><th>${t("m_level_grid")}</th><th>${t("m_gi_kind")}</th><th>${t("m_gi_hot_months")}</th><th>z</th></tr></thead><tbody>` +
          gi.grids.slice(0, 30).map((g) => `<tr data-code="${esc(g.code)}"><td>${esc(g.name || g.code)}</td><td><i class="dot" style="background:${KIND[g.kind]}"></i>${t("m_kind_" + g.kind)}</td>` +
            `<td>${g.hot_months}/${gi.months.length}</td><td>${g.z[g.z.length - 1].toFixed(2)}</td></tr>`).join("") + "</tbody></table>"
          : `<p class="hint">${t("m_none")}</p>`);
    } else {
      const sig = gi.grids.filter((g) => g.kind).sort((a, b) => b.z - a.z);
      const sm = gi.summary || {};
      html += `<h4>${t("m_gi_title")}</h4><p class="hint" id="m-gi-summary">${esc(fmt(t("m_gi_rule"), { n: gi.n }))} ` +
        ["hot_99", "hot_95", "hot_90", "cold_90", "cold_95", "cold_99"].map((k) => `${t("m_" + k.split("_")[0])} ${k.split("_")[1]}%: ${sm[k] || 0}`).join(" · ") + "</p>" +
        (gi.note ? `<p class="hint">${t("m_gi_too_few")}</p>` : "") +
        (sig.length ? `<table class="m-cases" id="m-gi-table"><thead><tr><th>${t("m_level_grid")}</th><th>${t("m_gi_kind")}</th><th>${t("m_incidents")}</th><th>z</th></tr></thead><tbody>` +
          sig.slice(0, 30).map((g) => `<tr data-code="${esc(g.code)}"><td>${esc(g.name || g.code)}</td><td><i class="dot" style="background:${GI[g.kind + "_" + g.confidence]}"></i>${t("m_" + g.kind)} ${g.confidence}%</td>` +
            `<td>${g.count}</td><td>${g.z.toFixed(2)}</td></tr>`).join("") + "</tbody></table>" : "");
    }
    html += `<h4>${t("m_rec_title")}</h4><p class="hint">${esc(fmt(t("m_rec_rule"), { k: rec.min_cases, eps: rec.eps_m, days: rec.days }))}</p>` +
      (rec.places.length ? `<table class="m-cases" id="m-rec-table"><thead><tr><th>${t("m_rank")}</th><th>${t("m_category")}</th><th>${t("m_level_grid")}</th><th>${t("m_cases")}</th><th>${t("m_last")}</th></tr></thead><tbody>` +
        rec.places.map((p) => `<tr class="m-place${st.place === p.rank ? " m-sel" : ""}" data-rank="${p.rank}"><td>${p.rank}</td><td><a href="#" class="m-place-link" data-rank="${p.rank}">${esc(p.category_name || "")}</a></td>` +
          `<td>${esc(p.grid_name || "")}</td><td>${p.cases}</td><td>${esc(p.last_at.slice(0, 10))}</td></tr>`).join("") + "</tbody></table>"
        : `<p class="hint">${t("m_none")}</p>`) + `<div id="m-place"></div>`;
    const sp = spikes.params || {};
    html += `<h4>${t("m_spikes_title")}</h4><p class="hint">${esc(fmt(t("m_spikes_rule"), { n: sp.min_cases, r: sp.ratio, h: sp.history, p: sp.p }))}</p>` +
      (spikes.spikes.length ? `<table class="m-cases" id="m-spikes-table"><thead><tr><th>${t("m_category")}</th><th>${t("m_this_month")}</th><th>${t("m_baseline")}</th><th>×</th><th>p</th></tr></thead><tbody>` +
        spikes.spikes.map((x) => `<tr><td>${esc(x.category_name)}</td><td>${x.count}</td><td>${x.baseline}</td><td>${x.ratio}</td><td>${x.p}</td></tr>`).join("") + "</tbody></table>"
        : `<p class="hint">${t("m_none")}</p>`);
    html += `<h4>${t("m_topics_title")}</h4><p class="hint">${esc(fmt(t("m_topics_rule"), { n: topics.cases }))}</p>` +
      (topics.overall.length ? `<p class="m-words" id="m-topics">${topics.overall.map((w) => `<span class="m-word${w.rising ? " m-rising" : ""}" title="${t("m_prev")} ${w.prev}">${esc(w.word)} <b>${w.count}</b>${w.rising ? " ↑" : ""}</span>`).join(" ")}</p>` +
        `<table class="m-cases"><tbody>${topics.streets.map((s) => `<tr><td>${esc(s.name)}</td><td class="m-left">${s.words.map((w) => `${esc(w.word)} ${w.count}`).join("、")}</td></tr>`).join("")}</tbody></table>`
        : `<p class="hint">${t("m_none")}</p>`);
    out.innerHTML = html;
    renderPlace();
  }
  function mapOf() { return window.citygrid && window.citygrid.state.map; }
  // The portal's thematic colouring (事件数 by default) would show through the Gi* colours: while
  // the findings are on the map its theme is "仅边界", and the user's theme comes back on clear.
  function setTheme(value) {
    const sel = $("theme");
    if (!sel || sel.value === value) return;
    sel.value = value;
    sel.dispatchEvent(new Event("change"));
  }
  function clearGi(restore = true) {
    const map = mapOf();
    if (st.giLayer && map) st.giLayer.remove();
    if (st.giLegend && map) st.giLegend.remove();
    if (st.placeLayer && map) st.placeLayer.remove();
    st.giLayer = st.giLegend = st.placeLayer = null;
    if (restore && st.themeBefore) { setTheme(st.themeBefore); st.themeBefore = null; }
  }
  function giLegendHtml() {
    const sw = (c) => `<i style="background:${c}"></i>`;
    if (st.judge.months > 1) {
      return `<h3>${esc(fmt(t("m_gi_trend_title"), { n: st.judge.gi.months.length }))}</h3>` +
        Object.keys(KIND).map((k) => `${sw(KIND[k])}${t("m_kind_" + k)}`).join("<br>");
    }
    const cat = st.judge.category ? ` · ${esc(($("m-gi-cat").selectedOptions[0] || {}).textContent || st.judge.category).trim()}` : "";
    return `<h3>${t("m_gi_title")} ${esc(st.judge.month)}${cat}</h3>` +
      ["hot_99", "hot_95", "hot_90"].map((k) => `${sw(GI[k])}${t("m_hot")} ${k.slice(4)}%`).join("<br>") + "<br>" +
      ["cold_90", "cold_95", "cold_99"].map((k) => `${sw(GI[k])}${t("m_cold")} ${k.slice(5)}%`).join("<br>");
  }
  function drawGi() {
    const map = mapOf();
    if (!map || !st.judge) return;
    clearGi(false);
    if (!st.themeBefore && $("theme") && $("theme").value !== "none") { st.themeBefore = $("theme").value; setTheme("none"); }
    const toMap = window.citygrid.toMap;
    const gi = st.judge.gi, trend = st.judge.months > 1;
    const features = gi.grids.filter((g) => g.geometry).map((g) => ({ type: "Feature", geometry: g.geometry,
      properties: { code: g.code, name: g.name, kind: g.kind, confidence: g.confidence, z: trend ? g.z[g.z.length - 1] : g.z } }));
    st.giLayer = L.geoJSON({ type: "FeatureCollection", features }, {
      coordsToLatLng: (c) => toMap(c[0], c[1]),
      style: (f) => ({ color: "#555", weight: 0.6, fillOpacity: 0.7,
        fillColor: trend ? KIND[f.properties.kind] : GI[f.properties.kind + "_" + f.properties.confidence] }),
      onEachFeature: (f, l) => l.bindTooltip(`${esc(f.properties.name)}<br>${trend ? t("m_kind_" + f.properties.kind) : `${t("m_" + f.properties.kind)} ${f.properties.confidence}%`} · z ${Number(f.properties.z).toFixed(2)}`),
    }).addTo(map);
    const legend = L.control({ position: "bottomleft" });
    legend.onAdd = () => { const div = L.DomUtil.create("div", "legend m-gi-legend"); div.innerHTML = giLegendHtml(); return div; };
    legend.addTo(map);
    st.giLegend = legend;
    if (features.length) map.fitBounds(st.giLayer.getBounds(), { animate: false, maxZoom: 15 });
  }
  function renderPlace() {
    const box = $("m-place");
    if (!box) return;
    const p = st.judge && st.judge.rec.places.find((x) => x.rank === st.place);
    if (!p) { box.innerHTML = ""; return; }
    box.innerHTML = `<p class="hint">${esc(fmt(t("m_place_title"), { rank: p.rank, cat: p.category_name || "", grid: p.grid_name || "", n: p.cases }))}</p>` +
      `<table class="m-cases" id="m-place-cases"><thead><tr><th>${t("m_case")}</th><th>${t("m_received_at")}</th><th>${t("m_state")}</th><th>${t("m_address")}</th></tr></thead><tbody>` +
      p.cases_detail.map((c) => `<tr data-id="${c.id}"><td><a href="#" class="m-case" data-id="${c.id}">${esc(c.external_id)}</a></td>` +
        `<td>${esc(c.received_at.slice(0, 16).replace("T", " "))}</td><td>${esc(t("state_" + c.state))}</td><td class="m-left">${esc(c.address)}</td></tr>`).join("") + "</tbody></table>";
  }
  function showPlace(rank) {
    st.place = rank;
    const p = st.judge.rec.places.find((x) => x.rank === rank);
    document.querySelectorAll("#m-rec-table tr.m-place").forEach((tr) => tr.classList.toggle("m-sel", Number(tr.dataset.rank) === rank));
    renderPlace();
    const map = mapOf();
    if (!map || !p) return;
    if (st.placeLayer) st.placeLayer.remove();
    const toMap = window.citygrid.toMap;
    st.placeLayer = L.featureGroup(p.cases_detail.map((c) => L.circleMarker(toMap(c.lon, c.lat), {
      radius: 7, color: "#fff", weight: 2, fillColor: "#7b2cbf", fillOpacity: 0.95 })
      .bindTooltip(`${esc(c.external_id)} · ${esc(c.received_at.slice(0, 10))}`))).addTo(map);
    map.fitBounds(st.placeLayer.getBounds(), { animate: false, maxZoom: 17, padding: [40, 40] });
  }

  // ---- the grid summary under the lookup card -----------------------------------------------
  async function gridSummary(code) {
    if (!can("assessment:read")) return;
    st.gridCode = code;
    const month = $("m-month").value || new Date().toLocaleDateString("sv-SE", { timeZone: cityTz() }).slice(0, 7);
    try {
      st.grid = await api(`/analysis/grids/${encodeURIComponent(code)}?${new URLSearchParams({ month })}`);
    } catch (err) { st.grid = null; $("grid-summary").hidden = true; return; }
    if (st.gridCode === code) renderGrid();
  }
  function person(p) {
    if (!p) return t("m_nobody");
    return `${esc(p.name)} · ${esc(p.phone)} · ${esc(t("staff_" + p.status))}`;
  }
  function renderGrid() {
    const g = st.grid, box = $("grid-summary");
    if (!g) { box.hidden = true; return; }
    const f = g.figures || {};
    const lights = ["red", "yellow", "green"].map((k) =>
      `<i class="dot" style="background:${LIGHT[k]}"></i>${g.open.lights[k]}`).join(" ");
    box.innerHTML = `<h3>${t("m_grid_summary")} · ${esc(g.name)}</h3><dl>` +
      `<dt>${t("m_open_cases")}</dt><dd id="gs-open">${g.open.total} · ${lights}</dd>` +
      `<dt>${t("m_this_month")} ${esc(g.month)}</dt><dd>${FIGS.map((k) => `${t("m_" + k)} <b>${esc(show(f[k], k))}</b>`).join("<br>")}</dd>` +
      `<dt>${t("m_patrolled_days")}</dt><dd>${g.patrolled_days}${g.coverage_days ? " / " + g.coverage_days : ""}</dd>` +
      `<dt>${t("m_last_patrol")}</dt><dd>${g.last_patrol ? esc(g.last_patrol.slice(0, 16).replace("T", " ")) : t("m_never")}</dd>` +
      `<dt>${t("m_primary")}</dt><dd id="gs-primary">${person(g.primary)}</dd>` +
      `<dt>${t("m_backup")}</dt><dd>${person(g.backup)}</dd></dl>` +
      (g.open.rows.length ? `<ol class="m-open">${g.open.rows.slice(0, 10).map((c) =>
        `<li><i class="dot" style="background:${LIGHT[c.light] || "#999"}"></i><a href="#" class="m-case" data-id="${c.id}">${esc(c.external_id)}</a> ${esc(c.category_name)}</li>`).join("")}</ol>` : "");
    box.hidden = false;
  }

  // ---- wiring ---------------------------------------------------------------------------------
  function render() {
    const tab = document.querySelector("[data-tab=tab-month]");
    if (tab) tab.hidden = !can("assessment:read");
    renderView(); renderGrid(); renderPack(); renderTrend();
    if ($("m-judge") || st.data) { renderJudgeShell(); renderJudge(); }
    if (st.giLegend) st.giLegend.getContainer().innerHTML = giLegendHtml();
  }
  const guard = (fn) => fn().catch((err) => {
    const box = $("error");
    box.textContent = `${t("error")}: ${errText(err)}${err.code ? ` (${err.code})` : ""}`;
    box.hidden = false;
  });
  document.addEventListener("cg:render", render);
  document.addEventListener("cg:grid", (ev) => guard(() => gridSummary(ev.detail)));
  $("m-month").value = lastFullMonth();
  boundsSwitch();
  $("m-show").addEventListener("click", () => guard(load));
  // a month picked is shown at once (and what was drawn for the month before follows it)
  $("m-month").addEventListener("change", () => { if (st.data && $("m-month").value) guard(load); });
  // a street picked on the map tab: the 研判 drawn for the old one is redone for it
  if ($("street")) $("street").addEventListener("change", () => { if (st.judge) guard(loadJudge); });
  $("m-sort").addEventListener("change", renderView);
  $("m-level").addEventListener("change", () => guard(load));
  $("m-pack").addEventListener("click", () => guard(pack));
  document.querySelector("[data-tab=tab-month]").addEventListener("click", () => { if (!st.data) guard(load); });
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a.m-fig");
    if (a) { ev.preventDefault(); guard(() => drill(a.dataset.fig, a.closest("#m-total") ? null : a.dataset.code)); return; }
    const c = ev.target.closest("a.m-case");
    if (c) { ev.preventDefault(); window.citygrid.selectCase(Number(c.dataset.id)); return; }
    if (ev.target.id === "m-drill-close") { st.drill = null; renderDrill(); return; }
    if (ev.target.id === "m-gi-show") { guard(loadJudge); return; }
    if (ev.target.id === "m-gi-clear") { clearGi(); return; }
    const pl = ev.target.closest("#m-rec-table tr.m-place");
    if (pl) { ev.preventDefault(); showPlace(Number(pl.dataset.rank)); }
  });
  window.citygridMonth = { state: st, load, drill, gridSummary, loadJudge, showPlace, clearGi };
})();

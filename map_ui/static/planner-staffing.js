// The plan's staffing in the planners' editor (issue 19): who is on each grid of the draft after the
// plan, who would be left without a worker, and the staffing changes stored with the plan (assign,
// end, withdraw). Follows the open plan through planner.js's extension point (cg:plan-changed), asks
// it to read the plan again after a change (cg:plan-reload), and shares the impact it reads with the
// review panel (cg:plan-impact). Writes carry If-Match with the plan's ETag.
"use strict";
(function () {
  const { $, esc } = window.CG;
  const cg = () => window.citygrid;  // planner.js, loaded before this file
  const t = (k) => cg().t(k);
  const EDITABLE = ["draft", "returned"];
  const my = { plan: null, etag: null, impact: null, seq: 0 };
  const api = window.CG.client({ csrf: () => cg().state.csrf, t });

  // The write is committed after the answer: wait until a read sees the new ETag (planner.js).
  const settled = (planId, etag) => cg().committed(planId, cg().hasEtag(etag));
  async function write(path, options) {
    const plan = my.plan;
    const { body, etag } = await api(`/plans/${encodeURIComponent(plan.id)}${path}`,
      { ...options, withEtag: true, ifMatch: my.etag });
    await settled(plan.id, etag || body.etag);
    document.dispatchEvent(new CustomEvent("cg:plan-reload"));
    return body;
  }
  const dutyName = (d) => t("duty_" + d);
  const editable = () => my.plan && EDITABLE.includes(my.plan.status);

  async function load() {
    if (!my.plan) return;
    const seq = ++my.seq;
    const impact = await api(`/plans/${encodeURIComponent(my.plan.id)}/impact`);
    if (seq !== my.seq) return;  // another plan (or a newer read) meanwhile
    my.impact = impact;
    render();
    document.dispatchEvent(new CustomEvent("cg:plan-impact", { detail: { plan: my.plan, impact } }));
  }

  function person(p, grid) {
    const cls = p.planned ? "planned" : (p.ending ? "ending" : "");
    const tag = p.planned ? ` <span class="tag">${esc(t("staffing_planned"))}</span>` :
      (p.ending ? ` <span class="tag">${esc(t("staffing_ending"))}</span>` : "");
    let button = "";
    if (editable()) {
      if (p.planned || p.ending) {
        button = `<button type="button" class="small link" data-withdraw="${esc(p.change_id)}">${esc(t("staffing_withdraw"))}</button>`;
      } else {
        button = `<button type="button" class="small link" data-end="${esc(p.staff_code)}" data-grid="${esc(grid.code)}" ` +
          `data-duty="${esc(p.duty)}">${esc(t("staffing_end"))}</button>`;
      }
    }
    return `<li class="${cls}" data-staff="${esc(p.staff_code)}"><b>${esc(p.name)}</b> ${esc(p.staff_code)} · ` +
      `${esc(dutyName(p.duty))}${tag} ${button}</li>`;
  }

  function render() {
    const section = $("staffing-section");
    if (!my.plan || !my.impact) { section.hidden = true; return; }
    section.hidden = false;
    const s = my.impact.staffing || {};
    const without = new Set(s.without_worker || []);
    const roster = s.roster || [];
    const warn = $("staffing-warn");
    if (without.size) {
      warn.className = "warn";
      warn.innerHTML = `${esc(t("staffing_without"))}: <span id="staffing-without">${esc([...without].join("、"))}</span>` +
        (s.override_reason ? ` <span class="hint">${esc(t("staffing_override"))} ${esc(s.override_reason)}</span>` : "");
    } else {
      warn.className = "ok";
      warn.innerHTML = `<span id="staffing-without"></span>${esc(t("staffing_all_staffed"))}`;
    }
    $("staffing-roster").innerHTML = roster.map((g) =>
      `<tr data-grid="${esc(g.code)}" class="${without.has(g.code) ? "warn" : ""}"><th>${esc(g.code)}<br>` +
      `<span class="hint">${esc(g.name)}</span></th><td><ul>` +
      (g.people.length ? g.people.map((p) => person(p, g)).join("") :
        `<li class="hint">${esc(t("staffing_nobody"))}</li>`) + `</ul></td></tr>`).join("");
    const grid = $("staff-grid");
    const keep = grid.value;
    grid.innerHTML = roster.map((g) => `<option value="${esc(g.code)}">${esc(g.code)} ${esc(g.name)}</option>`).join("") +
      `<option value="${esc(my.plan.region_code)}">${esc(my.plan.region_code)}</option>`;
    if ([...grid.options].some((o) => o.value === keep)) grid.value = keep;
    $("staff-candidates").innerHTML = (s.candidates || []).map((c) =>
      `<option value="${esc(c.staff_code)}">${esc(c.name)}</option>`).join("");
    const restored = s.restored || [];
    $("staffing-restored").innerHTML = restored.length ? `<h4>${esc(t("staffing_restored"))}</h4><ul>` +
      restored.map((r) => `<li>${esc(r.name)} ${esc(r.staff_code)} → ${esc(r.region_code)} · ${esc(dutyName(r.duty))}</li>`).join("") +
      "</ul>" : "";
    const work = my.impact.work || {};
    $("staffing-work").innerHTML = `<h4>${esc(t("work_title"))}</h4><ul>` +
      `<li>${esc(t("work_callups"))}: <b id="work-callups">${esc((work.callups || []).length)}</b></li>` +
      `<li>${esc(t("work_tasks"))}: <b id="work-tasks">${esc((work.tasks || []).length)}</b></li>` +
      `<li>${esc(t("work_addresses"))}: <b id="work-addresses">${esc(work.addresses || 0)}</b></li></ul>`;
    const can = editable();
    document.querySelectorAll("#staffing-form input, #staffing-form select, #staffing-form button").forEach((el) => {
      el.disabled = !can;
    });
    $("staffing-readonly").hidden = can || ["activated", "discarded"].includes(my.plan.status);
  }

  async function assign(ev) {
    ev.preventDefault();
    await cg().guarded(async () => {
      await write("/staffing", { method: "POST", body: { op: "assign", staff_code: $("staff-code").value.trim(),
        grid_code: $("staff-grid").value, duty: $("staff-duty").value } });
      $("staff-code").value = "";
    });
  }
  async function onClick(ev) {
    const b = ev.target.closest("button");
    if (!b || !my.plan) return;
    if (b.dataset.withdraw) {
      await cg().guarded(() => write(`/staffing/${encodeURIComponent(b.dataset.withdraw)}`, { method: "DELETE" }));
    } else if (b.dataset.end) {
      await cg().guarded(() => write("/staffing", { method: "POST", body: { op: "end",
        staff_code: b.dataset.end, grid_code: b.dataset.grid, duty: b.dataset.duty } }));
    }
  }

  document.addEventListener("cg:plan-changed", (ev) => {
    const { plan, etag } = ev.detail;
    const same = my.plan && my.plan.id === plan.id;
    my.plan = plan; my.etag = etag || plan.etag;
    if (!same) { my.impact = null; render(); }
    cg().guarded(load);
  });
  $("staffing-form").addEventListener("submit", assign);
  $("staffing-roster").addEventListener("click", onClick);
  $("lang").addEventListener("click", () => setTimeout(render, 0));  // planner.js switches first
  window.citygrid.staffing = { reload: load, state: my };
})();

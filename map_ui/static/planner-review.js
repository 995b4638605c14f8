// The plan's approval in the planners' editor (issue 19): a planner submits a draft (with an
// optional proposed effective time, re-routing, and a reason for grids left without a worker); the
// city's approver role approves it or returns it with a comment; a returned plan is editable again.
// The history of submissions, approvals, returns and the activation is listed. Follows the open plan
// through planner.js's extension point (cg:plan-changed, cg:plan-reload) and the impact that
// planner-staffing.js reads (cg:plan-impact: whether this user may approve). Writes carry If-Match.
"use strict";
(function () {
  const { $, esc } = window.CG;
  const cg = () => window.citygrid;
  const t = (k) => cg().t(k);
  const my = { plan: null, etag: null, mayApprove: false };
  const api = window.CG.client({ csrf: () => cg().state.csrf, t });

  // The write is committed after the answer: wait until a read sees the new ETag (planner.js).
  const settled = (planId, etag) => cg().committed(planId, cg().hasEtag(etag));
  async function post(path, body) {
    const plan = my.plan;
    const res = await api(`/plans/${encodeURIComponent(plan.id)}/${path}`,
      { method: "POST", body, withEtag: true, ifMatch: my.etag });
    const next = res.body.plan || res.body;
    await settled(plan.id, res.etag || next.etag);
    document.dispatchEvent(new CustomEvent("cg:plan-reload"));
    return res.body;
  }

  function render() {
    const section = $("review-section");
    const p = my.plan;
    if (!p) { section.hidden = true; return; }
    section.hidden = false;
    let line = `<b id="review-status" data-status="${esc(p.status)}">${esc(t("review_state_" + p.status))}</b>`;
    if (p.proposed_effective_at) line += ` <span class="hint">${esc(t("review_effective"))}: ${esc(cg().fmtTime(p.proposed_effective_at))}</span>`;
    if (p.status === "activated") {
      line += p.work_moved_at
        ? ` <span class="hint" id="review-work">${esc(t("review_work_moved"))} ${esc(JSON.stringify(p.work_moved || {}))}</span>`
        : ` <span class="hint" id="review-work">${esc(t("review_work_pending"))}</span>`;
    }
    if (p.stale && p.status !== "activated" && p.status !== "discarded") {
      line += `<p id="review-stale" class="stale">⚠ ${esc(t("review_stale"))}</p>`;
    }
    $("review-state").innerHTML = line;
    const reviews = p.reviews || [];
    $("review-history").innerHTML = reviews.length ? reviews.map((r) =>
      `<li data-action="${esc(r.action)}"><b>${esc(t("review_action_" + r.action))}</b> ${esc(cg().who(r.by))} · ` +
      `${esc(cg().fmtTime(r.at))}${r.comment ? `<br><span class="comment">${esc(r.comment)}</span>` : ""}</li>`).join("") : "";
    $("review-history-title").hidden = !reviews.length;
    const draft = p.status === "draft" || p.status === "returned";
    $("review-planner").hidden = !draft;
    $("review-approver").hidden = !(p.status === "submitted" || (p.status === "approved" && my.mayApprove));
    $("review-approve").hidden = p.status !== "submitted";
    $("review-approve").disabled = !my.mayApprove;
    $("review-return").disabled = !my.mayApprove;
    $("review-not-approver").hidden = my.mayApprove || p.status !== "submitted";
  }

  async function submit() {
    await cg().guarded(async () => {
      const body = { comment: $("review-comment").value.trim(),
        reroute_open_incidents: $("review-reroute").checked };
      const reason = $("review-reason").value.trim();
      if (reason) body.unstaffed_reason = reason;
      const when = $("review-effective").value;
      if (when) body.effective_at = new Date(when).toISOString();
      try {
        await post("submit", body);
      } catch (err) {
        if (err.code === "grids_without_worker") $("review-reason").focus();
        throw err;
      }
      $("review-comment").value = "";
      cg().showNotice(t("review_submitted"));
    });
  }
  async function approve() {
    await cg().guarded(async () => {
      const res = await post("approve", { comment: $("review-note").value.trim() });
      $("review-note").value = "";
      if (res.activation) {
        cg().showNotice(`${t("review_scheduled")} ${cg().fmtTime(res.activation.effective_at)}`);
      } else {
        cg().showNotice(t("review_approved"));
      }
    });
  }
  async function sendBack() {
    const comment = $("review-note").value.trim();
    if (!comment) { cg().showNotice(t("review_note_required")); $("review-note").focus(); return; }
    await cg().guarded(async () => {
      await post("return", { comment });
      $("review-note").value = "";
      cg().showNotice(t("review_returned"));
    });
  }

  document.addEventListener("cg:plan-changed", (ev) => {
    const { plan, etag } = ev.detail;
    if (!my.plan || my.plan.id !== plan.id) my.mayApprove = false;
    my.plan = plan; my.etag = etag || plan.etag;
    render();
  });
  document.addEventListener("cg:plan-impact", (ev) => {
    if (!my.plan || ev.detail.plan.id !== my.plan.id) return;
    my.mayApprove = !!((ev.detail.impact.staffing || {}).may_approve);
    render();
  });
  $("review-submit").addEventListener("click", submit);
  $("review-approve").addEventListener("click", approve);
  $("review-return").addEventListener("click", sendBack);
  $("lang").addEventListener("click", () => setTimeout(render, 0));
  window.citygrid.review = { state: my };
})();

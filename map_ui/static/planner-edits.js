// Undo and redo of single edits (POST /plans/{id}/undo|redo, If-Match) and the plan's area as a
// GeoPackage (out: GET export.gpkg; in: POST import, one edit that can be undone) in the planners'
// editor. Follows the open plan through planner.js's extension point (cg:plan-changed).
"use strict";
(function () {
  const { $, ApiError } = window.CG;
  const cg = window.citygrid;  // planner.js, loaded before this file
  const { state, t, api, guarded, showError, showNotice, cancelTool, committed, hasEtag, setPlan,
    loadFeatures, refreshImpact, describeEdit, fill } = cg;

  function showUndoButtons() {
    const p = state.plan;
    const edits = (p && p.edits) || [];
    const draft = !!p && p.status === "draft";
    $("undo").disabled = !draft || !edits.some((e) => (e.state || "done") === "done");
    $("redo").disabled = !draft || !edits.some((e) => e.state === "undone");
  }
  async function undoRedo(which) {
    if (!state.plan) return;
    await guarded(async () => {
      if (state.tool) cancelTool();
      const res = await api(`/plans/${encodeURIComponent(state.plan.id)}/${which}`, { method: "POST",
        ifMatch: state.etag, withEtag: true });
      await committed(state.plan.id, hasEtag(res.etag || res.body.etag));
      setPlan(res.body, res.etag);
      state.oldCache = null;
      state.selected = [];
      await loadFeatures(false);
      state.impact = null;
      await refreshImpact();
      showNotice(fill(t(which === "undo" ? "undone_notice" : "redone_notice"), { edit: describeEdit(
        (which === "undo" ? res.body.edits.find((e) => e.state === "undone")
          : [...res.body.edits].reverse().find((e) => (e.state || "done") === "done")) || {}) }));
    });
  }
  // GeoPackage: the plan's area out (GET export.gpkg) and back in (POST import, If-Match).
  function showFileLinks() {
    const a = $("export-gpkg");
    if (!state.plan) { a.removeAttribute("href"); return; }
    a.href = `/plans/${encodeURIComponent(state.plan.id)}/export.gpkg`;
    a.setAttribute("download", `plan-${state.plan.id}.gpkg`);
    $("import-gpkg").disabled = state.plan.status !== "draft";
    $("import-file").disabled = state.plan.status !== "draft";
  }
  async function importFile() {
    const input = $("import-file");
    if (!state.plan || !input.files || !input.files.length) { showError({ message: t("import_choose") }); return; }
    await guarded(async () => {
      if (state.tool) cancelTool();
      const form = new FormData();
      form.append("file", input.files[0]);
      const headers = { Accept: "application/json", "If-Match": `"${state.etag}"` };
      if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
      $("loading").hidden = false;
      let res, body = null;
      try {
        try {
          res = await fetch(`/plans/${encodeURIComponent(state.plan.id)}/import`, { method: "POST",
            credentials: "same-origin", headers, body: form });
        } catch (e) { throw new ApiError(0, { message: t("error_network") }); }
        try { body = await res.json(); } catch (e) { body = null; }
      } finally { $("loading").hidden = true; }
      if (!res.ok) throw new ApiError(res.status, body);
      const etag = (res.headers.get("ETag") || body.etag || "").replace(/^W\//, "").replace(/"/g, "");
      await committed(state.plan.id, hasEtag(etag));
      input.value = "";
      setPlan(body, etag);
      state.oldCache = null;
      state.selected = [];
      await loadFeatures(true);
      state.impact = null;
      await refreshImpact();
      showNotice(`${t("imported")}${describeEdit(body.edits[body.edits.length - 1])}`);
    });
  }

  $("undo").addEventListener("click", () => undoRedo("undo"));
  $("redo").addEventListener("click", () => undoRedo("redo"));
  $("import-gpkg").addEventListener("click", importFile);
  document.addEventListener("cg:plan-changed", () => { showUndoButtons(); showFileLinks(); });
})();

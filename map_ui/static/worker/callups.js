/* 网格通: my open call-ups (集结) at the top of the task inbox, answered from the phone:
 * acknowledge, arrived, or decline with a reason (POST /callups/{id}/answer). Answers are sent
 * online only (a call-up wants an answer now; the desk sees who has not answered). Kept apart
 * from worker.js: it reads the same session cookie and language setting. */
(function () {
  "use strict";
  const TEXT = {
    zh: { title: "集结任务", ack: "确认收到", arrive: "已到达", decline: "无法前往", reason: "原因",
      send: "提交", cancel: "取消", need: "请填写原因。", offline: "需联网才能响应。",
      kind_emergency: "突发应急", kind_event: "重大活动", kind_routine: "日常",
      state_sent: "待响应", state_acknowledged: "已确认", state_declined: "已拒绝", state_arrived: "已到达",
      reason_primary: "本网格网格员", reason_backup: "备岗", reason_head: "负责人", reason_nearest: "附近人员",
      window: "增援 {a} – {b}", linked: "关联案件 #{id}", failed: "提交失败：" },
    en: { title: "Call-ups", ack: "Acknowledge", arrive: "Arrived", decline: "Can't come", reason: "Reason",
      send: "Send", cancel: "Cancel", need: "Say why.", offline: "Answering needs the network.",
      kind_emergency: "Emergency", kind_event: "Major event", kind_routine: "Routine",
      state_sent: "waiting", state_acknowledged: "acknowledged", state_declined: "declined", state_arrived: "arrived",
      reason_primary: "your grid", reason_backup: "backup", reason_head: "head", reason_nearest: "nearby",
      window: "Reinforce {a} – {b}", linked: "case #{id}", failed: "Failed: " },
  };
  const ERRORS_ZH = { note_required: "请填写原因。", conflict: "该集结已结束或状态已变化。",
    callup_not_found: "集结不存在或已不在您的范围内。", callup_task_not_found: "您不在本次集结名单中。" };
  const lang = () => (localStorage.getItem("cg.lang") || "zh") === "en" ? "en" : "zh";
  const t = (k, vars) => {
    let s = TEXT[lang()][k] || k;
    Object.entries(vars || {}).forEach(([a, b]) => { s = s.replace("{" + a + "}", b); });
    return s;
  };
  const when = (s) => s ? new Date(s).toLocaleString(lang() === "en" ? "en-GB" : "zh-CN",
    { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }) : "";
  const csrf = () => { const m = document.cookie.match(/(?:^|; )citygrid_csrf=([^;]*)/); return m ? decodeURIComponent(m[1]) : ""; };
  let items = [];
  let opened = null;  // the call-up whose decline form is open

  const box = document.createElement("div");
  box.id = "callups";
  box.hidden = true;
  box.innerHTML = '<h2 id="callups-title"></h2><ul id="callup-list" class="cards"></ul><p id="callup-error" class="error" role="alert"></p>';
  const view = document.getElementById("tasks-view");
  view.insertBefore(box, view.firstChild);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function btn(label, fn, cls) { const b = el("button", cls, label); b.type = "button"; b.addEventListener("click", fn); return b; }

  function render() {
    box.hidden = !items.length;
    document.getElementById("callups-title").textContent = t("title");
    const ul = document.getElementById("callup-list");
    ul.replaceChildren(...items.map((c) => {
      const li = el("li", "card callup " + c.state);
      li.dataset.callup = c.callup_id;
      li.append(el("strong", null, `${t("kind_" + c.kind)} · ${c.title}`));
      li.append(el("div", null, `${when(c.created_at)} · ${t("reason_" + c.reason)} · ${c.region_code}`));
      if (c.note) li.append(el("div", null, c.note));
      if (c.window_to) li.append(el("div", null, t("window", { a: when(c.window_from), b: when(c.window_to) })));
      if (c.incident_id) li.append(el("div", null, t("linked", { id: c.incident_id })));
      li.append(el("div", "callup-state", t("state_" + c.state) + (c.answer_note ? ` · ${c.answer_note}` : "")));
      const row = el("div", "row");
      if (opened === c.callup_id) {
        const input = el("input"); input.maxLength = 1000; input.placeholder = t("reason"); input.className = "callup-reason";
        row.append(input, btn(t("send"), () => {
          if (!input.value.trim()) { showError(t("need")); return; }
          answer(c.callup_id, "decline", input.value.trim());
        }, "primary"), btn(t("cancel"), () => { opened = null; render(); }));
      } else {
        if (c.state === "sent" || c.state === "declined") row.append(btn(t("ack"), () => answer(c.callup_id, "acknowledge"), "primary"));
        if (c.state === "sent" || c.state === "acknowledged") row.append(btn(t("arrive"), () => answer(c.callup_id, "arrive")));
        if (c.state !== "declined" && c.state !== "arrived") row.append(btn(t("decline"), () => { opened = c.callup_id; render(); }));
      }
      li.append(row);
      return li;
    }));
  }
  function showError(msg) { document.getElementById("callup-error").textContent = msg || ""; }

  async function load() {
    if (document.getElementById("tabs").hidden || !navigator.onLine) return;  // logged out, offline
    try {
      const res = await fetch("/callups/mine", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!res.ok) return;
      items = (await res.json()).items;
      render();
    } catch (e) { /* offline: keep what is shown */ }
  }
  async function answer(id, what, note) {
    if (!navigator.onLine) { showError(t("offline")); return; }
    showError("");
    const res = await fetch(`/callups/${id}/answer`, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify({ answer: what, note: note || "" }) }).catch(() => null);
    if (!res || !res.ok) {
      const body = res ? await res.json().catch(() => null) : null;
      const zh = lang() === "zh" && body && ERRORS_ZH[body.code];
      showError(t("failed") + (zh || (body && body.message) || (res ? res.status : t("offline"))));
      return;
    }
    opened = null;
    await load();
  }

  document.getElementById("lang").addEventListener("click", () => setTimeout(render, 0));
  document.querySelectorAll('#tabs button[data-view="tasks"]').forEach((b) => b.addEventListener("click", load));
  setInterval(load, 20000);
  setTimeout(load, 1500);
  window.cgCallups = { load, items: () => items };  // the UI tests
})();

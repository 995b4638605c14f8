/* 网格通: the grid worker's phone app. Offline first: everything the worker sends goes into a
 * queue in IndexedDB (idb) with a client id, and is sent when the network allows; the server's
 * idempotency (client ids, photo hashes, fixes keyed by worker and instant) makes a resend
 * harmless. The service worker (sw.js) keeps the app shell and the last data for offline starts. */
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  const CONFIG = {
    fixIntervalMs: Number(params.get("fix_ms")) || 5000, // a fix every few seconds on patrol
    fixBatch: 500,
    retryMs: 15000,
  };
  const $ = (s) => document.querySelector(s);
  const $$ = (s) => Array.from(document.querySelectorAll(s));

  // -- language -------------------------------------------------------------------------------
  const DICT = {
    en: {
      "app.title": "Grid worker", "login.title": "Grid worker login", "login.username": "Username",
      "login.password": "Password", "login.submit": "Log in", "tab.map": "Grids",
      "tab.tasks": "Tasks", "tab.patrol": "Patrol", "tab.report": "Report",
      "tasks.title": "My tasks", "tasks.verify": "To verify", "tasks.none": "No tasks.",
      "patrol.title": "Patrol", "patrol.start": "Start patrol", "patrol.stop": "Stop patrol",
      "patrol.fixes": "Fixes this patrol", "patrol.waiting": "Waiting to send",
      "patrol.accuracy": "Accuracy", "patrol.coverage": "Covered today",
      "patrol.outside": "You have left your grids",
      "patrol.hint": "Keep this page open while patrolling; without signal the fixes stay on the phone and are sent when the network returns.",
      "report.title": "Field report", "report.category": "Category",
      "report.place": "Place (drag the pin)", "report.address": "Address", "report.note": "Note",
      "report.reason": "Reason", "report.photos": "Take / choose photos", "report.submit": "Send",
      "report.task": "Report back", "report.return": "Return", "report.verify": "Verify",
      "report.rework": "Send back for rework",
      "common.cancel": "Cancel", "common.logout": "Log out", "queue.title": "Waiting to send",
      "queue.empty": "Everything has been sent.", "queue.send": "Send now",
      "queue.discard": "Discard", "queue.badge": "{n} waiting", "net.online": "Online",
      "net.offline": "Offline", "act.accept": "Accept", "act.report": "Report back",
      "act.return": "Return", "act.verify": "Verify", "act.rework": "Rework",
      "act.map": "Map", "task.due": "Due", "task.flag": "Possible false reply",
      "task.waiting": "Waiting to send", "toast.queued": "Saved; it will be sent when online.",
      "toast.sent": "Sent.", "map.locate": "Locate me", "map.summary": "{g} grids · {c} open cases · covered today {p}",
      "kind.photo": "Photo", "kind.action": "Action", "kind.report": "Field report",
      "kind.fixes": "Patrol fixes", "err.reason": "Say why.", "err.photo": "Add at least one photo.",
      "err.place": "No position yet: wait for GPS or drag the pin.",
      "state.dispatched": "Dispatched", "state.handling": "Handling", "state.reported": "Reported",
      "login.expired": "Your session has ended: log in again. Nothing waiting is lost.",
      "kind.supplement": "Added to a case", "dup.title": "Already reported nearby?",
      "dup.hint": "Open cases near the pin that may be the same thing. Add your note and photos to one of them, or send a new report.",
      "dup.add": "Add to this case", "dup.new": "Send as a new report", "dup.back": "Back",
      "dup.offline": "Offline: nearby cases were not checked; the report is saved and sent when online.",
      "dup.added": "Added to case #{id}.", "dup.checking": "Checking nearby cases…",
      "dup.meta": "{d} m away · {state}", "err.empty": "Add a note or a photo.",
      "state.received": "Received", "state.registered": "Registered", "state.verified": "Verified",
    },
    zh: {
      "tasks.none": "暂无任务。", "patrol.stop": "结束巡查", "report.task": "处置反馈",
      "report.return": "回退", "report.verify": "核查", "report.rework": "返工",
      "queue.discard": "放弃", "queue.badge": "{n} 条待发送", "net.online": "在线",
      "net.offline": "离线", "act.accept": "接收", "act.report": "反馈", "act.return": "回退",
      "act.verify": "核查", "act.rework": "返工", "act.map": "地图", "task.due": "期限",
      "task.flag": "疑似虚假回复", "task.waiting": "待发送",
      "toast.queued": "已保存，联网后自动发送。", "toast.sent": "已发送。", "map.locate": "定位",
      "map.summary": "{g} 个网格 · {c} 件未结案 · 今日覆盖 {p}", "kind.photo": "照片",
      "kind.action": "处置操作", "kind.report": "采集上报", "kind.fixes": "巡查定位点",
      "err.reason": "请填写原因。", "err.photo": "请至少拍一张照片。",
      "err.place": "尚未定位：请等待 GPS 或拖动图钉。", "state.dispatched": "待接收",
      "state.handling": "处置中", "state.reported": "已反馈",
      "login.expired": "登录已过期，请重新登录。待发送的内容不会丢失。",
      "kind.supplement": "补充到案件", "dup.title": "附近已有上报？",
      "dup.hint": "图钉附近有可能是同一件事的未结案件。可把说明和照片补充到其中一件，或仍作为新案件上报。",
      "dup.add": "补充到此案件", "dup.new": "仍作为新案件上报", "dup.back": "返回修改",
      "dup.offline": "离线：未检查附近已有案件；上报已保存，联网后自动发送。",
      "dup.added": "已补充到案件 #{id}。", "dup.checking": "正在检查附近案件…",
      "dup.meta": "相距 {d} 米 · {state}", "err.empty": "请填写说明或拍照。",
      "state.received": "已受理", "state.registered": "已立案", "state.verified": "已核查",
    },
  };
  // API error codes shown in the page's language (the server's message is English).
  const ERRORS_ZH = {
    login_failed: "用户名或密码错误。", illegal_transition: "案件状态已变化，此操作不可用。",
    outside_jurisdiction: "该位置不在您的负责范围内。", invalid_photo: "照片无法识别。",
    photo_too_large: "照片太大。", photo_not_uploaded: "照片尚未上传。",
    reason_required: "请填写原因。", incident_not_found: "案件不存在或不在您的范围内。",
    invalid_field_request: "请求内容有误。",
    too_many_requests: "尝试次数过多，请稍后再试。", invalid_request: "请求内容有误。",
  };
  let lang = localStorage.getItem("cg.lang") || "zh";
  const zhText = {};
  function t(key, vars) {
    let s = (DICT[lang] && DICT[lang][key]) || (lang === "zh" ? zhText[key] : null) || DICT.zh[key] || zhText[key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
    return s;
  }
  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    $$("[data-i18n]").forEach((el) => {
      const k = el.dataset.i18n;
      if (!(k in zhText)) zhText[k] = el.textContent;
      el.textContent = t(k);
    });
    $$("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
    $("#lang").textContent = lang === "zh" ? "EN" : "中文";
  }
  function errorText(body, status) {
    if (body && body.code && lang === "zh" && ERRORS_ZH[body.code]) return ERRORS_ZH[body.code];
    return (body && body.message) || "HTTP " + status;
  }

  // -- the API ---------------------------------------------------------------------------------
  function csrf() {
    const m = document.cookie.match(/(?:^|; )citygrid_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  class HttpError extends Error {
    constructor(status, body) { super(errorText(body, status)); this.status = status; this.body = body; }
  }
  async function api(path, opts = {}) {
    const init = { method: opts.method || "GET", headers: {}, credentials: "same-origin" };
    if (opts.json !== undefined) {
      init.body = JSON.stringify(opts.json);
      init.headers["Content-Type"] = "application/json";
    } else if (opts.body !== undefined) {
      init.body = opts.body;
      init.headers["Content-Type"] = opts.type || "application/octet-stream";
    }
    if (init.method !== "GET") init.headers["X-CSRF-Token"] = csrf();
    const res = await fetch(path, init); // throws when offline: the caller queues
    const body = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) throw new HttpError(res.status, body);
    return body;
  }

  // -- the outbox (IndexedDB) -------------------------------------------------------------------
  const dbp = idb.openDB("citygrid-worker", 1, {
    upgrade(db) {
      db.createObjectStore("outbox", { keyPath: "id" }).createIndex("seq", "seq");
      db.createObjectStore("fixes", { keyPath: "at" });
      db.createObjectStore("kv");
    },
  });
  let seqCounter = 0;
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  async function sha256(blob) {
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return Array.from(new Uint8Array(digest), (x) => x.toString(16).padStart(2, "0")).join("");
  }
  async function enqueue(item) {
    const db = await dbp;
    item.seq = Date.now() * 1000 + (seqCounter++ % 1000);
    item.created = new Date().toISOString();
    item.attempts = 0;
    item.error = null;
    await db.put("outbox", item);
    refreshQueueBadge();
    flushSoon();
    return item;
  }
  // A small copy for the phone's own display (previews, the queue): the original, EXIF and all,
  // is what is uploaded; the copy never leaves the phone.
  const DISPLAY_PX = 320;
  const displayCopies = new WeakMap();
  async function displayCopy(file) {
    if (displayCopies.has(file)) return displayCopies.get(file);
    const made = (async () => {
      try {
        const bmp = await createImageBitmap(file, { imageOrientation: "from-image" });
        const k = Math.min(1, DISPLAY_PX / Math.max(bmp.width, bmp.height));
        const canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(bmp.width * k));
        canvas.height = Math.max(1, Math.round(bmp.height * k));
        canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
        bmp.close && bmp.close();
        return await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.8));
      } catch (e) {
        return null; // an image the browser cannot decode: no copy, the original is still sent
      }
    })();
    displayCopies.set(file, made);
    return made;
  }
  async function queuePhotos(files) {
    const shas = [];
    for (const file of files) {
      const sha = await sha256(file);
      shas.push(sha);
      const db = await dbp;
      // The photo's hash is its id: the same photo twice is one upload.
      if (!(await db.get("outbox", "photo:" + sha))) {
        await enqueue({ id: "photo:" + sha, kind: "photo", sha, blob: file, type: file.type || "image/jpeg",
                        display: await displayCopy(file), label: file.name || sha.slice(0, 8) });
      }
    }
    return shas;
  }

  let flushing = null;
  let flushTimer = null;
  function flushSoon() {
    clearTimeout(flushTimer);
    flushTimer = setTimeout(flush, 50);
  }
  let again = false;
  function flush() {
    if (flushing) { again = true; return flushing; }
    flushing = doFlush().catch((err) => { setNet(false); console.warn(err); }).finally(() => {
      flushing = null;
      refreshQueueBadge();
      if (again) { again = false; flush(); }
    });
    return flushing;
  }
  async function doFlush() {
    // Known to be offline: nothing is tried (a POST the page's service worker lets through would
    // be sent outside the page's view of the network); the "online" event flushes.
    if (!navigator.onLine) return setNet(false);
    const db = await dbp;
    let items = await db.getAllFromIndex("outbox", "seq");
    // Photos first: the reports and actions that show them name them by hash.
    items = items.filter((i) => i.kind === "photo").concat(items.filter((i) => i.kind !== "photo"));
    let sent = 0;
    for (const item of items) {
      if (item.state === "failed") continue;
      try {
        if (item.kind === "photo") {
          await api("/field/photos", { method: "POST", body: item.blob, type: item.type });
        } else {
          await api(item.url, { method: "POST", json: item.body });
        }
        await db.delete("outbox", item.id);
        sent++;
      } catch (err) {
        if (!(err instanceof HttpError) || err.status >= 500 || err.status === 429) {
          return setNet(false); // no network or the server is busy: try again later
        }
        if (err.status === 401 || (err.status === 403 && err.body && err.body.code === "csrf_failed")) {
          return needLogin();
        }
        // Refused for good (a case changed state, a bad photo): kept, shown, not retried.
        item.attempts += 1;
        item.state = "failed";
        item.error = err.message;
        await db.put("outbox", item);
      }
    }
    const fixesSent = await flushFixes();
    setNet(true);
    if (sent || fixesSent) { reloadData(); }
  }
  async function flushFixes() {
    if (!me || !me.staff_code) return 0;
    const db = await dbp;
    let total = 0;
    for (;;) {
      const fixes = await db.getAll("fixes", null, CONFIG.fixBatch);
      if (!fixes.length) break;
      await api("/patrols/fixes", { method: "POST", json: { crs: "EPSG:4326", fixes: fixes.map((f) => ({
        staff_code: me.staff_code, time: f.at, lon: f.lon, lat: f.lat, accuracy_m: f.accuracy_m })) } });
      const tx = db.transaction("fixes", "readwrite");
      await Promise.all(fixes.map((f) => tx.store.delete(f.at)).concat([tx.done]));
      total += fixes.length;
    }
    updatePatrolStats();
    return total;
  }
  async function refreshQueueBadge() {
    const db = await dbp;
    const n = (await db.count("outbox")) + (await db.count("fixes"));
    const badge = $("#queue-badge");
    badge.hidden = n === 0;
    badge.textContent = t("queue.badge", { n });
    if (currentView === "queue") renderQueue();
    updatePatrolStats();
  }
  async function renderQueue() {
    const db = await dbp;
    const items = await db.getAllFromIndex("outbox", "seq");
    const fixes = await db.count("fixes");
    $("#queue-empty").hidden = items.length + fixes > 0;
    const list = $("#queue-list");
    list.replaceChildren();
    if (fixes) list.append(card({ title: t("kind.fixes"), lines: [String(fixes)] }));
    for (const item of items) {
      const li = card({ title: t("kind." + item.kind) + (item.label ? " · " + item.label : ""),
                        lines: [new Date(item.created).toLocaleString(), item.error || ""],
                        cls: item.state === "failed" ? "red" : "" });
      if (item.display) {
        const img = document.createElement("img");
        img.className = "thumb";
        img.alt = item.label || "";
        img.src = URL.createObjectURL(item.display);
        li.prepend(img);
      }
      if (item.state === "failed") {
        const b = button(t("queue.discard"), async () => {
          await (await dbp).delete("outbox", item.id); refreshQueueBadge();
        }, "danger");
        li.append(row([b]));
      }
      list.append(li);
    }
  }

  // -- network state ----------------------------------------------------------------------------
  let online = navigator.onLine;
  function setNet(on) {
    online = on;
    const el = $("#net");
    el.textContent = t(on ? "net.online" : "net.offline");
    el.classList.toggle("offline", !on);
  }
  window.addEventListener("online", () => { setNet(true); flush(); });
  window.addEventListener("offline", () => setNet(false));
  setInterval(() => { if (navigator.onLine) flush(); }, CONFIG.retryMs);

  // -- views ------------------------------------------------------------------------------------
  let currentView = null;
  function show(view) {
    currentView = view;
    $$(".view").forEach((v) => { v.hidden = v.id !== view + "-view"; });
    $$("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
    document.body.classList.toggle("no-tabs", view === "login");
    $("#tabs").hidden = view === "login";
    if (view === "map" && map) setTimeout(() => map.invalidateSize(), 0);
    if (view === "queue") renderQueue();
    if (view === "report" && !$("#report-task").value) openFieldReport();
  }
  function button(label, onclick, cls) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    if (cls) b.className = cls;
    b.addEventListener("click", onclick);
    return b;
  }
  function row(children) {
    const d = document.createElement("div");
    d.className = "row";
    d.append(...children);
    return d;
  }
  function card({ title, lines, cls, tags }) {
    const li = document.createElement("li");
    li.className = "card " + (cls || "");
    const h = document.createElement("h3");
    h.textContent = title;
    li.append(h);
    for (const tag of tags || []) {
      const s = document.createElement("span");
      s.className = "tag " + (tag.cls || "");
      s.textContent = tag.text;
      h.append(" ", s);
    }
    for (const line of lines || []) {
      if (!line) continue;
      const p = document.createElement("p");
      p.textContent = line;
      li.append(p);
    }
    return li;
  }
  function toast(msg) {
    const el = $("#toast");
    el.textContent = msg;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 2500);
  }

  // -- login ------------------------------------------------------------------------------------
  let me = null;
  function needLogin(message) {
    show("login");
    $("#login-error").textContent = message || t("login.expired");
  }
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    try {
      await api("/auth/session", { method: "POST", json: { username: $("#username").value,
                                                            password: $("#password").value } });
      $("#password").value = "";
      await start();
    } catch (err) {
      $("#login-error").textContent = err.message;
    }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("/auth/logout", { method: "POST" }); } catch (e) { /* offline: cookie stays */ }
    if (navigator.serviceWorker && navigator.serviceWorker.controller) {
      navigator.serviceWorker.controller.postMessage({ type: "forget-data" });
    }
    me = null;
    show("login");
  });

  // -- data -------------------------------------------------------------------------------------
  let grids = null, tasks = null, categories = [];
  async function loadMe() {
    try {
      me = await api("/field/me");
      (await dbp).put("kv", me, "me");
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) throw err;
      me = await (await dbp).get("kv", "me"); // offline: who was here last
      if (!me) throw err;
    }
  }
  async function reloadData() {
    const [g, tk] = await Promise.allSettled([api("/field/grids"), api("/field/tasks")]);
    if (tk.status === "fulfilled") { tasks = tk.value; renderTasks(); }
    if (g.status === "fulfilled") { grids = g.value; drawGrids(); loadUnpatrolled(); }
  }
  // Today's unpatrolled parts are computed on the server on demand (kept there until the
  // coverage changes): asked for after the outlines and shares, for the map.
  async function loadUnpatrolled() {
    try {
      const g = await api("/field/grids?unpatrolled=true");
      grids = g;
      drawGrids();
    } catch (e) { /* offline: the outlines and shares stay */ }
  }
  async function loadCategories() {
    if (categories.length) return;
    try {
      const all = await api("/categories");
      categories = all.filter((c) => c.parent_code && c.active);
      const sel = $("#report-category");
      sel.replaceChildren(...categories.map((c) => {
        const o = document.createElement("option");
        o.value = c.code;
        o.textContent = lang === "zh" ? c.name : (c.name_en || c.name);
        return o;
      }));
    } catch (e) { /* offline without a cached list: tried again next time */ }
  }

  // -- tasks ------------------------------------------------------------------------------------
  async function pendingByIncident() {
    const items = await (await dbp).getAll("outbox");
    const out = {};
    for (const i of items) if (i.kind === "action") (out[i.incident] = out[i.incident] || []).push(i);
    return out;
  }
  async function renderTasks() {
    if (!tasks) return;
    const pending = await pendingByIncident();
    const list = $("#task-list");
    list.replaceChildren();
    for (const task of tasks.tasks) list.append(taskCard(task, pending[task.id] || []));
    if (!tasks.tasks.length) list.append(card({ title: t("tasks.none") }));
    const n = tasks.tasks.length;
    $("#task-count").hidden = n === 0;
    $("#task-count").textContent = n;
    $("#verify-title").hidden = !tasks.verify.length;
    $("#verify-list").replaceChildren(...tasks.verify.map((v) => taskCard(v, pending[v.id] || [])));
  }
  function taskCard(task, pending) {
    // What the worker already did offline is shown as done, and the next step is offered.
    let state = task.state;
    const done = pending.map((p) => p.body.action);
    if (done.includes("accept")) state = "handling";
    if (done.some((a) => ["report", "return", "verify", "rework"].includes(a))) state = "sent";
    const tags = [{ text: t("state." + task.state) }];
    if (task.flagged) tags.push({ text: t("task.flag"), cls: "flag" });
    if (pending.length) tags.push({ text: t("task.waiting"), cls: "wait" });
    const due = task.due_at ? t("task.due") + " " + new Date(task.due_at).toLocaleString() : "";
    const li = card({ title: `#${task.id} ${task.category_name}`, cls: task.light || "", tags,
                      lines: [task.address, task.description, due] });
    li.dataset.incident = task.id;
    const buttons = [];
    if (task.kind === "verify") {
      if (state === "reported") {
        buttons.push(button(t("act.verify"), () => openTaskForm(task, "verify"), "primary"));
        buttons.push(button(t("act.rework"), () => openTaskForm(task, "rework")));
      }
    } else if (state === "dispatched") {
      buttons.push(button(t("act.accept"), () => sendAction(task, "accept", {}), "primary"));
      buttons.push(button(t("act.return"), () => openTaskForm(task, "return")));
    } else if (state === "handling") {
      buttons.push(button(t("act.report"), () => openTaskForm(task, "report"), "primary"));
      buttons.push(button(t("act.return"), () => openTaskForm(task, "return")));
    }
    if (task.lon != null) buttons.push(button(t("act.map"), () => { show("map"); map.setView([task.lat, task.lon], 17); }));
    if (buttons.length) li.append(row(buttons));
    return li;
  }
  async function sendAction(task, action, extra) {
    // The client id is the outbox key and goes in the body: a resend is recognised.
    const id = uuid();
    await enqueue({ id, kind: "action", incident: task.id, label: `#${task.id} ${t("act." + action)}`,
                    url: `/field/tasks/${task.id}/actions`,
                    body: Object.assign({ client_id: id, action, position: positionNow() }, extra) });
    toast(navigator.onLine ? t("toast.sent") : t("toast.queued"));
    renderTasks();
  }

  // -- forms: field report, task report / return / verify -------------------------------------------
  let pinMap = null, pin = null, pinPlaced = false;
  function openFieldReport() {
    resetForm();
    $("#report-title").textContent = t("report.title");
    $("#category-row").hidden = false;
    $("#address-row").hidden = false;
    $("#pin-row").hidden = false;
    $("#photo-row").hidden = false;
    loadCategories();
    setTimeout(ensurePinMap, 0);
  }
  function openTaskForm(task, action) {
    resetForm();
    $("#report-task").value = task.id;
    $("#report-action").value = action;
    $("#report-title").textContent = `#${task.id} ${t({ report: "report.task", return: "report.return", verify: "report.verify", rework: "report.rework" }[action])}`;
    $("#category-row").hidden = true;
    $("#address-row").hidden = true;
    $("#pin-row").hidden = true;
    $("#reason-row").hidden = !(action === "return" || action === "rework");
    $("#photo-row").hidden = action === "return";
    show("report");
    $("#report-task").dataset.task = JSON.stringify(task);
  }
  function resetForm() {
    $("#report-form").reset();
    $("#report-task").value = "";
    $("#report-action").value = "";
    $("#reason-row").hidden = true;
    $("#photo-previews").replaceChildren();
    $("#report-error").textContent = "";
    $("#dup-sheet").hidden = true;
    $("#report-form").hidden = false;
    pinPlaced = false;
  }
  function ensurePinMap() {
    const here = position ? [position.lat, position.lon] : (grids ? centreOfGrids() : cityCentre());
    if (!pinMap) {
      pinMap = L.map("pin-map", { zoomControl: false, attributionControl: false }).setView(here, 17);
      drawOutlines(pinMap);
      pin = L.marker(here, { draggable: true, icon: L.divIcon({ className: "drag-pin", html: "<i></i>",
                                                                iconSize: [44, 44], iconAnchor: [22, 40] }) }).addTo(pinMap);
      pin.on("dragend", () => { pinPlaced = true; pinText(); });
      pinMap.on("click", (e) => { pin.setLatLng(e.latlng); pinPlaced = true; pinText(); });
    } else {
      pinMap.invalidateSize();
      pin.setLatLng(here);
      pinMap.setView(here, 17);
    }
    pinPlaced = !!position;
    pinText();
  }
  function pinText() {
    const p = pin.getLatLng();
    $("#pin-text").textContent = `${p.lng.toFixed(6)}, ${p.lat.toFixed(6)}`;
  }
  $("#report-photos").addEventListener("change", async () => {
    const box = $("#photo-previews");
    const files = Array.from($("#report-photos").files);
    box.replaceChildren(...await Promise.all(files.map(async (f) => {
      const img = document.createElement("img");
      const copy = await displayCopy(f);
      img.src = URL.createObjectURL(copy || f);
      img.alt = f.name;
      img.dataset.copy = copy ? "small" : "original";
      return img;
    })));
  });
  $("#report-cancel").addEventListener("click", () => {
    const wasTask = $("#report-task").value;
    resetForm();
    show(wasTask ? "tasks" : "map");
  });
  $("#report-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = $("#report-error");
    err.textContent = "";
    const files = Array.from($("#report-photos").files);
    const action = $("#report-action").value;
    const note = $("#report-note").value;
    if (action) {
      const task = JSON.parse($("#report-task").dataset.task);
      const reason = $("#report-reason").value.trim();
      if ((action === "return" || action === "rework") && !reason) { err.textContent = t("err.reason"); return; }
      if ((action === "report" || action === "verify") && !files.length) { err.textContent = t("err.photo"); return; }
      const photos = await queuePhotos(files);
      await sendAction(task, action, { note, reason, photos });
      resetForm();
      show("tasks");
      return;
    }
    if (!pinPlaced) { err.textContent = t("err.place"); return; }
    const p = pin.getLatLng();
    const category = $("#report-category").value;
    // Already reported? Open cases near the pin (the desk's duplicate rule), before sending.
    const found = await nearbyCases(category, p.lng, p.lat);
    if (found && found.length) return showDuplicates(found, files, note);
    await sendFieldReport(files, note, p, category, found === null);
  });
  async function nearbyCases(category, lon, lat) {
    // null: not checked (offline, or no answer in time); [] none near.
    if (!navigator.onLine) return null;
    $("#report-error").textContent = t("dup.checking");
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 5000);
    try {
      const q = new URLSearchParams({ category, lon: lon.toFixed(7), lat: lat.toFixed(7) });
      const res = await fetch("/field/duplicates?" + q, { credentials: "same-origin", signal: ctl.signal });
      if (!res.ok) return null;
      return (await res.json()).candidates;
    } catch (e) {
      return null;
    } finally {
      clearTimeout(timer);
      $("#report-error").textContent = "";
    }
  }
  async function sendFieldReport(files, note, p, category, unchecked) {
    const photos = await queuePhotos(files);
    const id = uuid();
    await enqueue({ id, kind: "report", label: $("#report-category").selectedOptions[0]?.textContent || "",
                    url: "/field/reports",
                    body: { client_id: id, category, lon: p.lng, lat: p.lat,
                            crs: "EPSG:4326", address: $("#report-address").value, note, photos,
                            position: positionNow() } });
    toast(unchecked ? t("dup.offline") : (navigator.onLine ? t("toast.sent") : t("toast.queued")));
    resetForm();
    show("map");
  }
  function showDuplicates(found, files, note) {
    const p = pin.getLatLng();
    const category = $("#report-category").value;
    $("#report-form").hidden = true;
    $("#dup-sheet").hidden = false;
    $("#dup-list").replaceChildren(...found.map((c) => {
      const name = lang === "zh" ? c.category_name : (c.category_name_en || c.category_name);
      const li = card({ title: `#${c.id} ${name}`, lines: [
        t("dup.meta", { d: Math.round(c.distance_m), state: t("state." + c.state) }),
        c.address, c.description] });
      li.dataset.incident = c.id;
      li.append(row([button(t("dup.add"), () => addToCase(c, files, note), "primary")]));
      return li;
    }));
    $("#dup-new").onclick = async () => {
      closeDuplicates();
      await sendFieldReport(files, note, p, category, false);
    };
    $("#dup-back").onclick = closeDuplicates;
    $("main").scrollTop = 0;
  }
  function closeDuplicates() {
    $("#dup-sheet").hidden = true;
    $("#report-form").hidden = false;
  }
  async function addToCase(c, files, note) {
    if (!note.trim() && !files.length) { closeDuplicates(); $("#report-error").textContent = t("err.empty"); return; }
    const photos = await queuePhotos(files);
    const id = uuid();
    await enqueue({ id, kind: "supplement", incident: c.id, label: `#${c.id}`,
                    url: `/field/incidents/${c.id}/supplements`,
                    body: { client_id: id, note, photos, position: positionNow() } });
    toast(t("dup.added", { id: c.id }));
    closeDuplicates();
    resetForm();
    show("map");
  }

  // -- the map, my position ----------------------------------------------------------------------
  let map = null, gridLayer = null, caseLayer = null, trackLine = null, meDot = null, meCircle = null;
  let position = null;
  function positionNow() {
    return position ? { lon: position.lon, lat: position.lat, accuracy_m: position.accuracy,
                        at: new Date(position.at).toISOString() } : null;
  }
  function initMap() {
    if (map) return;
    map = L.map("map", { zoomControl: true, attributionControl: false, zoomSnap: 0.5 }).setView(cityCentre(), 13);
    caseLayer = L.layerGroup().addTo(map);
    trackLine = L.polyline([], { color: "#0b5cad", weight: 4 }).addTo(map);
  }
  function centreOfGrids() {
    const b = L.geoJSON(grids).getBounds();
    return b.isValid() ? [b.getCenter().lat, b.getCenter().lng] : cityCentre();
  }
  function drawOutlines(target) {
    if (!grids) return null;
    const layer = L.geoJSON(grids, { style: { color: "#0b5cad", weight: 2, fillOpacity: 0.05 } }).addTo(target);
    return layer;
  }
  function drawGrids() {
    if (!map || !grids) return;
    if (gridLayer) gridLayer.remove();
    gridLayer = L.layerGroup().addTo(map);
    const outlines = drawOutlines(gridLayer);
    for (const f of grids.features) {
      if (f.properties.unpatrolled) {
        L.geoJSON(f.properties.unpatrolled, { interactive: false,
          style: { color: "#c62828", weight: 0, fillColor: "#c62828", fillOpacity: 0.18 } }).addTo(gridLayer);
      }
    }
    caseLayer.clearLayers();
    for (const c of grids.cases) {
      if (c.lon == null) continue;
      L.marker([c.lat, c.lon], { icon: L.divIcon({ className: "case-pin " + (c.light || ""), html: "<i></i>",
                                                   iconSize: [44, 44] }), title: `#${c.id} ${c.category_name}` })
        .bindPopup(`#${c.id} ${escapeHtml(c.category_name)}<br>${escapeHtml(c.address || "")}`).addTo(caseLayer);
    }
    if (!drawGrids.fitted && outlines && outlines.getBounds().isValid()) {
      map.fitBounds(outlines.getBounds(), { padding: [20, 20], maxZoom: 17 });
      drawGrids.fitted = true;
    }
    const areas = grids.features.map((f) => f.properties.area_m2);
    const total = areas.reduce((a, b) => a + b, 0);
    const covered = grids.features.reduce((a, f) => a + f.properties.area_m2 * f.properties.patrolled_share, 0);
    const share = total ? Math.round((100 * covered) / total) + "%" : "–";
    $("#patrol-coverage").textContent = share;
    $("#map-summary").textContent = t("map.summary", { g: grids.features.length, c: grids.cases.length, p: share });
  }
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function onPosition(pos) {
    position = { lon: pos.coords.longitude, lat: pos.coords.latitude, accuracy: pos.coords.accuracy,
                 at: pos.timestamp || Date.now(), received: Date.now() };
    if (!map) return;
    const ll = [position.lat, position.lon];
    if (!meDot) {
      meCircle = L.circle(ll, { radius: position.accuracy, color: "#1e88e5", weight: 1, fillOpacity: 0.12,
                                interactive: false }).addTo(map);
      meDot = L.circleMarker(ll, { radius: 8, color: "#fff", weight: 3, fillColor: "#1e88e5", fillOpacity: 1,
                                   interactive: false }).addTo(map);
    } else {
      meCircle.setLatLng(ll).setRadius(position.accuracy);
      meDot.setLatLng(ll);
    }
    $("#patrol-accuracy").textContent = Math.round(position.accuracy) + " m";
    checkInside();
  }
  function watchMe() {
    if (!navigator.geolocation) return;
    navigator.geolocation.watchPosition(onPosition, () => {}, { enableHighAccuracy: true, maximumAge: 10000 });
  }
  $("#locate").addEventListener("click", () => {
    navigator.geolocation.getCurrentPosition((pos) => {
      onPosition(pos);
      map.setView([position.lat, position.lon], Math.max(map.getZoom(), 17));
    }, () => {}, { enableHighAccuracy: true, maximumAge: 0, timeout: 15000 });
  });

  // Point in my grids (ray casting on the outlines; holes count as outside).
  function inRing(x, y, ring) {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i], [xj, yj] = ring[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  function inPolygon(x, y, rings) { return inRing(x, y, rings[0]) && !rings.slice(1).some((r) => inRing(x, y, r)); }
  function insideMyGrids(lon, lat) {
    if (!grids) return true;
    return grids.features.some((f) => {
      const g = f.geometry;
      const polys = g.type === "Polygon" ? [g.coordinates] : g.coordinates;
      return polys.some((p) => inPolygon(lon, lat, p));
    });
  }
  function checkInside() {
    const outside = patrolling && position && !insideMyGrids(position.lon, position.lat);
    $("#leave-warning").hidden = !outside;
    if (outside && navigator.vibrate && !checkInside.warned) navigator.vibrate(300);
    checkInside.warned = outside;
  }

  // -- patrol -----------------------------------------------------------------------------------
  let patrolling = false, patrolTimer = null, fixCount = 0, lastFixMs = 0, asking = false;
  function togglePatrol() {
    patrolling = !patrolling;
    localStorage.setItem("cg.patrolling", patrolling ? "1" : "");
    $("#patrol-toggle").textContent = t(patrolling ? "patrol.stop" : "patrol.start");
    $("#patrol-toggle").classList.toggle("danger", patrolling);
    $("#patrol-toggle").classList.toggle("primary", !patrolling);
    clearInterval(patrolTimer);
    if (patrolling) {
      fixCount = 0;
      patrolTimer = setInterval(sampleFix, CONFIG.fixIntervalMs);
      sampleFix();
    } else {
      // A fix being stored as the patrol stops is counted and sent with the rest.
      sampling.then(() => { checkInside(); flush(); });
    }
  }
  // A fix every few seconds from the position the phone keeps sending (watchPosition): asking
  // the GPS afresh each time costs battery and, on a weak fix, seconds per answer.
  let sampling = Promise.resolve();
  function sampleFix() {
    if (asking || !patrolling || !position || Date.now() - position.received > 30000) return; // no fresh position
    asking = true;
    sampling = storeFix();
  }
  async function storeFix() {
    try {
      let ms = Date.now();
      if (ms <= lastFixMs) ms = lastFixMs + 1; // one fix per instant: the server's key
      lastFixMs = ms;
      const fix = { at: new Date(ms).toISOString(), lon: position.lon, lat: position.lat,
                    accuracy_m: Math.round(position.accuracy * 10) / 10 };
      await (await dbp).put("fixes", fix);
      fixCount++;
      trackLine.addLatLng([fix.lat, fix.lon]);
      checkInside();
      updatePatrolStats();
      if (fixCount % 50 === 0) flush();
    } finally {
      asking = false;
    }
  }
  async function updatePatrolStats() {
    $("#patrol-count").textContent = fixCount;
    $("#patrol-waiting").textContent = await (await dbp).count("fixes");
  }
  async function loadTrack() {
    if (!me || !me.staff_code) return;
    const day = cityDay(new Date());
    try {
      const fc = await api(`/patrols/tracks?staff=${encodeURIComponent(me.staff_code)}&date=${day}`);
      const pts = [];
      for (const f of fc.features || []) for (const [x, y] of f.geometry.coordinates) pts.push([y, x]);
      const local = await (await dbp).getAll("fixes");
      trackLine.setLatLngs(pts.concat(local.map((f) => [f.lat, f.lon])));
    } catch (e) { /* offline: the line starts with this session's fixes */ }
  }

  // The city's day and first view come from /field/me (the city profile): no city in this file.
  function cityDay(d) {
    const tz = me && me.city && me.city.tz;
    try { return d.toLocaleDateString("sv-SE", tz ? { timeZone: tz } : {}); } catch (e) { return d.toLocaleDateString("sv-SE"); }
  }
  function cityCentre() {
    return (me && me.city && me.city.center) || [0, 0];
  }

  // -- start ------------------------------------------------------------------------------------
  async function start() {
    try {
      await loadMe();
    } catch (err) {
      return needLogin(err instanceof HttpError && err.status === 401 ? " " : err.message);
    }
    show("map");
    initMap();
    watchMe();
    await reloadData();
    loadTrack();
    loadCategories();
    refreshQueueBadge();
    flush();
    window.citygridWorker.ready = true;
  }
  $$("[data-view]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  $("#patrol-toggle").addEventListener("click", togglePatrol);
  $("#queue-send").addEventListener("click", () => { $$("#queue-list .card").length && flush(); });
  $("#lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("cg.lang", lang);
    applyLang();
    setNet(online);
    categories = [];
    loadCategories();
    renderTasks();
    refreshQueueBadge();
    if (grids) drawGrids();
  });
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/worker/sw.js", { scope: "/worker/" }).catch(() => {});
  }
  window.citygridWorker = { ready: false, flush, config: CONFIG, db: () => dbp,
                            state: () => ({ me, tasks, grids, position, patrolling, fixCount, asking }) };
  applyLang();
  setNet(navigator.onLine);
  start();
})();

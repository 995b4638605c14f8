// Shared by the portal (app.js) and the planners' editor (planner.js): element lookup, escaping,
// translation and the request helper (this origin, the http-only session cookie, the CSRF token
// echoed on writes, errors as ApiError with the API's {code, message, detail}).
"use strict";
window.CG = (function () {
  const $ = (id) => document.getElementById(id);
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;" }[c]));
  }
  // t(key): the string of the current language (zh-CN when unknown), or the key itself.
  function translator(strings, lang) {
    return (key) => {
      const table = strings[lang()] || strings["zh-CN"];
      return key in table ? table[key] : key;
    };
  }
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || String(status));
      this.status = status; this.code = body && body.code; this.detail = body && body.detail;
    }
  }
  const quoted = (etag) => (etag && etag.startsWith('"') ? etag : `"${etag}"`);
  // api(path, options): the JSON body (null for 204), or {body, etag} with {withEtag: true};
  // {ifMatch: etag} sends If-Match. csrf() gives the session's token; #loading shows while busy.
  function client({ csrf, t }) {
    let pending = 0;
    const busy = (delta) => { pending += delta; $("loading").hidden = pending <= 0; };
    return async function api(path, options = {}) {
      const { withEtag, ifMatch, ...rest } = options;
      const opts = { credentials: "same-origin", ...rest,
        headers: { Accept: "application/json", ...(rest.headers || {}) } };
      if (opts.body !== undefined) {
        opts.headers["Content-Type"] = "application/json";
        opts.body = JSON.stringify(opts.body);
      }
      if (opts.method && opts.method !== "GET" && csrf()) opts.headers["X-CSRF-Token"] = csrf();
      if (ifMatch) opts.headers["If-Match"] = quoted(ifMatch);
      busy(1);
      try {
        let res;
        try { res = await fetch(path, opts); } catch (e) {
          if (e.name === "AbortError") throw e;
          throw new ApiError(0, { message: t("error_network") });
        }
        let body = null;
        if (res.status !== 204) {
          try { body = await res.json(); } catch (e) { body = null; }
        }
        if (!res.ok) throw new ApiError(res.status, body);
        if (withEtag) {
          const header = res.headers.get("ETag");
          return { body, etag: header ? header.replace(/^W\//, "").replace(/"/g, "") : null };
        }
        return body;
      } finally { busy(-1); }
    };
  }
  // The start of a calendar day ("2026-10-01") in the city's time zone, as ISO 8601 with the
  // zone's offset that day ("2026-10-01T00:00:00+08:00"): the API wants an aware time.
  function dayStart(day, tz) {
    const part = new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "longOffset" })
      .formatToParts(new Date(`${day}T12:00:00Z`)).find((p) => p.type === "timeZoneName");
    const offset = !part || part.value === "GMT" ? "+00:00" : part.value.slice(3);
    return `${day}T00:00:00${offset}`;
  }

  return { $, esc, translator, ApiError, client, dayStart };
})();

/* The worker app's service worker (scope /worker/): the app shell from the cache, so the app
 * starts without a network; the worker's data (me, grids, tasks, categories, today's track)
 * network first with the last answer as the fallback. Writes are never touched here: the page
 * queues them in IndexedDB and sends them itself (worker.js). */
const VERSION = "cg-worker-3";
const SHELL_CACHE = VERSION + "-shell";
const DATA_CACHE = "cg-worker-data";
const SHELL = [
  "/worker/",
  "/worker/static/worker.css",
  "/worker/static/worker.js",
  "/worker/static/callups.js",
  "/worker/static/manifest.webmanifest",
  "/worker/static/icon-192.png",
  "/portal/static/vendor/leaflet-1.9.4/leaflet.js",
  "/portal/static/vendor/leaflet-1.9.4/leaflet.css",
  "/portal/static/vendor/idb-8.0.4/idb.umd.js",
];
const DATA = ["/field/me", "/field/grids", "/field/tasks", "/categories", "/patrols/tracks"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys
    .filter((k) => k.startsWith("cg-worker-") && k !== SHELL_CACHE && k !== DATA_CACHE)
    .map((k) => caches.delete(k)))).then(() => self.clients.claim()));
});

self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "forget-data") caches.delete(DATA_CACHE); // logout
});

async function shellFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  const hit = await cache.match(request, { ignoreSearch: true });
  const update = fetch(request).then((res) => {
    if (res.ok) cache.put(request, res.clone());
    return res;
  });
  if (hit) {
    update.catch(() => {}); // refreshed for the next start when the network allows
    return hit;
  }
  return update;
}

async function networkFirst(request) {
  const cache = await caches.open(DATA_CACHE);
  try {
    const res = await fetch(request);
    if (res.ok) cache.put(request, res.clone());
    return res;
  } catch (err) {
    const hit = await cache.match(request);
    if (hit) return hit;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && url.pathname.startsWith("/worker")) {
    event.respondWith(shellFirst(new Request("/worker/")));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(shellFirst(request));
  } else if (DATA.some((p) => url.pathname === p)) {
    event.respondWith(networkFirst(request));
  } else if (url.pathname.startsWith("/field/photos/")) {
    event.respondWith(caches.open(DATA_CACHE).then(async (c) => (await c.match(request)) ||
      fetch(request).then((res) => { if (res.ok) c.put(request, res.clone()); return res; })));
  }
});

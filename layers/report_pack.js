// The meeting pack's maps and chart (layers/report.py inlines this into pack.html).
(function () {
const D = JSON.parse(document.getElementById('pack-data').textContent), T = D.T;
const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
function baseMap(id) {
  const m = L.map(id, {zoomControl: false, attributionControl: false, preferCanvas: false});
  const layer = L.geoJSON(D.grids);
  m.fitBounds(layer.getBounds());
  return m;
}
function legend(m, html) {
  const c = L.control({position: 'bottomright'});
  c.onAdd = () => { const d = L.DomUtil.create('div', 'legend'); d.innerHTML = html; return d; };
  c.addTo(m);
}
const sw = (c) => `<i style="background:${c}"></i>`;
const tip = (p, extra) => `<b>${esc(p.name)}</b><br>${esc(p.community || '')}<br>${extra}`;
// heat
const mh = baseMap('map-heat');
L.geoJSON(D.grids, {style: {color: '#888', weight: 0.4, fillOpacity: 0}}).addTo(mh);
const heatTop = Math.max(1, ...D.heat.map((c) => c[2]));
L.heatLayer(D.heat, {radius: 14, blur: 18, minOpacity: 0.3, max: heatTop}).addTo(mh);
legend(mh, `<b>${esc(T.legend_heat.replace('{c}', '' + D.heat_cell_m + ''))}</b><br>` +
  `<span class="bar heat"></span><br><span>${esc(T.legend_low)}</span><span style="float:right">${esc(T.legend_high)} (${heatTop})</span>`);
// Gi*
const mg = baseMap('map-gi');
L.geoJSON(D.grids, {style: (f) => ({color: '#777', weight: 0.4, fillOpacity: 0.85,
  fillColor: f.properties.kind ? D.gi[f.properties.kind + '_' + f.properties.confidence] : '#f7f7f7'}),
  onEachFeature: (f, l) => l.bindTooltip(tip(f.properties, `z = ${f.properties.z}`))}).addTo(mg);
legend(mg, ['hot_99', 'hot_95', 'hot_90'].map((k) => `${sw(D.gi[k])}${esc(T.hot)} ${k.slice(4)}%`).join('<br>') +
  '<br>' + ['cold_90', 'cold_95', 'cold_99'].map((k) => `${sw(D.gi[k])}${esc(T.cold)} ${k.slice(5)}%`).join('<br>') +
  `<br>${sw('#f7f7f7')}${esc(T.not_sig)}`);
// coverage
const mc = baseMap('map-cover');
const cc = (v) => v == null ? '#f7f7f7' : D.cover_ramp[Math.min(D.cover_ramp.length - 1, Math.floor(v * D.cover_ramp.length))];
L.geoJSON(D.grids, {style: (f) => ({color: '#777', weight: 0.4, fillOpacity: 0.85, fillColor: D.cover ? cc(f.properties.coverage) : '#f7f7f7'}),
  onEachFeature: (f, l) => l.bindTooltip(tip(f.properties, f.properties.coverage == null ? esc(T.no_data) : (f.properties.coverage * 100).toFixed(1) + '%'))}).addTo(mc);
const n = D.cover_ramp.length;
legend(mc, `<b>${esc(T.patrol_coverage)}</b><br>` + (D.cover ? D.cover_ramp.map((c, i) =>
  `${sw(c)}${Math.round(i * 100 / n)}–${Math.round((i + 1) * 100 / n)}%`).join('<br>') + '<br>' : '') +
  `${sw('#f7f7f7')}${esc(T.no_data)}<br><small>${esc(D.cover_note)}</small>`);
// trend
const xs = D.trend.months.map((m) => Date.UTC(+m.slice(0, 4), +m.slice(5, 7) - 1, 1) / 1000);
const pc = (a) => a.map((v) => v == null ? null : v * 100);
new uPlot({width: Math.min(1000, document.body.clientWidth - 40), height: 260, legend: {live: false},
  scales: {x: {time: true}, '%': {range: [0, 100]}},
  series: [{label: T.x_month}, {label: T.closure_rate, stroke: '#1d3557', width: 2, scale: '%'},
    {label: T.on_time_rate, stroke: '#2a9d8f', width: 2, scale: '%'},
    {label: T.rework_rate, stroke: '#e76f51', width: 2, scale: '%'},
    {label: T.received, stroke: '#8d99ae', width: 1, dash: [4, 4], scale: 'n'}],
  axes: [{}, {scale: '%', values: (u, v) => v.map((x) => x + '%')}, {scale: 'n', side: 1, grid: {show: false}}]},
  [xs, pc(D.trend.closure), pc(D.trend.on_time), pc(D.trend.rework), D.trend.received],
  document.getElementById('trend'));
document.body.dataset.ready = '1';
})();

// The lookup card's uncertainty strings (app.js: edge distance, runner-up grid, datum doubt, map
// links), merged into the portal's table so i18n.js stays as it is.
"use strict";
Object.assign(window.CG_I18N["zh-CN"], {
  card_edge: "距网格边界",
  card_edge_m: "{m} 米",
  card_runner_up: "相邻网格",
  card_runner_up_text: "{code} {name}：仅 {m} 米，在定位精度 {acc} 米以内，可能属于该网格",
  card_runner_up_none: "{acc} 米精度内无其他网格",
  card_datum_doubt: "坐标系存疑",
  card_datum_doubt_text: "同一组数字按 {crs} 读则落在网格 {code} {name}（责任人 {who}）；请向报告人确认坐标来源。",
  card_link: "链接",
  link_amap: "高德地图", link_baidu: "百度地图", link_tencent: "腾讯地图",
  lookup_hint_links: "也可粘贴高德、百度、腾讯地图的位置链接。",
  err_unreadable_map_link: "无法从该链接读出坐标",
});
Object.assign(window.CG_I18N.en, {
  card_edge: "To the grid's edge",
  card_edge_m: "{m} m",
  card_runner_up: "Runner-up grid",
  card_runner_up_text: "{code} {name}: only {m} m away, within the {acc} m accuracy; the point may be there",
  card_runner_up_none: "No other grid within {acc} m",
  card_datum_doubt: "CRS doubt",
  card_datum_doubt_text: "Read as {crs}, the same numbers fall in grid {code} {name} (responsible: {who}); ask the reporter where the coordinates came from.",
  card_link: "Link",
  link_amap: "Amap", link_baidu: "Baidu Maps", link_tencent: "Tencent Maps",
  lookup_hint_links: "Links copied from Amap, Baidu or Tencent maps work too.",
  err_unreadable_map_link: "No coordinates could be read from that link",
});

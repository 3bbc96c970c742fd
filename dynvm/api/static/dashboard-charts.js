// Draws the History section's charts with the vendored uPlot (static/vendor/uplot) from the
// figures the page carries in the `data-figures` attribute of #history-charts
// (dynvm.api.dashboard_history.chart_series). The summary table above the charts holds the
// same figures for a reader without JavaScript.
(function () {
  "use strict";
  var box = document.getElementById("history-charts");
  var holders = document.querySelectorAll("#history-charts .chart");
  if (!box || !holders.length || typeof uPlot === "undefined") { return; }
  var figures = JSON.parse(box.getAttribute("data-figures") || "{}");
  var COLOURS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b"];
  var oses = [];
  Object.keys(figures.series || {}).forEach(function (name) {
    Object.keys(figures.series[name]).forEach(function (os) {
      if (oses.indexOf(os) < 0) { oses.push(os); }
    });
  });
  oses.sort();
  function colour(os) { return COLOURS[oses.indexOf(os) % COLOURS.length]; }
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  function stepText(step) {
    if (step >= 86400) { return (step / 86400) + " d"; }
    if (step >= 3600) { return (step / 3600) + " h"; }
    return (step / 60) + " min";
  }

  // The lines of one chart: [label, values, colour, dashed].
  function lines(kind) {
    var s = figures.series, out = [];
    oses.forEach(function (os) {
      if (kind === "build") {
        out.push([os + " p50", s.build_p50[os], colour(os), false]);
        out.push([os + " p95", s.build_p95[os], colour(os), true]);
      } else if (s[kind] && s[kind][os]) {
        out.push([os, s[kind][os], colour(os), false]);
      }
    });
    return out;
  }

  // A tooltip by the cursor: the step's start and every value in it.
  function tooltip(unit) {
    var tip;
    return {
      hooks: {
        init: function (u) {
          tip = document.createElement("div");
          tip.className = "chart-tip";
          tip.hidden = true;
          u.over.appendChild(tip);
          u.over.addEventListener("mouseleave", function () { tip.hidden = true; });
        },
        setCursor: function (u) {
          var i = u.cursor.idx;
          if (i === null || i === undefined) { tip.hidden = true; return; }
          var when = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}")(utc(u.data[0][i]));
          var rows = [when + " UTC (" + stepText(figures.step) + ")"];
          for (var k = 1; k < u.series.length; k++) {
            var v = u.data[k][i];
            if (v !== null && v !== undefined) { rows.push(u.series[k].label + ": " + v + " " + unit); }
          }
          tip.textContent = rows.join("\n");
          tip.hidden = false;
          var left = Math.min(u.cursor.left + 12, u.over.clientWidth - tip.offsetWidth);
          tip.style.left = Math.max(0, left) + "px";
          tip.style.top = Math.max(0, u.cursor.top - tip.offsetHeight - 8) + "px";
        }
      }
    };
  }

  var charts = [];
  function width(el) { return Math.max(240, Math.min(el.clientWidth || 420, 560)); }
  Array.prototype.forEach.call(holders, function (el) {
    var kind = el.getAttribute("data-series"), unit = el.getAttribute("data-unit");
    var title = el.getAttribute("data-title") + " per " + stepText(figures.step);
    var ls = lines(kind);
    if (!figures.t.length || !ls.length) {
      el.textContent = el.getAttribute("data-title") + ": no VM built yet";
      el.classList.add("empty");
      return;
    }
    var t = figures.t, step = figures.step;
    // 24-hour UTC times within two days, dates beyond.
    var tick = uPlot.fmtDate(t[t.length - 1] - t[0] + 2 * step <= 2 * 86400 ? "{HH}:{mm}" : "{MM}-{DD}");
    var opts = {
      title: title,
      width: width(el),
      height: 220,
      tzDate: utc,
      plugins: [tooltip(unit)],
      // One step either side, so a single step still has a time axis around it.
      scales: {x: {time: true, range: function () { return [t[0] - step, t[t.length - 1] + step]; }},
               y: {range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.1 : 1]; }}},
      axes: [{label: "time (UTC)", labelSize: 20, size: 40,
              values: function (u, splits) { return splits.map(function (v) { return tick(utc(v)); }); }},
             {label: unit, labelSize: 20, size: 50}],
      series: [{label: "time"}].concat(ls.map(function (l) {
        return {label: l[0], stroke: l[2], width: 2, dash: l[3] ? [6, 4] : undefined,
                points: {show: true, size: 6}, spanGaps: false};
      }))
    };
    var chart = new uPlot(opts, [t].concat(ls.map(function (l) { return l[1]; })), el);
    chart.root.setAttribute("data-kind", kind);
    // The axes' titles are painted on the canvas: named here too, for a reader of the DOM.
    chart.root.setAttribute("data-axes", chart.axes.map(function (a) { return a.label; }).join("|"));
    chart.root.setAttribute("aria-label", title + ": " + ls.map(function (l) { return l[0]; }).join(", "));
    charts.push([el, chart]);
  });
  window.addEventListener("resize", function () {
    charts.forEach(function (pair) { pair[1].setSize({width: width(pair[0]), height: 220}); });
  });
  document.body.setAttribute("data-charts", String(charts.length));
}());

// The graph: the selected metric over the period (uPlot), the comparison period as a dashed
// line, the unfinished current bucket dotted, a tooltip with exact values. The stats panel
// carries the series of every card's metric, so clicking a card re-plots without a request.
(function () {
  var plot = null;
  var data = null;
  var container = null;
  var metric = null;

  var MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  var DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  // Labels are local dates ("2026-12-01") or local hours ("2026-12-01T13:00:00"): read them as UTC
  // so that no browser timezone moves them.
  function parse(label) { return Date.parse(label.length === 10 ? label + 'T00:00:00Z' : label + 'Z') / 1000; }
  function when(label, interval) {
    var d = new Date(parse(label) * 1000);
    var day = d.getUTCDate() + ' ' + MONTHS[d.getUTCMonth()];
    if (interval === 'hour') return DAYS[d.getUTCDay()] + ' ' + day + ', ' + String(d.getUTCHours()).padStart(2, '0') + ':00';
    if (interval === 'week') return 'Week of ' + day + ' ' + d.getUTCFullYear();
    if (interval === 'month') return MONTHS[d.getUTCMonth()] + ' ' + d.getUTCFullYear();
    return DAYS[d.getUTCDay()] + ', ' + day + ' ' + d.getUTCFullYear();
  }

  function tick(ts) {
    var d = new Date(ts * 1000);
    if (data.interval === 'month') return MONTHS[d.getUTCMonth()] + (d.getUTCMonth() === 0 ? ' ' + d.getUTCFullYear() : '');
    if (data.interval === 'hour' && (d.getUTCHours() || data.labels.length <= 24)) return String(d.getUTCHours()).padStart(2, '0') + ':00';
    return d.getUTCDate() + ' ' + MONTHS[d.getUTCMonth()];
  }

  function compact(n) {
    var a = Math.abs(n);
    if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e8 ? 0 : 1).replace(/\.0$/, '') + 'M';
    if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e5 ? 0 : 1).replace(/\.0$/, '') + 'k';
    return String(Math.round(n * 100) / 100);
  }
  function duration(s) {
    s = Math.round(s);
    if (s < 60) return s + 's';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  }
  function format(value, exact) {
    if (value == null) return '—';
    if (metric === 'bounce_rate' || metric === 'conversion_rate') return value + '%';
    if (metric === 'visit_duration') return duration(value);
    if (metric === 'views_per_visit') return value.toFixed(2);
    return exact ? value.toLocaleString('en-US') : compact(value);
  }

  function tooltip() {
    var tip;
    return {
      hooks: {
        init: function (u) {
          tip = document.createElement('div');
          tip.className = 'graph-tip';
          tip.hidden = true;
          u.over.appendChild(tip);
          u.over.addEventListener('mouseleave', function () { tip.hidden = true; });
          u.over.addEventListener('mouseenter', function () { tip.hidden = false; });
        },
        setCursor: function (u) {
          var i = u.cursor.idx;
          if (i == null) { tip.hidden = true; return; }
          tip.hidden = false;
          var label = data.labels[i];
          var value = data.series[metric][i];
          var html = '<div class="tip-title">' + when(label, data.interval) + '</div>' +
            '<div class="tip-row"><span><i class="swatch"></i>' + data.names[metric] + '</span><strong>' + format(value, true) + '</strong></div>';
          if (data.comparison && data.comparison.labels[i] != null) {
            html += '<div class="tip-row"><span><i class="swatch previous"></i>' + when(data.comparison.labels[i], data.interval) +
              '</span><strong>' + format(data.comparison.series[metric][i], true) + '</strong></div>';
          }
          if (i === data.incomplete) html += '<div class="tip-note">Still in progress</div>';
          if (data.estimated.indexOf('series.' + i + '.' + metric) >= 0) html += '<div class="tip-note">≈ ' + data.estimate_note + '</div>';
          tip.innerHTML = html;
          var left = u.valToPos(u.data[0][i], 'x');
          var width = tip.offsetWidth;
          tip.style.left = Math.max(0, Math.min(left + 12, u.over.clientWidth - width)) + 'px';
          tip.style.top = '8px';
          if (left + 12 + width > u.over.clientWidth) tip.style.left = Math.max(0, left - width - 12) + 'px';
        },
      },
    };
  }

  function build() {
    if (!container || !data || !window.uPlot) return;
    if (plot) { plot.destroy(); plot = null; }
    var xs = data.labels.map(parse);
    var values = data.series[metric] || [];
    var cut = data.incomplete;
    var solid = values.map(function (v, i) { return cut != null && i >= cut ? null : v; });
    var dotted = values.map(function (v, i) { return cut != null && (i === cut || i === cut - 1) ? v : null; });
    var previous = data.comparison ? values.map(function (_, i) { var s = data.comparison.series[metric]; return i < s.length ? s[i] : null; }) : null;
    var accent = css('--accent');
    var grid = css('--border');
    var text = css('--muted');
    var fill = function (u) {
      var g = u.ctx.createLinearGradient(0, u.bbox.top, 0, u.bbox.top + u.bbox.height);
      g.addColorStop(0, accent + '33');
      g.addColorStop(1, accent + '00');
      return g;
    };
    var series = [
      {},
      { label: data.names[metric], stroke: accent, width: 2.5, fill: fill, points: { show: values.length < 40, size: 5, fill: accent } },
      { label: 'in progress', stroke: accent, width: 2.5, dash: [3, 5], points: { show: false } },
    ];
    var columns = [xs, solid, dotted];
    if (previous) {
      series.push({ label: 'comparison', stroke: css('--graph-previous'), width: 1.8, dash: [6, 5], points: { show: false } });
      columns.push(previous);
    }
    var axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { show: false }, font: '12px ' + css('--font') };
    var width = container.clientWidth;
    plot = new uPlot({
      width: width,
      height: container.clientHeight || 280,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); },
      legend: { show: false },
      cursor: { y: false, points: { size: 8, fill: accent }, drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [
        Object.assign({}, axis, { grid: { show: false }, space: width < 500 ? 60 : 80,
          values: function (u, ticks) { return ticks.map(tick); } }),
        Object.assign({}, axis, { size: 52, values: function (u, ticks) { return ticks.map(function (t) { return format(t, false); }); } }),
      ],
      series: series,
      plugins: [tooltip()],
    }, columns, container);
  }

  function select(name, push) {
    if (!data || !data.series[name]) return;
    metric = name;
    var stats = document.querySelector('[data-panel="stats"]');
    stats.querySelectorAll('.stat-card[data-metric]').forEach(function (card) {
      var on = card.dataset.metric === name;
      card.classList.toggle('selected', on);
      if (on) card.setAttribute('aria-current', 'true'); else card.removeAttribute('aria-current');
    });
    var legend = stats.querySelector('.legend-metric');
    if (legend) legend.textContent = data.names[name];
    build();
    if (push) {
      var card = stats.querySelector('.stat-card[data-metric="' + name + '"]');
      var url = new URL(card.href);
      history.replaceState(null, '', url.pathname + url.search);
      stats.dataset.src = stats.dataset.base + url.search;
    }
  }

  document.addEventListener('panel:loaded', function (event) {
    if (event.target.dataset.panel !== 'stats') return;
    var script = event.target.querySelector('#graph-data');
    container = event.target.querySelector('.graph');
    if (!script || !container) return;
    data = JSON.parse(script.textContent);
    select(data.metric, false);
  });
  document.addEventListener('click', function (event) {
    var card = event.target.closest('.stat-card[data-metric]');
    if (!card || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || !data) return;
    event.preventDefault();
    select(card.dataset.metric, true);
  });
  document.addEventListener('themechange', build);
  if (window.matchMedia) window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', build);
  var lastWidth = 0;
  window.addEventListener('resize', function () {
    if (!plot || !container || container.clientWidth === lastWidth) return;
    lastWidth = container.clientWidth;
    plot.setSize({ width: container.clientWidth, height: container.clientHeight || 280 });
  });
})();

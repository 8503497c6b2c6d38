// The world map of the Locations report: the server pre-rendered the countries as one SVG
// (world.svg, fetched once and cached); this colours each country by its visitors and makes
// the coloured ones links to the same filter as their row in the Countries list.
(function () {
  var source = document.currentScript.dataset.world;
  var svgText = null;

  function world() {
    if (!svgText) svgText = fetch(source).then(function (r) { return r.text(); });
    return svgText;
  }

  function paint(panel) {
    var box = panel.querySelector('.map');
    if (!box) return;
    var values = JSON.parse(box.querySelector('script[type="application/json"]').textContent);
    world().then(function (text) {
      box.insertAdjacentHTML('afterbegin', text);
      var svg = box.querySelector('svg');
      svg.setAttribute('aria-label', 'World map of visitors by country');
      var max = 0;
      Object.keys(values).forEach(function (code) { max = Math.max(max, values[code][0]); });
      var tip = document.createElement('div');
      tip.className = 'map-tip';
      tip.hidden = true;
      box.appendChild(tip);
      svg.querySelectorAll('path[data-code]').forEach(function (path) {
        var entry = values[path.dataset.code];
        if (!entry) return;
        var share = Math.sqrt(entry[0] / max);
        path.classList.add('has-data');
        path.style.fill = 'color-mix(in srgb, var(--accent) ' + Math.round(18 + share * 82) + '%, var(--map-empty))';
        path.setAttribute('tabindex', '0');
        path.setAttribute('role', 'link');
        path.setAttribute('aria-label', entry[1] + ': ' + entry[0].toLocaleString('en-US') + ' visitors');
        var title = path.querySelector('title');
        if (title) title.remove();
        function show(event) {
          tip.textContent = entry[1] + ': ' + entry[0].toLocaleString('en-US') + ' visitors';
          tip.hidden = false;
          var rect = box.getBoundingClientRect();
          var x = (event.clientX || rect.left + rect.width / 2) - rect.left;
          var y = (event.clientY || rect.top + rect.height / 2) - rect.top;
          tip.style.left = Math.min(x + 12, rect.width - tip.offsetWidth) + 'px';
          tip.style.top = Math.max(0, y - 34) + 'px';
        }
        function go() {
          if (window.dashboardNavigate) window.dashboardNavigate(entry[2]); else location.href = entry[2];
        }
        path.addEventListener('mousemove', show);
        path.addEventListener('focus', show);
        path.addEventListener('mouseleave', function () { tip.hidden = true; });
        path.addEventListener('blur', function () { tip.hidden = true; });
        path.addEventListener('click', go);
        path.addEventListener('keydown', function (event) { if (event.key === 'Enter') go(); });
      });
    });
  }

  document.addEventListener('panel:loaded', function (event) {
    if (event.target.dataset.panel === 'locations') paint(event.target);
  });
})();

// Panels: every [data-panel] element loads its HTML from data-src and is swapped in place;
// data-refresh="N" reloads it every N seconds while the tab is visible (paused while hidden).
// Links marked data-nav change the whole view without a page load: the page's HTML is fetched,
// its controls replace ours and every panel reloads with the new query string. Tab links
// (data-tab) reload only their own panel. Every link is a real link that works without this.
(function () {
  var pending = new Map(); // panel element -> AbortController of its request in flight
  var started = 0;
  var shellPending = false; // a view change's page (its controls) has not arrived yet

  function settle() {
    if (shellPending || document.querySelector('[data-panel][aria-busy="true"]')) return;
    // Timings for the benchmark: since navigation started, and since the last view change began.
    window.dashboardTimings = { ready: performance.now(), render: performance.now() - started };
    document.documentElement.dataset.ready = 'true';
    document.dispatchEvent(new CustomEvent('dashboard:ready', { detail: window.dashboardTimings }));
  }

  function load(el, url) {
    if (url) el.dataset.src = url;
    if (pending.has(el)) pending.get(el).abort();
    var controller = new AbortController();
    pending.set(el, controller);
    el.setAttribute('aria-busy', 'true');
    // The page's head started the first request of each panel (window.earlyPanels): take its answer.
    var early = !url && window.earlyPanels && window.earlyPanels[el.dataset.src];
    if (early) delete window.earlyPanels[el.dataset.src];
    return (early || fetch(el.dataset.src, { signal: controller.signal, credentials: 'same-origin' }))
      .then(function (response) {
        if (response.redirected && /\/login\//.test(response.url)) { location.reload(); throw new Error('signed out'); }
        return response.text();
      })
      .then(function (html) {
        if (pending.get(el) !== controller) return; // a newer request replaced this one
        el.innerHTML = html;
        var body = el.querySelector('[data-empty]');
        if (el.dataset.panel === 'revenue') el.hidden = !!body && !el.dataset.src.includes('filters=');
        el.removeAttribute('aria-busy');
        pending.delete(el);
        el.dispatchEvent(new CustomEvent('panel:loaded', { bubbles: true }));
        if (el.querySelector('[data-done]')) delete el.dataset.refresh;
        settle();
      })
      .catch(function (error) {
        if (error.name === 'AbortError' || pending.get(el) !== controller) return;
        pending.delete(el);
        el.removeAttribute('aria-busy');
        el.innerHTML = '<div class="panel-error" role="alert"><p>This panel could not be loaded. <a href="">Reload the page</a></p></div>';
        settle();
      });
  }

  // Panels marked data-rendered came with the page (current visitors): only their refreshes load.
  function loadAll() {
    started = performance.now();
    delete document.documentElement.dataset.ready;
    document.querySelectorAll('[data-panel]:not([data-rendered])').forEach(function (el) { load(el); });
  }

  // A view change asks for the new page (its controls) and, at the same time, for every panel
  // under the new query string; a panel whose source the page names differently loads again.
  function navigate(href, push) {
    started = performance.now();
    delete document.documentElement.dataset.ready;
    shellPending = true;
    var search = new URL(href, location.href).search || '?';
    document.querySelectorAll('[data-panel][data-base]').forEach(function (el) { load(el, el.dataset.base + search); });
    return fetch(href, { credentials: 'same-origin' })
      .then(function (response) { return response.text().then(function (html) { return [response, html]; }); })
      .then(function (pair) {
        var doc = new DOMParser().parseFromString(pair[1], 'text/html');
        shellPending = false;
        if (!doc.querySelector('#dashboard')) { location.href = href; return; }
        if (push) history.pushState(null, '', pair[0].url);
        document.title = doc.title;
        document.querySelectorAll('[data-shell]').forEach(function (part) {
          var fresh = doc.querySelector('[data-shell="' + part.dataset.shell + '"]');
          if (fresh) part.replaceWith(document.importNode(fresh, true));
        });
        document.querySelectorAll('[data-panel]:not([data-rendered])').forEach(function (el) {
          var fresh = doc.querySelector('[data-panel="' + el.dataset.panel + '"]');
          if (fresh && fresh.dataset.src !== el.dataset.src) load(el, fresh.dataset.src);
        });
        settle();
      })
      .catch(function () { location.href = href; });
  }
  window.dashboardNavigate = function (href) { return navigate(href, true); };

  document.addEventListener('click', function (event) {
    var link = event.target.closest('a[data-nav], a[data-tab]');
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    var panel = link.closest('[data-panel]');
    if (!document.querySelector('#dashboard')) return;
    event.preventDefault();
    var menu = link.closest('details.menu');
    if (menu) menu.open = false;
    if (link.hasAttribute('data-tab') && panel && panel.dataset.base) {
      history.pushState(null, '', link.href);
      started = performance.now();
      load(panel, panel.dataset.base + new URL(link.href).search);
      return;
    }
    navigate(link.href, true);
  });
  window.addEventListener('popstate', function () { if (document.querySelector('#dashboard')) navigate(location.href, false); });

  // Polling, only while the page is visible.
  setInterval(function () {
    if (document.hidden) return;
    var now = Date.now();
    document.querySelectorAll('[data-panel][data-refresh]').forEach(function (el) {
      var every = Number(el.dataset.refresh) * 1000;
      if (!el.dataset.loadedAt) el.dataset.loadedAt = now;
      if (now - Number(el.dataset.loadedAt) >= every && !el.hasAttribute('aria-busy')) {
        el.dataset.loadedAt = now;
        load(el);
      }
    });
  }, 1000);
  document.addEventListener('visibilitychange', function () {
    if (document.hidden) return;
    document.querySelectorAll('[data-panel][data-refresh]').forEach(function (el) {
      if (Date.now() - Number(el.dataset.loadedAt || 0) >= Number(el.dataset.refresh) * 1000) { el.dataset.loadedAt = Date.now(); load(el); }
    });
  });

  // After every deferred script has run, so the graph and the map hear each panel:loaded.
  document.addEventListener('DOMContentLoaded', loadAll);
})();

// Small page helpers: the theme button, menus (<details>) that close like menus, copy buttons.
(function () {
  var root = document.documentElement;
  var button = document.querySelector('[data-theme-toggle]');
  var NEXT = { system: 'light', light: 'dark', dark: 'system' };
  var LABEL = { system: 'Theme: follows the system', light: 'Theme: light', dark: 'Theme: dark' };

  function current() { return root.dataset.theme || 'system'; }
  function show() { if (button) { button.setAttribute('aria-label', LABEL[current()] + ' (click to change)'); button.title = LABEL[current()]; } }
  if (button) {
    show();
    button.addEventListener('click', function () {
      var next = NEXT[current()];
      try { next === 'system' ? localStorage.removeItem('im-theme') : localStorage.setItem('im-theme', next); } catch (e) {}
      if (next === 'system') delete root.dataset.theme; else root.dataset.theme = next;
      show();
      document.dispatchEvent(new CustomEvent('themechange'));
    });
  }

  // One open menu at a time; a click outside or Esc closes it.
  document.addEventListener('click', function (event) {
    document.querySelectorAll('details.menu[open]').forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener('toggle', function (event) {
    var menu = event.target;
    if (!menu.matches || !menu.matches('details.menu') || !menu.open) return;
    document.querySelectorAll('details.menu[open]').forEach(function (other) { if (other !== menu) other.open = false; });
  }, true);
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') return;
    document.querySelectorAll('details.menu[open]').forEach(function (menu) {
      menu.open = false;
      var summary = menu.querySelector('summary');
      if (summary && menu.contains(document.activeElement)) summary.focus();
    });
  });

  document.addEventListener('click', function (event) {
    var copy = event.target.closest('[data-copy]');
    if (!copy) return;
    var source = document.querySelector(copy.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = copy.textContent;
      copy.textContent = 'Copied';
      setTimeout(function () { copy.textContent = label; }, 1500);
    });
  });
})();

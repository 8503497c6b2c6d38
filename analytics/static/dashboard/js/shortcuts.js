// Keyboard shortcuts (listed in the ? dialog). Each one presses a link or control of the page
// marked data-shortcut, so a shortcut does exactly what clicking does.
(function () {
  var dialog = document.getElementById('shortcuts');

  function openHelp() {
    if (dialog && !dialog.open) dialog.showModal();
  }
  document.addEventListener('click', function (event) {
    if (event.target.closest('[data-shortcuts-open]')) openHelp();
  });

  document.addEventListener('keydown', function (event) {
    if (event.metaKey || event.ctrlKey || event.altKey || event.defaultPrevented) return;
    var target = event.target;
    if (target.closest && target.closest('input, textarea, select, [contenteditable="true"]')) return;
    if (dialog && dialog.open) return;
    var key = event.key;
    if (key === '?') { event.preventDefault(); openHelp(); return; }
    if (key === '/') {
      var search = document.querySelector('[data-search]');
      if (search) { event.preventDefault(); search.focus(); search.select(); }
      return;
    }
    if (key === 'c' || key === 'C') {
      var menu = document.querySelector('.period-menu');
      if (menu) { event.preventDefault(); menu.open = true; menu.querySelector('[data-custom-from]').focus(); }
      return;
    }
    if (key === 'f' || key === 'F') {
      var filter = document.querySelector('.filter-menu');
      if (filter) { event.preventDefault(); filter.open = true; filter.querySelector('select').focus(); }
      return;
    }
    var name = key.length === 1 ? key.toLowerCase() : key;
    var link = document.querySelector('[data-shortcut="' + name + '"]');
    if (link) { event.preventDefault(); link.click(); }
  });
})();

// Theme: the system's unless the user chose one (kept in localStorage). Runs before the first
// paint, so a dark page never flashes light.
(function () {
  var saved = null;
  try { saved = localStorage.getItem('im-theme'); } catch (e) {}
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
})();

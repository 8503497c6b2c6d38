/* Infinity Metrics tracking script: no cookies, no storage, one global function (infinity). */
(function () {
  "use strict";
  var w = window, d = document, l = w.location, n = navigator, s = d.currentScript;
  if (!s) return;
  function attr(name) { return s.getAttribute("data-" + name); }
  function has(name) { return attr(name) !== null; }
  var domain = attr("domain") || l.hostname.replace(/^www\./, "");
  var api = attr("api") || new URL(s.src).origin + "/api/v1/collect";
  var hashMode = has("hash"), last;
  var queue = (w.infinity && w.infinity.q) || [];

  function ignored() {
    try { if (w.localStorage.getItem("infinity_ignore") === "true") return 1; } catch (e) {}
    if (has("respect-dnt") && (n.doNotTrack == "1" || w.doNotTrack == "1" || n.globalPrivacyControl)) return 1;
    return !has("local") && (l.protocol == "file:" || /^(localhost|127(\.\d+){3}|\[::1\])$/.test(l.hostname));
  }

  function send(name, props) {
    if (ignored()) return;
    var body = JSON.stringify({
      domain: domain, url: l.href, referrer: d.referrer || null, name: name,
      props: props || null, screen: w.innerWidth, hash: hashMode
    });
    if (w.fetch) {
      fetch(api, { method: "POST", body: body, keepalive: true, credentials: "omit",
        headers: { "Content-Type": "text/plain" } })["catch"](function () {});
    } else if (n.sendBeacon) {
      n.sendBeacon(api, body);
    }
  }

  function page() {
    var p = l.pathname + (hashMode ? l.hash : "");
    if (p === last) return;
    last = p;
    send("pageview");
  }

  w.infinity = function (name, props) { send(String(name), props); };
  for (var i = 0; i < queue.length; i++) w.infinity.apply(w, queue[i]);

  var h = w.history;
  ["pushState", "replaceState"].forEach(function (m) {
    var original = h[m];
    if (original) h[m] = function () { var r = original.apply(this, arguments); page(); return r; };
  });
  w.addEventListener("popstate", page);
  if (hashMode) w.addEventListener("hashchange", page);

  // Opt-in: data-outbound-links and data-file-downloads on the script tag.
  var files = /\.(pdf|zip|gz|dmg|exe|msi|pkg|deb|rpm|docx?|xlsx?|pptx?|csv|mp3|mp4|mov|epub)$/i;
  if (has("outbound-links") || has("file-downloads")) {
    d.addEventListener("click", function (e) {
      var a = e.target && e.target.closest && e.target.closest("a[href]"), u;
      if (!a) return;
      try { u = new URL(a.href, l.href); } catch (x) { return; }
      if (has("file-downloads") && files.test(u.pathname)) send("File Download", { url: u.href.slice(0, 1000) });
      else if (has("outbound-links") && /^https?:$/.test(u.protocol) && u.host != l.host) send("Outbound Link: Click", { url: u.href.slice(0, 1000) });
    }, true);
  }

  if (d.visibilityState == "prerender") {
    d.addEventListener("visibilitychange", function f() {
      if (d.visibilityState == "visible") { d.removeEventListener("visibilitychange", f); page(); }
    });
  } else {
    page();
  }
})();

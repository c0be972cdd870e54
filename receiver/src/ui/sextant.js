// Refreshes the page's content in place every 15 s while the tab is
// visible, keeping the URL (and so the filters) as they are.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="sextant-refresh-ms"]');
  var every = meta ? parseInt(meta.getAttribute("content"), 10) : 0;
  if (!every) { return; }
  function refresh() {
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var main = doc.getElementById("content");
        var updated = doc.getElementById("updated");
        var focused = document.activeElement && document.activeElement.closest("form");
        if (main && !focused) { document.getElementById("content").replaceWith(main); }
        if (updated) { document.getElementById("updated").replaceWith(updated); }
      })
      .catch(function () { /* the hub is away: try again next time */ });
  }
  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();

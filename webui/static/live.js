// threadmill web UI: live progress of runs in flight, over server-sent
// events. Pages work without it; it only updates the figures in place.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-events");
  if (!url || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var es = new EventSource(url);
  // fill sets the text of each [data-field] under el from the object o.
  function fill(el, o) {
    var fields = el.querySelectorAll("[data-field]");
    for (var j = 0; j < fields.length; j++) {
      var f = fields[j], k = f.getAttribute("data-field");
      if (Object.prototype.hasOwnProperty.call(o, k)) {
        f.textContent = String(o[k]);
        if (k === "status") { f.className = "status s-" + o.status; }
      }
    }
  }
  es.addEventListener("runs", function (ev) {
    var runs;
    try { runs = JSON.parse(ev.data); } catch (e) { return; }
    runs.forEach(function (r) {
      var tables = document.querySelectorAll("[data-run-steps]");
      for (var t = 0; t < tables.length; t++) {
        if (tables[t].getAttribute("data-run-steps") !== r.key) { continue; }
        var rows = tables[t].querySelectorAll("tr[data-step]");
        for (var s = 0; s < rows.length; s++) {
          for (var n = 0; n < (r.steps || []).length; n++) {
            if (r.steps[n].id === rows[s].getAttribute("data-step")) { fill(rows[s], r.steps[n]); }
          }
        }
      }
      var els = document.querySelectorAll("[data-run]");
      for (var i = 0; i < els.length; i++) {
        var el = els[i];
        if (el.getAttribute("data-run") !== r.key) { continue; }
        fill(el, r);
        var p = el.querySelector("progress");
        if (p) { p.max = Math.max(r.total, 1); p.value = r.done; }
        if (!r.live && el.hasAttribute("data-reload-when-done")) {
          el.removeAttribute("data-reload-when-done");
          window.location.reload();
        }
      }
    });
    if (status) { status.textContent = "Live updates on: last at " + new Date().toLocaleTimeString() + "."; }
  });
  es.onerror = function () {
    if (status) { status.textContent = "Live updates interrupted; retrying."; }
  };
})();

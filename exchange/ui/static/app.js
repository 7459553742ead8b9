// The pages' only script: local time beside UTC times, the copy button, and live observable types.
// Everything works without it; no inline script or handler attribute anywhere (the CSP forbids them).
"use strict";
(function () {
  function localTimes() {
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
      });
    } catch (e) { return; }
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime()) || (el.nextElementSibling && el.nextElementSibling.classList.contains("local"))) { return; }
      var span = document.createElement("span");
      span.className = "local";
      span.textContent = "(" + fmt.format(d) + ")";
      el.insertAdjacentElement("afterend", span);
    });
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source) { return; }
        var text = source.textContent.trim();
        var done = function () { button.textContent = button.getAttribute("data-copied") || "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
        } else {
          selectText(source);
          try { if (document.execCommand("copy")) { done(); } } catch (e) { /* the text stays selected */ }
        }
      });
    });
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function liveDetection() {
    var area = document.querySelector("textarea[data-detect]");
    var out = document.getElementById("detected");
    var labels = document.getElementById("detect-labels");
    if (!area || !out || !labels || !window.fetch) { return; }
    var timer = null;
    area.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var url = area.getAttribute("data-detect") + "?lines=" + encodeURIComponent(area.value);
        fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (data) { if (data) { draw(out, labels, data.observables); } });
      }, 300);
    });
  }

  function cell(row, text, tag) {
    var td = document.createElement(tag || "td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function draw(out, labels, rows) {
    out.textContent = "";
    if (!rows.length) { return; }
    var table = document.createElement("table");
    table.id = "detected-table";
    var head = table.createTHead().insertRow();
    ["line", "type", "value"].forEach(function (k) { cell(head, labels.getAttribute("data-" + k), "th").scope = "col"; });
    var body = table.createTBody();
    rows.forEach(function (r) {
      var tr = body.insertRow();
      if (!r.type) { tr.className = "bad"; }
      cell(tr, r.line);
      cell(tr, r.type || labels.getAttribute("data-none"));
      cell(tr, r.value || "");
    });
    out.appendChild(table);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    copyButtons();
    liveDetection();
  });
})();

// AINS console: confirmation dialogs, relative times, and live updates by polling /console/live.
// No framework and no build step. The pages work without this script (forms ask for confirmation on a page
// of their own); with it, confirmations are a dialog and the page refreshes itself when its data changes.
(function () {
  "use strict";

  function relative(iso) {
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    var future = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 5) return "just now";
    var units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][1]) {
        var text = Math.floor(seconds / units[i][1]) + " " + units[i][0];
        return future ? "in " + text : text + " ago";
      }
    }
    return "just now";
  }

  function refreshTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      el.textContent = relative(el.getAttribute("datetime"));
    });
  }

  // Confirmation: a form with data-confirm asks in a dialog, then submits with confirmed=yes.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-confirm]")) return;
    var confirmed = form.querySelector("input[name=confirmed]");
    if (!confirmed || confirmed.value === "yes") return;
    var dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") return; // the server asks instead
    event.preventDefault();
    document.getElementById("confirm-text").textContent = form.getAttribute("data-confirm");
    dialog.returnValue = "";
    dialog.onclose = function () {
      if (dialog.returnValue === "ok") {
        confirmed.value = "yes";
        form.submit();
      }
    };
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
  });

  // Live updates: ask whether anything changed; when it did, fetch this page again and swap <main> in.
  var body = document.body;
  var liveUrl = body.getAttribute("data-live");
  var interval = parseInt(body.getAttribute("data-live-interval") || "3000", 10);
  var state = document.getElementById("live-state");
  var lastStamp = body.getAttribute("data-live-stamp") || null;
  var busy = false;

  function setState(ok, text) {
    if (!state) return;
    state.classList.toggle("paused", !ok);
    state.textContent = text;
  }

  function userIsEditing(main) {
    var active = document.activeElement;
    if (document.querySelector("dialog[open]")) return true;
    return active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  function swap() {
    var main = document.getElementById("main");
    // A page holding something shown once (a new API key's secret) is never replaced under the reader.
    if (main.querySelector("[data-live-hold]") || userIsEditing(main)) return Promise.resolve(false);
    return fetch(location.href, { headers: { "X-Console-Live": "1" }, credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (!fresh || userIsEditing(main)) return false;
        // Flash messages belong to the action that led here: the one on screen stays while the page updates
        // under it (a change a moment after the action used to wipe it before it could be read), and the
        // refreshed copy of the page does not bring it back a second time.
        var shown = Array.prototype.slice.call(main.querySelectorAll(":scope > .flash"));
        fresh.querySelectorAll(".flash").forEach(function (el) { el.remove(); });
        main.innerHTML = fresh.innerHTML;
        shown.reverse().forEach(function (el) { main.insertBefore(el, main.firstChild); });
        refreshTimes(main);
        return true;
      });
  }

  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(liveUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { location.reload(); return null; }
        return response.json();
      })
      .then(function (data) {
        if (!data) return;
        setState(true, "live");
        if (lastStamp !== null && data.stamp !== lastStamp) {
          return swap().then(function (done) { if (done) lastStamp = data.stamp; });
        }
        lastStamp = data.stamp;
      })
      .catch(function () { setState(false, "server unreachable, retrying"); })
      .then(function () { busy = false; });
  }

  refreshTimes(document);
  setInterval(function () { refreshTimes(document); }, 15000);
  if (liveUrl) {
    poll();
    setInterval(poll, interval);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
  }
})();

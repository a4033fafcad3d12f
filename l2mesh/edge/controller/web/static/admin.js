// l2mesh web admin: live updates. Every page works without this file; with it, the parts of a page
// marked data-live are re-read when the controller says something changed (server-sent events from
// /web/events), so an admin sees a node ask to join without reloading. A region holding the focus
// (someone typing or about to press a button) is refreshed once the focus leaves it.
"use strict";
(function () {
  const status = document.getElementById("live-status");
  if (!document.querySelector("[data-live]") || !window.EventSource || !window.fetch) {
    return;
  }
  let waiting = false;

  function focusIsLive() {
    const active = document.activeElement;
    return active && active !== document.body && active.closest("[data-live]") !== null;
  }

  async function refresh() {
    if (focusIsLive()) {
      waiting = true;
      return;
    }
    const response = await fetch(window.location.href, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) {
      return; // logged out meanwhile: the next click shows the login page
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of document.querySelectorAll("[data-live]")) {
      const replacement = fresh.getElementById(region.id);
      if (replacement) {
        region.replaceWith(document.importNode(replacement, true));
      }
    }
    document.body.dataset.refreshed = String(Date.now()); // for tests and the curious
  }

  const events = new EventSource("/web/events");
  events.addEventListener("open", function () {
    if (status) status.textContent = "live";
  });
  events.addEventListener("error", function () {
    if (status) status.textContent = "reconnecting…";
  });
  events.addEventListener("change", function () {
    refresh().catch(function () {});
  });
  document.addEventListener("focusout", function () {
    if (waiting) {
      waiting = false;
      setTimeout(function () { refresh().catch(function () {}); }, 0);
    }
  });
})();

// Reports which products a shopper saw (in a recommendation strip, or any list marked with
// data-shopguide-events, such as search results) and which one they opened, without delaying the
// page: impressions go once the strip has rendered, clicks as a keepalive request that
// outlives the page, so following the link is never held up. Events feed the next training.
(function () {
  "use strict";
  function send(url, events) {
    if (!window.fetch) { return; }
    fetch(url, { method: "POST", body: JSON.stringify(events), keepalive: true, credentials: "omit",
                 headers: { "Content-Type": "application/json" } }).catch(function () {});
  }
  function track(strip) {
    if (strip.dataset.shopguideTracked) { return; }
    strip.dataset.shopguideTracked = "1";
    var url = strip.dataset.shopguideEvents, query = strip.dataset.shopguideQuery;
    var session = strip.dataset.shopguideSession || "";
    var cards = strip.querySelectorAll("[data-shopguide-product]");
    var seen = [];
    cards.forEach(function (card) {
      seen.push({ query: query, product: card.dataset.shopguideProduct, event: "impression", session: session });
      var link = card.querySelector("a");
      if (link) {
        link.addEventListener("click", function () {
          send(url, [{ query: query, product: card.dataset.shopguideProduct, event: "click", session: session }]);
        });
      }
    });
    if (seen.length) { send(url, seen); }
  }
  function start() { document.querySelectorAll("[data-shopguide-events]").forEach(track); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();

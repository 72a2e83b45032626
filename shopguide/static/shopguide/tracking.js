// Reports which products a shopper saw (in a recommendation strip, or any list marked with
// data-shopguide-events, such as search results) and which one they opened, without delaying the
// page: impressions go once the strip has rendered, clicks as a keepalive request that
// outlives the page, so following the link is never held up. Each request carries the shopper
// token the page was rendered with; events feed the next training.
(function () {
  "use strict";
  function send(strip, events) {
    if (!window.fetch) { return; }
    fetch(strip.dataset.shopguideEvents, {
      method: "POST", body: JSON.stringify(events), keepalive: true, credentials: "omit",
      headers: { "Content-Type": "application/json", "X-Shopguide-Token": strip.dataset.shopguideToken || "" }
    }).catch(function () {});
  }
  function track(strip) {
    if (strip.dataset.shopguideTracked) { return; }
    strip.dataset.shopguideTracked = "1";
    var query = strip.dataset.shopguideQuery;
    var cards = strip.querySelectorAll("[data-shopguide-product]");
    var seen = [];
    cards.forEach(function (card) {
      var product = card.dataset.shopguideProduct;
      seen.push({ query: query, product: product, event: "impression" });
      var link = card.querySelector("a");
      if (link) {
        link.addEventListener("click", function () {
          send(strip, [{ query: query, product: product, event: "click" }]);
        });
      }
    });
    if (seen.length) { send(strip, seen); }
  }
  function start() { document.querySelectorAll("[data-shopguide-events]").forEach(track); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();

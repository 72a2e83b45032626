// Reports which products a shopper saw (in a recommendation strip, or any list marked with
// data-shopguide-events, such as search results), at which place, and which one they opened,
// without delaying the page: impressions go once the strip has rendered, clicks as a keepalive
// request that outlives the page, so following the link is never held up. Each request carries the shopper
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
    var placement = strip.dataset.shopguidePlacement || "results";
    var version = parseInt(strip.dataset.shopguideVersion, 10);
    var cards = strip.querySelectorAll("[data-shopguide-product]");
    var seen = [];
    cards.forEach(function (card, index) {
      // A results page after the first can give each card its place: data-shopguide-position.
      var position = parseInt(card.dataset.shopguidePosition, 10) || index + 1;
      function event(kind) {
        var fields = { query: query, product: card.dataset.shopguideProduct, event: kind,
                       placement: placement, position: position };
        if (version > 0) { fields.version = version; }
        return fields;
      }
      seen.push(event("impression"));
      var link = card.querySelector("a");
      if (link) {
        link.addEventListener("click", function () { send(strip, [event("click")]); });
      }
    });
    if (seen.length) { send(strip, seen); }
  }
  function start() { document.querySelectorAll("[data-shopguide-events]").forEach(track); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();

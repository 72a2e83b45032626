// Refreshes training-run progress bars in the admin until the run has finished; a run page
// then reloads once, so that every field shows the outcome.
(function () {
  "use strict";
  var FINISHED = ["succeeded", "failed"];

  function follow(box) {
    var bar = box.querySelector("progress");
    var label = box.querySelector("span");
    function poll() {
      fetch(box.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) { return response.json(); })
        .then(function (run) {
          bar.value = run.progress;
          box.dataset.status = run.status;
          label.textContent = Math.round(run.progress) + "% " + run.stage +
            (run.status === "failed" ? " (failed: " + run.error + ")" : "") +
            (run.status === "succeeded" ? " (version " + run.version + ")" : "");
          if (FINISHED.indexOf(run.status) === -1) {
            setTimeout(poll, 2000);
          } else if (document.body.classList.contains("change-form")) {
            setTimeout(function () { window.location.reload(); }, 1500);
          }
        })
        .catch(function () { setTimeout(poll, 5000); });
    }
    if (FINISHED.indexOf(box.dataset.status) === -1) { poll(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".shopguide-progress").forEach(follow);
  });
})();

// Suggestions for product fields in the query rules' admin: as staff type a title, an id or a
// key, the catalogue's matches fill a <datalist> (title shown, key entered).
(function () {
  "use strict";
  let timer = null;
  let counter = 0;

  function listFor(input) {
    if (!input.list) {
      const list = document.createElement("datalist");
      list.id = "shopguide-products-" + (++counter);
      input.after(list);
      input.setAttribute("list", list.id);
    }
    return input.list;
  }

  function suggest(input) {
    const term = input.value.trim();
    if (!term) return;
    const url = input.dataset.lookup + "?term=" + encodeURIComponent(term);
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => (response.ok ? response.json() : {results: []}))
      .then((data) => {
        const list = listFor(input);
        list.replaceChildren(
          ...data.results.map((product) => {
            const option = document.createElement("option");
            option.value = product.key;
            option.label = product.title;
            option.textContent = product.title;
            return option;
          })
        );
      })
      .catch(() => {});
  }

  document.addEventListener("input", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.classList.contains("shopguide-product")) return;
    clearTimeout(timer);
    timer = setTimeout(() => suggest(input), 200);
  });
})();

// A run in progress refreshes its story in place; no inline script anywhere (the page's CSP allows only this file).
"use strict";
(function () {
  const story = document.getElementById("story");
  if (!story || !story.dataset.refresh) return;
  const url = story.dataset.refresh;
  async function refresh() {
    if (story.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;  // typing
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (answer.ok) story.innerHTML = await answer.text();  // the server escaped every value in it
      if (!answer.ok || !story.querySelector("[data-open]")) return;
    } catch (e) { /* offline for a moment: try again at the next beat */ }
    window.setTimeout(refresh, 2000);
  }
  window.setTimeout(refresh, 2000);
})();

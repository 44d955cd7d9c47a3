// A run in progress refreshes its story in place; no inline script anywhere (the page's CSP allows only this file).
"use strict";
(function () {
  const story = document.getElementById("story");
  if (!story || !story.dataset.refresh) return;
  const url = story.dataset.refresh;
  let last = null;  // the story as last fetched: replaced only when it changed, so focus and scroll stay put
  async function refresh() {
    const typing = story.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
    if (!typing) {  // never pull a comment box away from someone typing in it
      try {
        const answer = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
        if (!answer.ok) return;  // signed out, or the run is gone: the next reload says why
        const html = await answer.text();
        if (html !== last) story.innerHTML = last = html;  // the server escaped every value in it
        if (!story.querySelector("[data-open]")) return;  // the run has ended: nothing more will change
      } catch (e) { /* offline for a moment: try again at the next beat */ }
    }
    window.setTimeout(refresh, 2000);
  }
  window.setTimeout(refresh, 2000);
})();

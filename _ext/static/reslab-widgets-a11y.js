/* Accessible names for the widgets the book embeds. The widget manager renders slider handles
 * (noUiSlider, role="slider") with no accessible name and images with no alt attribute. Each
 * handle gets the text of its slider's label; each frame image gets its tooltip (set from the
 * frame's description by reslab.widgets.FrameExplorer) as alt text. Runs whenever widgets are
 * added to the page. */
(function () {
  function label(root) {
    root.querySelectorAll('.noUi-handle[role="slider"]:not([aria-label])').forEach(function (handle) {
      var slider = handle.closest(".widget-slider, .jupyter-widgets");
      var text = slider && slider.querySelector(".widget-label");
      handle.setAttribute("aria-label", (text && text.textContent.trim()) || "slider");
    });
    root.querySelectorAll("img.widget-image:not([alt])").forEach(function (img) {
      img.setAttribute("alt", img.getAttribute("title") || "figure frame");
    });
  }
  function start() {
    label(document);
    new MutationObserver(function () { label(document); }).observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

/* Accessible names for the widgets the book embeds. The widget manager renders slider handles
 * (noUiSlider, role="slider") with no accessible name: each gets the text of its slider's label.
 * FrameExplorer frames carry their own alt text; any plain widgets.Image (which has none) gets
 * its title, or a generic description, as alt text. Runs whenever widgets are added. */
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

/* Runs between require.js and the widget manager (embed-amd.js). The widget manager finds its
 * Font Awesome fonts relative to its own AMD module id, "@jupyter-widgets/html-manager/dist/...",
 * which require.js would resolve against the page's folder (a 404 under chapters/). Map that
 * id to the folder the vendored files are served from, next to this script. */
(function () {
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here + "widgets" } });
})();

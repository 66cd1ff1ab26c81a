/* The widget manager (@jupyter-widgets/html-manager 1.0.x) typesets widget labels with the
 * MathJax 2 call MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); Sphinx loads MathJax 3,
 * which has no Hub. This shim gives every object assigned to window.MathJax (Sphinx's
 * configuration, then MathJax 3 itself, which replaces the global at start-up) that one call,
 * so widget labels are typeset and the console stays clean. */
(function () {
  function makeHub() {
    return {
      Queue: function (job) {
        var element = job && job[2];
        var mj = window.MathJax;
        if (!mj || !mj.startup || !mj.startup.promise) return;
        mj.startup.promise.then(function () {
          if (mj.typesetPromise) return mj.typesetPromise(element ? [element] : undefined);
        });
      },
    };
  }
  function attach(obj) {
    if (obj && typeof obj === "object" && !obj.Hub) {
      try { obj.Hub = makeHub(); } catch (e) { /* frozen object: leave it */ }
    }
    return obj;
  }
  var current = attach(window.MathJax || {});
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    enumerable: true,
    get: function () { return current; },
    set: function (value) { current = attach(value); },
  });
})();

// Keeps the live sections of the dashboard current without reloading the page.
// The tables work without it: sorting, filters and paging are plain links and forms.
(function () {
  "use strict";
  document.documentElement.classList.add("js");  // styles (and tests) can tell
  var secs = parseInt(document.body.getAttribute("data-refresh-secs"), 10) || 3;
  var stamp = document.getElementById("refreshed");
  var banner = document.getElementById("store-banner");
  var bannerDetail = document.getElementById("store-banner-detail");
  var LIVE = ["farm", "fleet", "vms", "requests", "warm"];
  function stale(on) {
    LIVE.forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.classList.toggle("stale", on); }
    });
  }
  // A 503 problem means the store cannot be read: say so over what was shown last.
  function storeDown(problem) {
    if (banner) {
      if (bannerDetail) { bannerDetail.textContent = problem.detail || "no detail"; }
      banner.hidden = false;
    }
    stale(true);
    if (stamp) { stamp.textContent = "not updated since the store stopped answering"; }
  }
  function refresh() {
    fetch("/ui/fragments" + window.location.search, {headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (r.status === 503) {
          return r.json().then(function (p) { storeDown(p); return null; });
        }
        if (!r.ok) { throw new Error(r.status); }
        return r.json();
      })
      .then(function (parts) {
        if (parts === null) { return; }
        Object.keys(parts).forEach(function (id) {
          var el = document.getElementById(id);
          if (el) { el.innerHTML = parts[id]; }
        });
        if (banner) { banner.hidden = true; }
        stale(false);
        if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
        document.body.setAttribute("data-refreshes",
          String((parseInt(document.body.getAttribute("data-refreshes"), 10) || 0) + 1));
      })
      .catch(function (e) { if (stamp) { stamp.textContent = "refresh failed: " + e; } })
      .finally(function () { window.setTimeout(refresh, secs * 1000); });
  }
  window.setTimeout(refresh, secs * 1000);
}());

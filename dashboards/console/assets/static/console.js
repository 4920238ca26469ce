// The console's only script, served from /ui/static/ under script-src 'self'
// (console.go). It re-fetches the refreshing part of the page (#dash) from
// the URL in <body data-fragment> every #dash[data-refresh-ms] and swaps it
// in, so the page stays current without reloading; without JavaScript a
// <noscript> meta refresh reloads the page instead.
//
// Pages without data-fragment are not refreshed; a fragment whose #dash
// says data-refresh-ms="0" is final (a finished bulk job) and ends the
// refreshes. On a record list, #select-all checks every row's box.
//
// When the session has ended (401) it reloads the page, which sends the
// browser to the login form.
//
// After each swap it fires "console:refreshed" on document, with the new
// #dash's data-rendered-ns as detail.renderedNs; after a failed fetch,
// "console:refresh-failed" with detail.error. Tests wait on these.
(function () {
  'use strict';
  var selectAll = document.getElementById('select-all');
  if (selectAll) {
    selectAll.addEventListener('change', function () {
      document.querySelectorAll('input.select-row').forEach(function (box) { box.checked = selectAll.checked; });
    });
  }
  var fragmentURL = document.body.getAttribute('data-fragment');
  if (!fragmentURL || !document.getElementById('dash')) { return; }
  var status = document.getElementById('refresh-status');
  function dash() { return document.getElementById('dash'); }
  function announce(name, detail) {
    document.dispatchEvent(new CustomEvent(name, {detail: detail}));
  }
  function schedule() {
    var ms = parseInt(dash().getAttribute('data-refresh-ms'), 10);
    if (ms === 0) { return; }
    setTimeout(refresh, ms > 0 ? ms : 5000);
  }
  function refresh() {
    if (document.hidden) { schedule(); return; }
    fetch(fragmentURL, {cache: 'no-store', credentials: 'same-origin'})
      .then(function (resp) {
        // A session that ended: the page itself now redirects to the login.
        if (resp.status === 401) { window.location.reload(); }
        if (!resp.ok) { throw new Error('HTTP ' + resp.status); }
        return resp.text();
      })
      .then(function (html) {
        var t = document.createElement('template');
        t.innerHTML = html;
        var next = t.content.getElementById('dash');
        if (!next) { throw new Error('unexpected response'); }
        dash().replaceWith(next);
        status.textContent = '';
        status.className = '';
        announce('console:refreshed', {renderedNs: next.getAttribute('data-rendered-ns')});
      })
      .catch(function (err) {
        status.textContent = 'refresh failed (' + err.message + '); retrying';
        status.className = 'warn';
        announce('console:refresh-failed', {error: err.message});
      })
      .then(schedule);
  }
  schedule();
})();

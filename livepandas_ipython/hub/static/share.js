/* The share page: open the canvas's view on a fresh session of the hub.
 *
 * POST /api/v1/canvas_sessions/ {canvas}, poll the session until the worker answers (socket set),
 * show http://<socket>/ in the frame, keep the session alive while the page is open, and delete
 * it when the page goes away (pagehide, with a keepalive request that outlives the page).
 */
(function () {
  "use strict";

  var bar = document.getElementById("share");
  var frame = document.getElementById("view");
  var statusLine = document.getElementById("status");
  var sessions = bar.dataset.sessions;
  var keepaliveMs = 1000 * Number(bar.dataset.keepalive || 60);
  var POLL_MS = 1000;
  var session = null;   // {id, self} once created
  var ended = false;
  var timer = null;

  function show(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "status error" : "status";
  }

  function fail(text) {
    ended = true;
    clearTimeout(timer);
    bar.dataset.state = "error";
    show(text, true);
  }

  // The hub answers errors as JSON {status, message}; anything else still gets a clear line.
  function errorText(response, body) {
    var message = body && body.message ? body.message : "HTTP " + response.status;
    if (response.status === 429) {
      var wait = response.headers.get("Retry-After");
      return "The hub is busy (too many sessions): " + message + (wait ? " Try again in " + wait + " s." : "");
    }
    if (response.status === 404) return "This canvas is gone: " + message;
    return "Could not start a session: " + message;
  }

  function readJSON(response) {
    return response.json().catch(function () { return null; });
  }

  function sessionURL() {
    return sessions + encodeURIComponent(session.id) + "/";
  }

  function create() {
    fetch(sessions, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({canvas: Number(bar.dataset.canvas)}),
      credentials: "omit"
    }).then(function (response) {
      return readJSON(response).then(function (body) {
        if (response.status !== 201 || !body) return fail(errorText(response, body));
        session = body;
        bar.dataset.session = body.id;
        update(body);
      });
    }, function () {
      fail("Could not reach the hub to start a session.");
    });
  }

  function poll(delay) {
    clearTimeout(timer);
    timer = setTimeout(function () {
      fetch(sessionURL(), {credentials: "omit", cache: "no-store"}).then(function (response) {
        return readJSON(response).then(function (body) {
          if (!response.ok || !body) {
            return fail(response.status === 404 ? "The session has ended; reload the page for a new one."
                                                : errorText(response, body));
          }
          update(body);
        });
      }, function () {
        // The hub may be restarting: keep trying while the page is open.
        show("Cannot reach the hub; retrying…", true);
        poll(POLL_MS * 5);
      });
    }, delay);
  }

  function update(model) {
    if (ended) return;
    if (model.status === "failed") return fail("The session failed: " + (model.error || "the worker stopped"));
    if (model.status === "stopped") return fail("The session has ended; reload the page for a new one.");
    if (!model.socket) {
      show("Starting a session…");
      return poll(POLL_MS);
    }
    if (!frame.src) {
      frame.src = "http://" + model.socket + "/";
      frame.hidden = false;
      bar.dataset.state = "running";
    }
    show("Live");
    poll(keepaliveMs);
  }

  window.addEventListener("pagehide", function () {
    clearTimeout(timer);
    if (session && !ended) {
      ended = true;
      fetch(sessionURL(), {method: "DELETE", keepalive: true, credentials: "omit"}).catch(function () {});
    }
  });

  // Back to a page restored from the back/forward cache: its session was deleted on pagehide.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) location.reload();
  });

  create();
})();

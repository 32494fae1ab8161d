/* livepandas.js: call a canvas's functions from its view, with no other library.
 *
 *   livepandas.call("add", {x: 1, y: 2}).then(result => ...)           // HTTP GET, one result
 *   livepandas.stream("progress", {n: 10}, chunk => ...).then(result => ...)   // NDJSON stream
 *   var s = livepandas.socket("add");                                    // one WebSocket
 *   s.call({x: 1, y: 2}).then(result => ...); s.close();
 *   livepandas.rows(frame)   // a DataFrame result ({columns, index, data}) as an array of records
 *
 * Errors reject with an Error whose .type is the exception's type and .status the HTTP status;
 * a server that can't be reached (or a closed WebSocket) gives .type "ConnectionError", .status 0.
 * URLs are relative to this script's own URL, so views work behind a proxy prefix too.
 */
(function (root) {
  "use strict";

  var script = document.currentScript;
  var base = script && script.src ? script.src.replace(/[^\/]*$/, "") : new URL("./", location.href).href;

  function callError(body, status) {
    var err = new Error(body && body.exception !== undefined ? body.exception : "HTTP " + status);
    err.type = (body && body.type) || "HTTPError";
    err.status = status;
    if (body && body.traceback) err.traceback = body.traceback;
    return err;
  }

  function connectionError(message) {
    var err = new Error(message);
    err.type = "ConnectionError";
    err.status = 0;
    return err;
  }

  function fetchOrFail(name, options) {
    return fetch(url(name, options.kwargs), options.init).catch(function () {
      throw connectionError("cannot reach the canvas server for " + name);
    });
  }

  function url(name, kwargs) {
    return base + encodeURIComponent(name) + "?kwargs=" + encodeURIComponent(JSON.stringify(kwargs || {}));
  }

  function call(name, kwargs) {
    return fetchOrFail(name, {kwargs: kwargs, init: {credentials: "same-origin"}}).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok || "exception" in body) throw callError(body, response.status);
        return body.result;
      }, function () { throw callError(null, response.status); });
    });
  }

  function stream(name, kwargs, onPartial) {
    return fetchOrFail(name, {
      kwargs: kwargs,
      init: {credentials: "same-origin", headers: {Accept: "application/x-ndjson"}}
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/x-ndjson") !== 0) {
        // Not a stream (an error, or a plain function): one JSON body.
        return response.json().then(function (body) {
          if (!response.ok || "exception" in body) throw callError(body, response.status);
          return body.result;
        });
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      var final;
      function handle(line) {
        if (!line.trim()) return;
        var msg = JSON.parse(line);
        if ("partial" in msg) { if (onPartial) onPartial(msg.partial); }
        else if ("exception" in msg) throw callError(msg, 500);
        else if ("result" in msg) final = msg.result;
      }
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            handle(buffer);
            return final === undefined ? null : final;
          }
          buffer += decoder.decode(chunk.value, {stream: true});
          var lines = buffer.split("\n");
          buffer = lines.pop();
          lines.forEach(handle);
          return pump();
        });
      }
      return pump();
    });
  }

  function socket(name) {
    var wsBase = base.replace(/^http/, "ws");
    var ws = new WebSocket(wsBase + encodeURIComponent(name) + "/ws");
    var pending = [];   // replies come back in order, one per message
    var ready = new Promise(function (resolve, reject) {
      ws.addEventListener("open", function () { resolve(handle); });
      ws.addEventListener("error", function () { reject(connectionError("WebSocket to " + name + " failed")); });
    });
    ws.addEventListener("message", function (event) {
      var msg = JSON.parse(event.data);
      var head = pending[0];
      if (!head) return;
      if ("partial" in msg) { if (head.onPartial) head.onPartial(msg.partial); return; }
      pending.shift();
      if ("exception" in msg) head.reject(callError(msg, msg.type === "FunctionNotFound" ? 404 : 500));
      else head.resolve(msg.result);
    });
    ws.addEventListener("close", function () {
      pending.splice(0).forEach(function (p) { p.reject(connectionError("WebSocket closed")); });
    });
    var handle = {
      ws: ws,
      ready: ready,
      call: function (kwargs, onPartial) {
        return ready.then(function () {
          return new Promise(function (resolve, reject) {
            // send() on a closed socket drops the message silently: the call would never settle.
            if (ws.readyState !== WebSocket.OPEN) return reject(connectionError("WebSocket closed"));
            pending.push({resolve: resolve, reject: reject, onPartial: onPartial});
            ws.send(JSON.stringify(kwargs || {}));
          });
        });
      },
      close: function () { ws.close(); }
    };
    return handle;
  }

  function rows(frame) {
    var out = [];
    var n = frame.index.length;
    for (var r = 0; r < n; r++) {
      var record = {};
      for (var c = 0; c < frame.columns.length; c++) record[frame.columns[c]] = frame.data[c][r];
      out.push(record);
    }
    return out;
  }

  root.livepandas = {base: base, call: call, stream: stream, socket: socket, rows: rows};
})(window);

// Loaded into the Node.js clients under test (NODE_OPTIONS=--require): every connection that
// is not to this machine fails at once, and its destination is appended to the file named by
// OAI2OLLAMA_TEST_REFUSED_LOG. Node's own fetch ignores the proxy variables, so this is what
// keeps a client's version checks and telemetry off the network.
"use strict";
const fs = require("node:fs");
const net = require("node:net");

const LOCAL = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);
const refusedLog = process.env.OAI2OLLAMA_TEST_REFUSED_LOG;
const connect = net.Socket.prototype.connect;

net.Socket.prototype.connect = function guardedConnect(...args) {
  let options = args[0];
  if (Array.isArray(options)) options = options[0]; // net.connect's normalized arguments
  let host;
  let port;
  if (options !== null && typeof options === "object") {
    if (options.path) return connect.apply(this, args);
    host = options.host ?? "localhost";
    port = options.port;
  } else if (typeof options === "string" && !/^\d+$/.test(options)) {
    return connect.apply(this, args); // a Unix socket path
  } else {
    port = options;
    host = typeof args[1] === "string" ? args[1] : "localhost";
  }
  if (LOCAL.has(host)) return connect.apply(this, args);
  if (refusedLog) fs.appendFileSync(refusedLog, `${host}:${port}\n`);
  const error = new Error(`connection to ${host}:${port} refused: the tests run offline`);
  error.code = "ECONNREFUSED";
  process.nextTick(() => this.destroy(error));
  return this;
};

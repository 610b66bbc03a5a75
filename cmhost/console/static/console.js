// cmhost console: live status updates and small conveniences. Plain JavaScript, no build step;
// every page works without it (forms post, links navigate), it only saves reloads.
"use strict";

(function () {
  const POLL_MS = 2000;

  function setStatus(badge, status, reason) {
    if (!badge) return;
    badge.className = "status status-" + status;
    const word = badge.querySelector(".word");
    if (word) word.textContent = status;
    if (reason) badge.title = reason; else badge.removeAttribute("title");
  }

  function badge(status) {
    const span = document.createElement("span");
    span.setAttribute("data-status", "");
    const dot = document.createElement("span");
    dot.className = "dot";
    const word = document.createElement("span");
    word.className = "word";
    span.append(dot, word);
    setStatus(span, status, "");
    return span;
  }

  function when(epoch) {
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function serverRow(server) {
    const row = document.createElement("tr");
    row.dataset.server = server.name;
    const cells = [0, 1, 2, 3, 4].map(() => document.createElement("td"));
    const link = document.createElement("a");
    link.href = "/console/servers/" + encodeURIComponent(server.name) + "/";
    link.textContent = server.name;
    cells[0].append(link);
    cells[1].append(badge(server.status));
    cells[2].textContent = server.engine + " " + server.version;
    const code = document.createElement("code");
    code.textContent = server.endpoint;
    cells[3].append(code);
    cells[4].textContent = when(server.created);
    row.append(...cells);
    return row;
  }

  function updateList(table, servers) {
    const body = table.tBodies[0];
    const seen = new Set();
    for (const server of servers) {
      seen.add(server.name);
      let row = body.querySelector('tr[data-server="' + CSS.escape(server.name) + '"]');
      if (!row) {
        row = serverRow(server);
        body.append(row);
      }
      setStatus(row.querySelector("[data-status]"), server.status, server.statusReason);
    }
    for (const row of body.querySelectorAll("tr[data-server]")) {
      if (!seen.has(row.dataset.server)) row.remove();  // deleted
    }
    const empty = document.querySelector("p.empty");
    if (empty) empty.hidden = servers.length > 0;
  }

  function updateServer(root, server) {
    setStatus(root.querySelector("[data-status]"), server.status, server.statusReason);
    const word = document.querySelector("[data-status-word]");
    if (word) word.textContent = server.status;
    const reason = document.querySelector("[data-status-reason]");
    if (reason) reason.textContent = server.statusReason || "";
  }

  function poll(root) {
    const url = root.dataset.live;
    let timer = null;
    async function tick() {
      try {
        const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
        if (response.status === 401) { window.location.assign("/console/signin"); return; }
        if (response.status === 404 && root.dataset.server) {
          setStatus(root.querySelector("[data-status]"), "gone", "The server no longer exists.");
          return;
        }
        if (response.ok) {
          const data = await response.json();
          if (data.servers) updateList(root, data.servers);
          if (data.server) updateServer(root, data.server);
        }
      } catch (e) {
        // The service may be restarting: try again at the next tick.
      }
      timer = window.setTimeout(tick, POLL_MS);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer === null) tick();
    });
    timer = window.setTimeout(tick, POLL_MS);
  }

  function engineFields() {
    const select = document.querySelector("[data-engine-select]");
    if (!select) return;
    const family = () => (select.value === "Puppet" ? "Puppet" : "Chef");
    function apply() {
      for (const set of document.querySelectorAll("[data-engine-family]")) {
        set.hidden = set.dataset.engineFamily !== family();
      }
      for (const option of document.querySelectorAll("option[data-engine]")) {
        option.hidden = option.dataset.engine !== select.value;
        if (option.hidden && option.selected) option.parentElement.value = "";
      }
    }
    select.addEventListener("change", apply);
    apply();
  }

  function copyButtons() {
    for (const button of document.querySelectorAll("[data-copy]")) {
      button.addEventListener("click", async () => {
        const source = document.getElementById(button.dataset.copy);
        try {
          await navigator.clipboard.writeText(source.textContent);
          button.textContent = "Copied";
        } catch (e) {
          window.getSelection().selectAllChildren(source);
        }
      });
    }
  }

  function confirmations() {
    for (const button of document.querySelectorAll("button[data-confirm]")) {
      button.form.addEventListener("submit", (event) => {
        if (!window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    }
    const input = document.querySelector("[data-confirm-name]");
    const remove = document.querySelector("[data-delete-button]");
    if (input && remove) {
      const sync = () => { remove.disabled = input.value !== input.dataset.confirmName; };
      input.addEventListener("input", sync);
      sync();
    }
  }

  function autosubmit() {
    for (const select of document.querySelectorAll("select[data-autosubmit]")) {
      select.addEventListener("change", () => select.form.submit());
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const root of document.querySelectorAll("[data-live]")) poll(root);
    engineFields();
    copyButtons();
    confirmations();
    autosubmit();
  });
})();

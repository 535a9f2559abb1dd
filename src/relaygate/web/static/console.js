// relaygate console: the few interactions that should not reload the page.
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", body: body || null, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
    });
    return response.json();
  }

  function describe(result) {
    if (result.status !== "ok") return "sync failing: " + (result.error || "sync failed");
    return "added " + result.added + " · reactivated " + result.reactivated +
      " · deactivated " + result.deactivated + " (" + result.total +
      (result.total === 1 ? " model)" : " models)");
  }

  // The server sends each state already worded (relaygate.web.states): one vocabulary.
  function showState(row, role, state) {
    if (!state) return;
    const cell = row.querySelector("[data-role=" + role + "]");
    if (!cell) return;
    const badge = cell.querySelector(".badge");
    badge.textContent = state.label;
    badge.className = "badge " + state.kind;
    const reason = cell.querySelector(".reason");
    reason.textContent = state.detail || "";
    reason.title = state.detail || "";
    reason.className = "reason " + state.kind;
    reason.hidden = !state.detail || (role === "sync" && state.kind === "idle");
  }

  function showSync(row, result) {
    const out = row.querySelector("[data-role=result]");
    out.textContent = describe(result);
    out.classList.toggle("error", result.status !== "ok");
    showState(row, "sync", result.sync || { label: "failing", kind: "bad", detail: result.error });
    showState(row, "health", result.health);
    if (result.synced_at) row.querySelector("[data-role=synced]").textContent = "just now";
    if (result.counts) row.querySelector("[data-role=counts]").textContent = result.counts;
  }

  document.querySelectorAll("button.edit-toggle").forEach(function (button) {
    button.addEventListener("click", function () {
      const target = document.getElementById(button.getAttribute("aria-controls"));
      const open = target.hidden;
      target.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      button.textContent = open ? "Close" : "Edit";
    });
  });

  document.querySelectorAll("button.sync").forEach(function (button) {
    button.addEventListener("click", async function () {
      const row = button.closest("tr");
      button.disabled = true;
      try { showSync(row, await post(button.dataset.url)); } finally { button.disabled = false; }
    });
  });

  const syncAll = document.getElementById("sync-all");
  if (syncAll) syncAll.addEventListener("click", async function () {
    syncAll.disabled = true;
    try {
      const answer = await post(syncAll.dataset.url);
      answer.results.forEach(function (result) {
        const row = document.querySelector('tr[data-endpoint="' + result.endpoint_id + '"]');
        if (row) showSync(row, result);
      });
      document.getElementById("sync-all-result").textContent =
        "synced " + answer.results.length +
        (answer.results.length === 1 ? " endpoint" : " endpoints");
    } finally { syncAll.disabled = false; }
  });

  const test = document.getElementById("test-connection");
  if (test) test.addEventListener("click", async function () {
    const form = document.getElementById("add-endpoint");
    const out = document.getElementById("test-result");
    test.disabled = true;
    out.textContent = "testing…";
    try {
      const result = await post(test.dataset.url, new FormData(form));
      out.textContent = "";
      const line = document.createElement("p");
      line.className = "flash " + (result.ok ? "ok" : "error");
      line.textContent = result.ok ? "Connection works: " + result.models.length +
                                       (result.models.length === 1 ? " model" : " models") + " found"
                                   : "Connection failed: " + result.error;
      out.appendChild(line);
      if (result.ok) {
        const list = document.createElement("ul");
        result.models.forEach(function (m) {
          const item = document.createElement("li"); item.textContent = m; list.appendChild(item);
        });
        out.appendChild(list);
      }
    } finally { test.disabled = false; }
  });

  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", async function () {
      const text = document.querySelector(button.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
      catch (e) { button.textContent = "Select and copy"; }
    });
  });
})();

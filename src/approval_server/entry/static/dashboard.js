// approval-server dashboard: live updates over server-sent events, and a countdown for each pending request.
// Every piece of HTML inserted here was rendered (and escaped) by the server; nothing is built from raw data.
"use strict";

(function () {
  const serverNow = Date.parse(document.body.dataset.serverNow || "");
  const skew = Number.isNaN(serverNow) ? 0 : serverNow - Date.now(); // the server's clock decides expiry

  function tick() {
    const now = Date.now() + skew;
    for (const el of document.querySelectorAll("[data-expires-at]")) {
      const left = Math.round((Date.parse(el.dataset.expiresAt) - now) / 1000);
      if (left <= 0) {
        el.textContent = "expired";
        el.classList.add("urgent");
        continue;
      }
      const minutes = Math.floor(left / 60);
      const seconds = String(left % 60).padStart(2, "0");
      el.textContent = `${minutes}:${seconds} left`;
      el.classList.toggle("urgent", left <= 30);
    }
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  const pending = document.getElementById("pending");
  const history = document.getElementById("history");
  const live = document.getElementById("live-status");
  const count = document.getElementById("pending-count");
  const baseTitle = "approval-server";
  // The server's count: the list may show only the newest of many.
  let total = count ? Number(count.textContent) || 0 : 0;
  const decidedHere = new Set(); // removed by this page already: their `closed` event must not count twice

  function refreshCount() {
    const n = pending.querySelectorAll(".card").length;
    total = Math.max(total, n);
    count.textContent = String(total);
    document.title = total ? `(${total}) ${baseTitle}` : baseTitle;
    let empty = pending.querySelector(".empty");
    if (n === 0 && !empty) {
      empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "Nothing is waiting for a decision.";
      pending.appendChild(empty);
    } else if (n > 0 && empty) {
      empty.remove();
    }
  }

  function setLive(state, text) {
    live.dataset.state = state;
    live.textContent = text;
  }

  async function resync() {
    const response = await fetch("/fragments/pending", { credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
      return;
    }
    if (response.ok) {
      // Keep the cards being edited; replace the rest with what the server says is pending now.
      const fresh = document.createElement("template");
      fresh.innerHTML = await response.text();
      total = Number(response.headers.get("X-Pending-Total")) || 0;
      const ids = new Set();
      for (const card of fresh.content.querySelectorAll(".card")) {
        ids.add(card.id);
        if (!document.getElementById(card.id)) pending.prepend(card);
      }
      for (const card of pending.querySelectorAll(".card")) {
        if (!ids.has(card.id)) card.remove();
      }
      refreshCount();
      tick();
    }
  }

  function follow() {
    const source = new EventSource("/events");
    source.addEventListener("ready", () => {
      setLive("live", "Live: new requests and decisions appear here as they happen.");
      // What was created or decided between the page's rendering (or the drop) and this subscription.
      resync();
    });
    source.addEventListener("created", (event) => {
      const data = JSON.parse(event.data);
      if (!document.getElementById("req-" + data.id)) {
        pending.prepend(fragment(data.html));
        total += 1;
      }
      refreshCount();
      tick();
    });
    source.addEventListener("closed", (event) => {
      const data = JSON.parse(event.data);
      const card = document.getElementById("req-" + data.id);
      if (card) card.remove();
      if (!decidedHere.delete(data.id)) total = Math.max(0, total - 1);
      refreshCount();
      if (history && history.dataset.live) {
        const old = document.getElementById("hist-" + data.id);
        if (old) old.remove();
        history.prepend(fragment("<table><tbody>" + data.html + "</tbody></table>").querySelector("tr"));
      }
    });
    source.onerror = () => {
      setLive("offline", "Reconnecting… (decisions still work; reload if this stays)");
    };
  }

  // Decide without reloading the page: post the form, and let the `closed` event move the request to the history.
  // Without this script the same forms work as plain posts.
  async function decide(event) {
    const form = event.target;
    const card = form instanceof HTMLFormElement ? form.closest("#pending .card") : null;
    if (!card || form.method.toLowerCase() !== "post") return;
    event.preventDefault();
    const body = new URLSearchParams(new FormData(form, event.submitter)); // before the buttons are disabled
    const buttons = card.querySelectorAll("button");
    for (const button of buttons) button.disabled = true;
    let problem = null;
    try {
      const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin", redirect: "manual" });
      if (response.type !== "opaqueredirect" && !response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const title = page.querySelector("h1");
        const detail = page.querySelector(".detail");
        problem = `${title ? title.textContent : "Refused"}: ${detail ? detail.textContent : response.status}`;
      }
    } catch (error) {
      problem = "The server could not be reached; nothing was decided.";
    }
    for (const button of buttons) button.disabled = false;
    let note = card.querySelector(".error");
    if (!problem) {
      if (card.isConnected) {
        decidedHere.add(card.dataset.requestId);
        card.remove();
        total = Math.max(0, total - 1);
        refreshCount();
      }
      return;
    }
    if (!note) {
      note = document.createElement("p");
      note.className = "error";
      note.setAttribute("role", "alert");
      card.querySelector(".decide").prepend(note);
    }
    note.textContent = problem;
  }

  tick();
  setInterval(tick, 1000);
  document.addEventListener("submit", decide);
  if (pending && live) follow();
})();

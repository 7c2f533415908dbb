// LabHub's own script: small, no build step. Pages work without it; it adds the QR card
// sign-in (the card's secret travels after "#", so it never reaches a server log).
"use strict";

(function cardSignIn() {
  const match = /^#card=(lhc_[A-Za-z0-9_-]{20,80})$/.exec(window.location.hash);
  const config = document.getElementById("signin-config");
  if (!match || !config) {
    return;
  }
  // Forget the secret at once: not in the address bar, the history or a bookmark.
  history.replaceState(null, "", window.location.pathname + window.location.search);
  const status = document.getElementById("card-status");
  status.hidden = false;
  status.textContent = status.dataset.working;
  fetch(config.dataset.api, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ card: match[1] }),
  }).then((answer) => {
    if (answer.ok) {
      window.location.assign(config.dataset.next);
    } else {
      status.textContent = status.dataset.failed;
    }
  }).catch(() => {
    status.textContent = status.dataset.failed;
  });
})();

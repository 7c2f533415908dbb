// Scanning (labhub/web/equipment.py tells the contract). A scan form's one field takes a
// tag typed by hand, typed by a USB barcode scanner (keystrokes ending in Enter) or put
// there by the camera (camera.js calls LabHubScan.take). Each scan gets its own key and
// waits in this device's outbox (localStorage) until the hub has answered it: a lost
// network, a closed tab or an ended session loses none, and the hub does each key once.
"use strict";

(function scans() {
  const STORE = "labhub-scans:";
  const RETRY_MS = 5000;
  const forms = Array.from(document.querySelectorAll("form.scan[data-scan-outbox]"));

  function outboxOf(form) {
    try {
      return JSON.parse(localStorage.getItem(STORE + form.dataset.scanOutbox) || "[]");
    } catch (_) {
      return [];
    }
  }

  function keep(form, entries) {
    const name = STORE + form.dataset.scanOutbox;
    if (entries.length) {
      localStorage.setItem(name, JSON.stringify(entries));
    } else {
      localStorage.removeItem(name);
    }
  }

  function words(form, name, count) {
    const one = count === 1 && form.dataset["said" + name + "One"]; // "1 scans" reads wrong
    return (one || form.dataset["said" + name] || "").replace("{n}", String(count));
  }

  // A short tone and a vibration for each answer, always with the words on the page too.
  let audio = null;
  function feedback(outcome) {
    const tones = { ok: [[880, 0.08]], again: [[660, 0.08]], warn: [[660, 0.1], [660, 0.1]],
      refused: [[220, 0.3]] }[outcome] || [];
    // Chromium refuses a vibration (and logs an error) before the person has touched the
    // page: the scans a reopened page sends from its outbox by itself.
    const touched = !navigator.userActivation || navigator.userActivation.hasBeenActive;
    if (navigator.vibrate && touched) {
      navigator.vibrate(outcome === "refused" ? [120, 60, 120] : outcome === "warn" ? [60, 60, 60] : 60);
    }
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      let at = audio.currentTime;
      for (const [hz, seconds] of tones) {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        gain.gain.value = 0.15;
        tone.frequency.value = hz;
        tone.connect(gain).connect(audio.destination);
        tone.start(at);
        tone.stop(at + seconds);
        at += seconds + 0.06;
      }
    } catch (_) { /* no sound on this device: the words and the vibration still say it */ }
  }

  function say(form, text, outcome) {
    const place = form.querySelector(".scan-said");
    place.textContent = text;
    place.className = "scan-said" + (outcome ? " outcome-" + outcome : "");
  }

  function csrfOf(form) {
    return form.querySelector("input[name=csrf_token]").value;
  }

  // After a new sign-in (in another tab), the page's CSRF value is stale: read the page
  // again for the new one. False while the session is still gone.
  async function renewCsrf(form) {
    try {
      const page = await fetch(window.location.href, { credentials: "same-origin" });
      if (page.redirected && new URL(page.url).pathname.endsWith("/signin")) {
        return false;
      }
      const doc = new DOMParser().parseFromString(await page.text(), "text/html");
      const fresh = doc.querySelector("input[name=csrf_token]");
      if (!fresh) {
        return false;
      }
      form.querySelector("input[name=csrf_token]").value = fresh.value;
      return true;
    } catch (_) {
      return false;
    }
  }

  function refused(form, entry, text) {
    const item = document.createElement("li");
    item.textContent = entry.fields.code + ": " + text;
    form.querySelector(".scan-refused").prepend(item);
  }

  function showKept(form, count, signIn) {
    form.querySelector(".scan-kept").hidden = !signIn;
    if (count) {
      say(form, words(form, signIn ? "Signin" : "Kept", count), "warn");
    }
  }

  const sending = new WeakMap();

  // Send the outbox in order, one scan at a time; stop at the first that cannot be sent.
  async function flush(form) {
    if (sending.get(form)) {
      return;
    }
    sending.set(form, true);
    let renewed = false; // the CSRF value is read again once a pass, not in a loop
    try {
      for (;;) {
        const entries = outboxOf(form);
        if (!entries.length) {
          form.querySelector(".scan-kept").hidden = true;
          return;
        }
        const entry = entries[0];
        const body = new URLSearchParams(entry.fields);
        body.set("scan_id", entry.key);
        let answer;
        try {
          answer = await fetch(entry.action, {
            method: "POST", credentials: "same-origin", body,
            headers: { "X-Scan": "1", "X-CSRF-Token": csrfOf(form) },
          });
        } catch (_) {
          showKept(form, entries.length, false);
          return;
        }
        const signedOut = answer.status === 401 ||
          (answer.redirected && new URL(answer.url).pathname.endsWith("/signin"));
        if (signedOut || (answer.status === 403 && !renewed)) {
          renewed = true;
          if (!(await renewCsrf(form))) {
            showKept(form, entries.length, true);
            return;
          }
          continue; // signed in again: the same scan, with the new session's value
        }
        if (answer.status >= 500 || answer.status === 429 || answer.status === 408) {
          showKept(form, entries.length, false);
          return;
        }
        const outcome = answer.headers.get("X-Scan-Outcome") || (answer.ok ? "ok" : "refused");
        const text = decodeURIComponent(answer.headers.get("X-Scan-Said") || "");
        const fragment = await answer.text();
        keep(form, outboxOf(form).filter((e) => e.key !== entry.key));
        const target = document.querySelector(form.dataset.scanResult);
        if (target && fragment && (answer.headers.get("Content-Type") || "").startsWith("text/html")) {
          target.innerHTML = fragment;
        }
        if (outcome === "refused") {
          refused(form, entry, text);
        }
        say(form, text, outcome);
        feedback(outcome);
        form.dispatchEvent(new CustomEvent("labhub:scanned", { detail: { outcome, code: entry.fields.code } }));
      }
    } finally {
      sending.set(form, false);
    }
  }

  // One scan into the outbox, then send what is waiting.
  function take(form, code) {
    code = (code || "").trim();
    if (!code) {
      say(form, form.dataset.saidEmpty, "refused");
      feedback("refused");
      return;
    }
    const fields = {};
    for (const [name, value] of new FormData(form)) {
      if (name !== "csrf_token" && name !== "scan_id") {
        fields[name] = String(value);
      }
    }
    fields.code = code;
    const key = crypto.randomUUID ? crypto.randomUUID() : uuid4();
    const entries = outboxOf(form);
    entries.push({ key, action: form.action, fields, at: Date.now() });
    keep(form, entries);
    say(form, form.dataset.saidSending, null);
    flush(form);
  }

  function uuid4() { // crypto.randomUUID needs a secure context; a hub on the LAN may have none
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  for (const form of forms) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const field = form.querySelector("input[name=code]");
      take(form, field.value);
      field.value = "";
      field.focus();
    });
    const waiting = outboxOf(form).length;
    if (waiting) {
      showKept(form, waiting, false);
    }
    flush(form); // scans kept from an earlier visit, a closed tab, a lost network
    // Taken over: from here a scan goes through the outbox. (Before this deferred script
    // runs, Enter posts the form without JavaScript, which the hub answers with a page.)
    form.dataset.scanReady = "";
  }
  window.addEventListener("online", () => forms.forEach(flush));
  window.addEventListener("focus", () => forms.forEach(flush));
  setInterval(() => forms.forEach((form) => outboxOf(form).length && flush(form)), RETRY_MS);

  window.LabHubScan = { take, flush, outboxOf };
})();

// The run page's note form: posts a note to the API without leaving the page, and keeps
// the draft in this tab's sessionStorage while it is typed, so a session that ends
// meanwhile loses nothing: the person signs in again and finds the text in the field.
// Without this script the form posts to the page (see docs/web.md, "Runs").
"use strict";

(function runNotes() {
  const form = document.querySelector("form[data-note]");
  if (!form) {
    return;
  }
  const field = form.querySelector("textarea[name=text]");
  const status = document.getElementById("note-status");
  const error = document.getElementById("note-text-error");
  const list = document.getElementById("run-notes");
  const none = document.getElementById("run-notes-none");
  const chart = document.querySelector("figure[data-chart]");
  const key = "labhub.note." + form.dataset.run;
  let store = null;
  try {
    store = window.sessionStorage;
  } catch (e) {
    store = null; // storage switched off: the draft lives only in the field
  }
  const lang = document.documentElement.lang;
  const timeOf = new Intl.DateTimeFormat(lang, { timeZone: form.dataset.zone, timeStyle: "medium" });

  const kept = store ? store.getItem(key) : null;
  if (kept && !field.value) {
    field.value = kept;
  }
  field.addEventListener("input", () => {
    if (store) {
      store.setItem(key, field.value);
    }
  });

  function say(text) {
    status.replaceChildren(document.createTextNode(text));
  }

  function wrong(text) {
    error.textContent = text;
    error.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", "note-text-error");
    field.parentElement.classList.add("has-error");
    field.focus();
  }

  function right() {
    error.hidden = true;
    field.removeAttribute("aria-invalid");
    field.setAttribute("aria-describedby", "note-text-hint");
    field.parentElement.classList.remove("has-error");
  }

  function expired() {
    const link = document.createElement("a");
    link.href = form.dataset.signin;
    link.textContent = form.dataset.signinLabel;
    status.replaceChildren(document.createTextNode(form.dataset.expired + " "), link);
    link.focus();
  }

  function shown(note) {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = note.ts;
    time.textContent = timeOf.format(new Date(note.ts));
    item.append(time, " " + note.text);
    list.append(item);
    if (none) {
      none.hidden = true;
    }
    if (chart) { // the chart's marks: chart.js redraws them when the attribute changes
      const marks = JSON.parse(chart.dataset.marks || "[]");
      marks.push({ ts: Date.parse(note.ts), text: note.text }); // ms, as chart.js reads them
      chart.dataset.marks = JSON.stringify(marks);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = field.value;
    if (!text.trim()) {
      wrong(form.dataset.empty);
      return;
    }
    say("");
    fetch(form.dataset.api, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
      body: JSON.stringify({ text: text }),
    }).then((answer) => {
      if (answer.status === 401) {
        expired();
        return null;
      }
      if (!answer.ok) { // the field's text stays, to send again
        if (answer.status === 422) {
          wrong(form.dataset.failed);
        } else {
          say(form.dataset.failed);
        }
        return null;
      }
      return answer.json().then((note) => {
        shown(note);
        field.value = "";
        if (store) {
          store.removeItem(key);
        }
        right();
        say(form.dataset.sent);
        field.focus();
      });
    }).catch(() => {
      say(form.dataset.failed);
    });
  });
})();

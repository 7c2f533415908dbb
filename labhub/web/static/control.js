// A kit's control panel with JavaScript: each control sends its command to the JSON API
// (the panel's forms still work without this file), shows "sending…", then the state read
// back; a refused command's reason in the person's language (words from data- attributes,
// translated on the server). The outputs are read back every second while the page is in
// view. STOP ALL never waits for another control: its request goes out at once.
"use strict";

(function controlPanel() {
  const root = document.getElementById("control");
  if (!root) {
    return;
  }
  const words = root.dataset;
  const said = document.getElementById("said");
  const linkState = document.getElementById("link-state");
  const outputs = new Map();
  root.querySelectorAll(".output").forEach((item) => {
    outputs.set(item.dataset.pin, {
      item: item,
      kind: item.dataset.kind,
      state: item.querySelector("[data-readback]"),
      form: item.querySelector("form.drive"),
      error: item.querySelector(".error"),
      toggle: item.querySelector("button.toggle"),
      range: item.querySelector("input[type=range]"),
      busy: 0,
      flying: false, // a command of this output is on its way
      next: null, // the latest one asked for meanwhile
    });
  });
  if (outputs.size === 0) {
    return;
  }

  function shown(kind, value) {
    if (value === undefined || value === null) {
      return words.unknown;
    }
    if (kind === "digital") {
      return value ? words.on : words.off;
    }
    return kind === "pwm" ? Math.round(value * 100) + " %" : Math.round(value) + "°";
  }

  function valueText(range) {
    range.setAttribute("aria-valuetext",
      range.value + (range.dataset.unit === "%" ? " %" : "°"));
  }

  function show(read, force) {
    outputs.forEach((out, pin) => {
      const value = read[pin];
      out.state.textContent = shown(out.kind, value);
      if (value === undefined || (out.busy > 0 && !force)) {
        return;
      }
      if (out.toggle) {
        out.toggle.setAttribute("aria-pressed", value ? "true" : "false");
        out.toggle.value = value ? "0" : "1";
        out.toggle.querySelector(".icon").textContent = value ? "●" : "○";
      }
      if (out.range && (force || document.activeElement !== out.range)) {
        out.range.value = String(Math.round(out.kind === "pwm" ? value * 100 : value));
        valueText(out.range);
      }
    });
  }

  function connected(yes) {
    const mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = yes ? "● " : "○ ";
    linkState.replaceChildren(mark, yes ? words.connected : words.offline);
  }

  // The words for a refusal: by the API's status, never its English detail alone.
  function reason(answer) {
    if (answer === null) {
      return words.reasonNetwork;
    }
    if (answer.status === 409 && answer.headers.get("Retry-After")) {
      return words.reasonBusy.replace("{seconds}", answer.headers.get("Retry-After"));
    }
    // data-reason-403 and the like: a dataset key keeps the dash before a digit.
    return root.getAttribute("data-reason-" + answer.status)
      || root.getAttribute("data-reason-503");
  }

  let reading = false;
  async function readBack(force) {
    if (reading && !force) {
      return;
    }
    reading = true;
    try {
      const answer = await fetch(words.outputs, { credentials: "same-origin",
        headers: { Accept: "application/json" } });
      if (answer.ok) {
        // The values the hub last sent; whether the kit is still there, a command tells.
        show(await answer.json(), force);
      } else if (answer.status === 409) {
        show({}, false);
        connected(false);
      }
    } catch (error) {
      // The network is down: the next round tries again.
    } finally {
      reading = false;
    }
  }

  async function send(body, out) {
    const errorOf = out ? out.error : null;
    if (out) {
      out.busy += 1;
      errorOf.hidden = true;
      errorOf.textContent = "";
      if (out.range) {
        out.range.removeAttribute("aria-invalid");
      }
    }
    said.textContent = words.sending;
    let answer = null;
    try {
      answer = await fetch(words.commands, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json",
          "X-CSRF-Token": words.csrf },
        body: JSON.stringify(body),
      });
    } catch (error) {
      answer = null;
    }
    if (out) {
      out.busy -= 1;
    }
    if (answer !== null && answer.ok) {
      const done = await answer.json();
      show(done.outputs, body.command === "stop_all");
      connected(true);
      said.textContent = body.command === "stop_all" ? words.stopped : words.sent;
      return;
    }
    const why = reason(answer);
    said.textContent = why;
    if (answer !== null && answer.status === 409) {
      connected(false);
    }
    if (errorOf) {
      errorOf.textContent = why;
      errorOf.hidden = false;
    }
    readBack(true);
  }

  // One command of an output at a time, the latest value winning: requests sent at once
  // (three arrow keys) could reach the kit in any order and leave it at an older value.
  // STOP ALL never waits; it drops what was waiting, and if a command was on its way when
  // it was pressed, it is sent again once that command is answered, so nothing sent before
  // it can land after it.
  let stops = 0;
  async function inOrder(body, out) {
    if (out.flying) {
      out.next = body;
      return;
    }
    out.flying = true;
    const before = stops;
    try {
      await send(body, out);
    } finally {
      out.flying = false;
    }
    if (stops !== before) {
      send({ command: "stop_all" }, null);
      return;
    }
    const next = out.next;
    out.next = null;
    if (next) {
      inOrder(next, out);
    }
  }

  outputs.forEach((out, pin) => {
    if (!out.form) {
      return;
    }
    const command = out.form.dataset.command;
    out.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (out.toggle) {
        inOrder({ command: command, pin: Number(pin), value: Number(out.toggle.value) }, out);
      } else {
        const value = Number(out.range.value);
        inOrder({ command: command, pin: Number(pin),
          value: command === "pwm" ? value / 100 : value }, out);
      }
    });
    if (out.range) {
      out.form.querySelectorAll("button.send").forEach((button) => { button.hidden = true; });
      out.range.addEventListener("input", () => valueText(out.range));
      // Sent when let go (a mouse, a finger) or at each arrow key: not at every step.
      out.range.addEventListener("change", () => out.form.requestSubmit());
    }
  });

  const stopForm = document.getElementById("stop-all-form");
  if (stopForm) {
    stopForm.addEventListener("submit", (event) => {
      event.preventDefault();
      stops += 1;
      outputs.forEach((out) => { out.next = null; });
      send({ command: "stop_all" }, null);
    });
  }

  const every = Number(words.pollMs) || 1000;
  let timer = null;
  function watch() {
    if (document.visibilityState === "visible" && timer === null) {
      readBack(false);
      timer = window.setInterval(() => readBack(false), every);
    } else if (document.visibilityState !== "visible" && timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
  }
  document.addEventListener("visibilitychange", watch);
  watch();
})();

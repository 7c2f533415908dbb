// The Live panel: values, sparklines and devices' states, updated from the hub's stream
// of Server-Sent Events (/live/events). The page shows the values without this script;
// this keeps them current. Words come from the panel's data- attributes (translated on
// the hub); numbers and times are written with Intl in the page's language.
//
// Screen readers: values change every second, so they are not in a live region (a
// reader would never stop talking); a person reads them when they choose. The one live
// region (role=status) says what a person must not miss: a device that goes offline or
// comes back, and the connection to the hub lost or back.
"use strict";

(function live() {
  const SPARK_POINTS = 30; // as many as the hub draws at first (labhub/web/live.py)
  const WIDTH = 100;
  const HEIGHT = 24;
  const AGO_EVERY_MS = 5000;
  const root = document.getElementById("live");
  if (!root || !root.dataset.events) {
    return;
  }
  const lang = document.documentElement.lang || "es";
  const still = window.matchMedia("(prefers-reduced-motion: reduce)");
  const numbers = new Map(); // digits -> Intl.NumberFormat
  const relative = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  let channels = new Map(); // "device\nchannel" -> {el, values}
  let devices = new Map(); // device id -> li
  let source = null;
  let lastId = root.dataset.since;
  let lost = false;
  let refetching = null;

  function format(value, digits) {
    let found = numbers.get(digits);
    if (!found) {
      found = new Intl.NumberFormat(lang, {
        minimumFractionDigits: digits, maximumFractionDigits: digits,
      });
      numbers.set(digits, found);
    }
    return found.format(value);
  }

  function index() {
    channels = new Map();
    devices = new Map();
    for (const li of root.querySelectorAll("li[data-device]")) {
      devices.set(li.dataset.device, li);
      for (const el of li.querySelectorAll(".channel")) {
        const values = (el.dataset.points || "").split(" ").filter((v) => v !== "")
          .map(Number);
        channels.set(li.dataset.device + "\n" + el.dataset.channel, { el, values });
      }
    }
  }

  function draw(entry) {
    const line = entry.el.querySelector("polyline");
    const values = entry.values;
    if (!line || values.length === 0) {
      return;
    }
    const low = Math.min(...values);
    const high = Math.max(...values);
    const span = high - low || 1;
    const shown = values.length > 1 ? values : [values[0], values[0]];
    const step = WIDTH / (shown.length - 1);
    const pad = 2;
    const points = shown.map((v, i) => {
      const y = high === low ? HEIGHT / 2 : HEIGHT - pad - ((v - low) / span) * (HEIGHT - 2 * pad);
      return (i * step).toFixed(1) + "," + y.toFixed(1);
    });
    line.setAttribute("points", points.join(" "));
  }

  function ago(el) {
    const at = Number(el.getAttribute("datetime"));
    if (!at) {
      return;
    }
    const seconds = Math.round((at / 1000 - Date.now()) / 1000);
    const abs = Math.abs(seconds);
    if (abs < 60) {
      el.textContent = relative.format(seconds, "second");
    } else if (abs < 3600) {
      el.textContent = relative.format(Math.round(seconds / 60), "minute");
    } else if (abs < 86400) {
      el.textContent = relative.format(Math.round(seconds / 3600), "hour");
    } else {
      el.textContent = relative.format(Math.round(seconds / 86400), "day");
    }
  }

  function say(text) {
    const note = root.querySelector(".live-note");
    if (note) {
      note.textContent = text;
    }
  }

  function readings(rows) {
    let unknown = false;
    const touched = new Set();
    const seen = new Map();
    for (const [device, channel, value, , ts] of rows) {
      const entry = channels.get(device + "\n" + channel);
      if (!entry) {
        unknown = true;
        continue;
      }
      entry.values.push(value);
      if (entry.values.length > SPARK_POINTS) {
        entry.values.splice(0, entry.values.length - SPARK_POINTS);
      }
      entry.last = value;
      touched.add(entry);
      if (!seen.has(device) || seen.get(device) < ts) {
        seen.set(device, ts);
      }
    }
    for (const entry of touched) {
      const number = entry.el.querySelector(".number");
      number.textContent = format(entry.last, Number(entry.el.dataset.digits || 1));
      entry.el.dataset.points = entry.values.join(" ");
      draw(entry);
      if (!still.matches) {
        entry.el.classList.remove("fresh");
        void entry.el.offsetWidth; // restart the highlight
        entry.el.classList.add("fresh");
      }
    }
    for (const [device, ts] of seen) {
      const li = devices.get(device);
      const time = li && li.querySelector("time.ago");
      if (time && Number(time.getAttribute("datetime") || 0) < ts) {
        time.setAttribute("datetime", String(ts));
        ago(time);
      }
    }
    if (unknown) {
      refetch(); // a new device or channel: the hub draws it
    }
  }

  function status(change) {
    const li = devices.get(change.device);
    if (!li) {
      refetch();
      return;
    }
    li.classList.toggle("online", change.online);
    li.classList.toggle("offline", !change.online);
    li.classList.remove("unknown");
    const icon = li.querySelector(".state");
    if (icon) {
      icon.textContent = change.online ? "●" : "○";
    }
    const words = li.querySelector(".status");
    if (words) {
      words.textContent = change.online ? root.dataset.online : root.dataset.offline;
    }
    const text = change.online ? root.dataset.cameOnline : root.dataset.wentOffline;
    say(text.replace("{name}", li.dataset.name || change.device));
  }

  function refetch() {
    if (refetching) {
      return refetching;
    }
    refetching = fetch(root.dataset.panel, { credentials: "same-origin" })
      .then((answer) => (answer.ok ? answer.text() : Promise.reject(answer.status)))
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html")
          .querySelector(".live-list");
        const list = root.querySelector(".live-list");
        if (fresh && list) {
          list.replaceWith(document.adoptNode(fresh));
          index();
          for (const time of root.querySelectorAll("time.ago")) {
            ago(time);
          }
        }
      })
      .catch(() => {})
      .finally(() => {
        refetching = null;
      });
    return refetching;
  }

  function open() {
    const url = new URL(root.dataset.events, window.location.href);
    if (lastId) {
      url.searchParams.set("since", lastId);
    }
    source = new EventSource(url.toString());
    const remember = (event) => {
      if (event.lastEventId) {
        lastId = event.lastEventId;
      }
    };
    source.addEventListener("readings", (event) => {
      remember(event);
      readings(JSON.parse(event.data));
    });
    source.addEventListener("status", (event) => {
      remember(event);
      status(JSON.parse(event.data));
    });
    source.addEventListener("reset", (event) => {
      remember(event);
      refetch();
    });
    source.addEventListener("open", () => {
      root.dataset.connected = "true";
      if (lost) {
        lost = false;
        say(root.dataset.back);
      }
    });
    source.addEventListener("error", () => {
      root.dataset.connected = "false";
      if (!lost) {
        lost = true;
        say(root.dataset.lost);
      }
      if (source.readyState === EventSource.CLOSED) {
        // The hub refused or went away for good: start again after a while, from the
        // last event this page has.
        source = null;
        window.setTimeout(() => {
          if (!source && navigator.onLine) {
            open();
          }
        }, 5000);
      }
    });
  }

  function close() {
    if (source) {
      source.close();
      source = null;
    }
  }

  // A phone that loses the network: stop at once, and start again from the last event
  // when it comes back (the hub sends what was missed, or the current values).
  window.addEventListener("offline", () => {
    close();
    root.dataset.connected = "false";
    lost = true;
    say(root.dataset.lost);
  });
  window.addEventListener("online", () => {
    if (!source) {
      open();
    }
  });
  window.addEventListener("pagehide", close);

  index();
  for (const time of root.querySelectorAll("time.ago")) {
    ago(time);
  }
  window.setInterval(() => {
    for (const time of root.querySelectorAll("time.ago")) {
      ago(time);
    }
  }, AGO_EVERY_MS);
  open();
})();

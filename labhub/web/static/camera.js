// The phone's camera for the scan forms (templates/_scan.html). Where the device has a
// camera and the page may use it (a secure context: https, or the hub on localhost), each
// scan form's camera button shows; it opens the back camera, reads QR codes from the
// picture and hands the first one to the form as if it were typed (LabHubScan.take in
// scan.js: the same outbox, the same answer, the same sound, vibration and words).
// Codes are read by the browser's own BarcodeDetector where it reads QR codes (Chromium on
// Android, macOS, ChromeOS), else by the barcode-detector ponyfill (ZXing-C++ compiled to
// WebAssembly), both files served by the hub from /static/vendor: it works offline.
// A form with data-camera-continuous keeps the camera open for the next label (an audit's
// shelf); else the camera closes after one code.
"use strict";

(function camera() {
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia || !window.LabHubScan) {
    return; // no camera here (or not a secure context): typed and USB scans still work
  }
  const vendor = new URL("vendor/", document.currentScript.src).href;
  const LOOK_EVERY_MS = 150; // ~7 looks a second: quick to read, gentle on an old phone
  const SAME_CODE_MS = 2500; // a label still in view is not scanned again (continuous)
  const FRAME_WIDTH = 960; // pixels a frame is read at: a label across a third of it reads
  let reading = null; // the code reader, made once a page

  function script(src) {
    return new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = src;
      tag.onload = resolve;
      tag.onerror = reject;
      document.head.append(tag);
    });
  }

  async function makeReader() {
    if ("BarcodeDetector" in window) {
      try {
        const formats = await window.BarcodeDetector.getSupportedFormats();
        if (formats.includes("qr_code")) {
          return new window.BarcodeDetector({ formats: ["qr_code"] });
        }
      } catch (_) { /* the browser's own cannot: the ponyfill below */ }
    }
    await script(vendor + "barcode-detector.ponyfill.js");
    const api = window.BarcodeDetectionAPI;
    // The .wasm from the hub, never the library's default CDN: labs work offline.
    await api.prepareZXingModule({
      overrides: { locateFile: (path, prefix) => (path.endsWith(".wasm") ? vendor + path : prefix + path) },
      fireImmediately: true,
    });
    return new api.BarcodeDetector({ formats: ["qr_code"] });
  }

  function reader() {
    reading = reading || makeReader();
    return reading;
  }

  function pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  const open = new WeakMap(); // form -> {stream, stop}

  function close(form) {
    const now = open.get(form);
    if (!now) {
      return;
    }
    open.delete(form);
    now.running = false;
    for (const track of now.stream ? now.stream.getTracks() : []) {
      track.stop();
    }
    const view = form.querySelector(".scan-view");
    view.querySelector("video").srcObject = null;
    view.hidden = true;
    const button = form.querySelector(".scan-camera");
    button.setAttribute("aria-expanded", "false");
    button.focus();
  }

  async function look(form) {
    const view = form.querySelector(".scan-view");
    const video = view.querySelector("video");
    const said = view.querySelector(".scan-view-said");
    const now = { running: true, stream: null };
    open.set(form, now);
    view.hidden = false;
    form.querySelector(".scan-camera").setAttribute("aria-expanded", "true");
    said.textContent = view.dataset.saidLooking;
    try {
      now.stream = await media.getUserMedia({ video: { facingMode: { ideal: "environment" } }, audio: false });
    } catch (_) {
      said.textContent = view.dataset.saidBlocked;
      now.running = false;
      return;
    }
    if (!now.running) { // closed while the browser asked
      now.stream.getTracks().forEach((t) => t.stop());
      return;
    }
    video.srcObject = now.stream;
    let codes;
    try {
      await video.play();
      codes = await reader();
    } catch (_) {
      said.textContent = view.dataset.saidUnsupported;
      reading = null;
      return;
    }
    const canvas = document.createElement("canvas");
    const drawing = canvas.getContext("2d", { willReadFrequently: true });
    let last = "";
    let lastAt = 0;
    while (now.running) {
      if (video.readyState >= 2 && video.videoWidth) {
        const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
        canvas.width = Math.round(video.videoWidth * scale);
        canvas.height = Math.round(video.videoHeight * scale);
        drawing.drawImage(video, 0, 0, canvas.width, canvas.height);
        let found = [];
        try {
          found = await codes.detect(canvas);
        } catch (_) { /* a frame it could not read: the next one */ }
        const code = found.length ? String(found[0].rawValue || "").trim() : "";
        if (code && now.running && (code !== last || Date.now() - lastAt > SAME_CODE_MS)) {
          last = code;
          lastAt = Date.now();
          if (!("cameraContinuous" in form.dataset)) {
            close(form);
          }
          window.LabHubScan.take(form, code);
        }
      }
      await pause(LOOK_EVERY_MS);
    }
  }

  async function hasCamera() {
    try {
      return (await media.enumerateDevices()).some((d) => d.kind === "videoinput");
    } catch (_) {
      return false;
    }
  }

  const forms = Array.from(document.querySelectorAll("form.scan"));
  hasCamera().then((yes) => {
    if (!yes) {
      return;
    }
    for (const form of forms) {
      const button = form.querySelector(".scan-camera");
      const view = form.querySelector(".scan-view");
      if (!button || !view) {
        continue;
      }
      button.hidden = false;
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", () => (open.has(form) ? close(form) : look(form)));
      view.querySelector(".scan-camera-stop").addEventListener("click", () => close(form));
    }
  });
  // A page put away (another tab, the phone locked) lets go of the camera.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      forms.forEach(close);
    }
  });
})();

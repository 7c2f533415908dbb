// The phone's camera for the scan forms (templates/_scan.html). Where the device has a
// camera and the page may use it (a secure context: https, or the hub on localhost), each
// scan form's camera button shows; it opens the back camera, reads QR codes from the
// picture and hands the first one to the form as if it were typed (LabHubScan.take in
// scan.js: the same outbox, the same answer, the same sound, vibration and words).
// Codes are read by the browser's own BarcodeDetector where it reads QR codes (Chromium on
// Android, macOS, ChromeOS), else by the barcode-detector ponyfill (ZXing-C++ compiled to
// WebAssembly), both files served by the hub from /static/vendor: it works offline.
// A form with data-camera-continuous keeps the camera open for the next label (an audit's
// shelf); else the camera closes after one code. Outside a scan form, a ".scan-host"
// (a kit's board field) gets the code in its input[data-camera-field], and its form is
// sent with its button[data-camera-submit], as if typed and Enter pressed.
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

  const open = new Map(); // host -> {running, stream}: the cameras open now
  const looking = open.keys.bind(open);

  // A code read: a scan of the scan form, or typed into the host's field and sent.
  function deliver(host, code) {
    if (host.matches("form.scan")) {
      window.LabHubScan.take(host, code);
      return;
    }
    const field = host.querySelector("input[data-camera-field]");
    field.value = code;
    field.form.requestSubmit(host.querySelector("button[data-camera-submit]"));
  }

  function close(host) {
    const now = open.get(host);
    if (!now) {
      return;
    }
    open.delete(host);
    now.running = false;
    for (const track of now.stream ? now.stream.getTracks() : []) {
      track.stop();
    }
    const view = host.querySelector(".scan-view");
    view.querySelector("video").srcObject = null;
    view.hidden = true;
    const button = host.querySelector(".scan-camera");
    button.setAttribute("aria-expanded", "false");
    if (host.isConnected) {
      button.focus();
    }
  }

  async function look(host) {
    const view = host.querySelector(".scan-view");
    const video = view.querySelector("video");
    const said = view.querySelector(".scan-view-said");
    const now = { running: true, stream: null };
    open.set(host, now);
    view.hidden = false;
    host.querySelector(".scan-camera").setAttribute("aria-expanded", "true");
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
      now.running = false;
      now.stream.getTracks().forEach((t) => t.stop());
      video.srcObject = null;
      return;
    }
    const canvas = document.createElement("canvas");
    const drawing = canvas.getContext("2d", { willReadFrequently: true });
    let last = "";
    let lastAt = 0;
    while (now.running) {
      if (!host.isConnected) { // a scan's answer replaced it
        close(host);
        break;
      }
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
          if (!("cameraContinuous" in host.dataset)) {
            close(host);
          }
          deliver(host, code);
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

  // The buttons show once the device is known to have a camera, in the page as drawn and
  // in what a scan's answer puts in it later; clicks are taken wherever they are.
  let haveCamera = false;
  function show(root) {
    if (!haveCamera) {
      return;
    }
    for (const button of root.querySelectorAll(".scan-camera[hidden]")) {
      button.hidden = false;
      button.setAttribute("aria-expanded", "false");
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".scan-camera, .scan-camera-stop");
    const host = button && button.closest("form.scan, .scan-host");
    if (!host) {
      return;
    }
    if (button.classList.contains("scan-camera-stop") || open.has(host)) {
      close(host);
    } else {
      look(host);
    }
  });
  hasCamera().then((yes) => {
    haveCamera = yes;
    show(document);
    if (yes) {
      new MutationObserver(() => show(document)).observe(document.body, { childList: true, subtree: true });
    }
  });
  // A page put away (another tab, the phone locked) lets go of the camera.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      Array.from(looking()).forEach(close);
    }
  });
})();

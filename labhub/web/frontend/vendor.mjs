// Copies the browser files of the pinned packages (package-lock.json) into
// labhub/web/static/vendor, which the hub serves at /static/vendor and the wheel ships.
// Run after `npm ci` (the Makefile does both). No network, no other dependency.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const out = join(here, "..", "static", "vendor");

// [from under node_modules, to under vendor]
const FILES = [
  ["htmx.org/dist/htmx.min.js", "htmx.min.js"],
  ["htmx.org/LICENSE", "htmx.LICENSE.txt"],
  ["uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["uplot/LICENSE", "uPlot.LICENSE.txt"],
  // The camera's QR reader where Chromium has no BarcodeDetector of its own: the
  // ponyfill's glue and ZXing-C++'s WebAssembly (static/camera.js points it here).
  ["barcode-detector/dist/iife/ponyfill.js", "barcode-detector.ponyfill.js"],
  ["barcode-detector/LICENSE", "barcode-detector.LICENSE.txt"],
  ["zxing-wasm/dist/reader/zxing_reader.wasm", "zxing_reader.wasm"],
  ["zxing-wasm/LICENSE", "zxing-wasm.LICENSE.txt"],
];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [from, to] of FILES) {
  copyFileSync(join(modules, from), join(out, to));
}
console.log(`vendor: ${FILES.length} files in ${out}`);

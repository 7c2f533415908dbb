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
];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [from, to] of FILES) {
  copyFileSync(join(modules, from), join(out, to));
}
console.log(`vendor: ${FILES.length} files in ${out}`);

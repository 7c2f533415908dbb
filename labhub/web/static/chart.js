/* LabHub's chart: uPlot drawn over a <figure class="chart" data-chart ...> that the hub
   rendered with a summary and a table of the data (docs/web.md, "Charts", lists the
   data- attributes). It fetches the API's downsampled buckets for the range shown (as many
   as the plot is pixels wide, at most 500), the suspect readings to mark, and fetches new
   ones on every zoom (drag or button) and pan. Times in the lab's zone (data-zone),
   numbers in the page's language (data-lang). One job, no inline styles: uPlot sets its
   sizes through the CSSOM, which the pages' policy allows. */
(function () {
  "use strict";

  // Colours with at least 3:1 contrast on white, each with its own dash: a series is
  // told apart without colour too.
  const LOOKS = [
    ["#0b5cad", []], ["#a4161a", [10, 5]], ["#1b6e3a", [2, 4]],
    ["#6a3d9a", [12, 4, 2, 4]], ["#8a4b00", [6, 3]], ["#00616b", [1, 3]],
  ];
  const BUCKETS_MAX = 500;
  const RAW_PAGE = 1000; // the API's page_limit_max by default
  const ZOOM_MIN_MS = 60 * 1000; // a minute: below it, buckets hold a reading or two

  function json(text, fallback) {
    try { return JSON.parse(text); } catch (e) { return fallback; }
  }

  function iso(ms) { return new Date(ms).toISOString(); }

  // uPlot's date templates ({YYYY}, {MMM}, {D}, {HH}:{mm}...) as Intl in the page's
  // language; the Date uPlot passes is already shifted to the lab's zone (tzDate).
  function dateFormatter(lang) {
    const cache = new Map();
    function line(tpl) {
      const opts = {};
      if (/\{YY/.test(tpl)) opts.year = "numeric";
      if (/\{MMMM\}/.test(tpl)) opts.month = "long";
      else if (/\{MMM\}/.test(tpl)) opts.month = "short";
      else if (/\{MM?\}/.test(tpl)) opts.month = "numeric";
      if (/\{DD?\}/.test(tpl)) opts.day = "numeric";
      if (/\{WWW/.test(tpl)) opts.weekday = "short";
      if (/\{[Hh]{1,2}\}/.test(tpl)) { opts.hour = "2-digit"; opts.hourCycle = "h23"; }
      if (/\{mm\}/.test(tpl)) opts.minute = "2-digit";
      if (/\{ss\}/.test(tpl)) opts.second = "2-digit";
      return new Intl.DateTimeFormat(lang, opts);
    }
    return function (tpl) {
      if (!cache.has(tpl)) cache.set(tpl, tpl.split("\n").map(line));
      const parts = cache.get(tpl);
      return (date) => parts.map((f) => f.format(date)).join("\n");
    };
  }

  function mount(figure) {
    if (figure.dataset.mounted || typeof uPlot === "undefined") return;
    figure.dataset.mounted = "true";
    const d = figure.dataset;
    const series = json(d.series, []);
    let marks = json(d.marks, []);
    const lang = d.lang || document.documentElement.lang || "es";
    const zone = d.zone || "UTC";
    const raw = d.raw === "true";
    const plotBox = figure.querySelector(".chart-plot");
    const status = figure.querySelector(".chart-status");
    const controls = figure.querySelector(".chart-controls");
    const numbers = new Intl.NumberFormat(lang, {maximumFractionDigits: 2});
    const when = new Intl.DateTimeFormat(lang, {timeZone: zone, dateStyle: "medium",
                                                 timeStyle: "short"});
    const headers = {"X-CSRF-Token": d.csrf || ""};
    const units = [...new Set(series.map((s) => s.unit))];
    const whole = [Number(d.start), Number(d.end)];
    // Every suspect reading of the whole range, when the page holds them all (else null).
    const known = d.suspectMarks ? json(d.suspectMarks, null) : null;
    let range = whole.slice();
    let plot = null;
    let asked = 0; // the newest load; an older answer that arrives late is dropped
    let drawn = 0;
    let suspect = []; // per series, [[seconds, value], ...] of the range drawn
    // A page that adds a note (runs.js) changes data-marks: draw the marks again.
    new MutationObserver(() => {
      marks = json(d.marks, []);
      if (plot) plot.redraw(false);
    }).observe(figure, {attributes: true, attributeFilter: ["data-marks"]});
    let loading = null; // {began, points} until the load's first draw

    if (!series.length || !plotBox) return;
    if (controls) controls.hidden = false;
    plotBox.setAttribute("role", "img");
    plotBox.setAttribute("aria-label", d.wordChart || "");
    const legend = document.createElement("ul");
    legend.className = "chart-legend";
    series.forEach((s, i) => legend.appendChild(legendItem(s, LOOKS[i % LOOKS.length])));
    plotBox.after(legend);

    function legendItem(s, look) {
      const li = document.createElement("li");
      const svgNS = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(svgNS, "svg");
      svg.setAttribute("width", "32"); svg.setAttribute("height", "10");
      svg.setAttribute("aria-hidden", "true");
      const path = document.createElementNS(svgNS, "line");
      path.setAttribute("x1", "0"); path.setAttribute("y1", "5");
      path.setAttribute("x2", "32"); path.setAttribute("y2", "5");
      path.setAttribute("stroke", look[0]); path.setAttribute("stroke-width", "3");
      if (look[1].length) path.setAttribute("stroke-dasharray", look[1].join(" "));
      svg.appendChild(path);
      li.appendChild(svg);
      li.appendChild(document.createTextNode(s.label + (s.unit ? " (" + s.unit + ")" : "")));
      return li;
    }

    function size() {
      const width = Math.max(240, plotBox.clientWidth || 600);
      return {width, height: Math.round(Math.min(360, Math.max(220, width * 0.45)))};
    }

    async function get(url) {
      const answer = await fetch(url, {credentials: "same-origin", headers});
      if (!answer.ok) throw new Error(url + ": " + answer.status);
      return answer.json();
    }

    function query(s, start, end) {
      return "device=" + encodeURIComponent(s.device) + "&channel=" +
        encodeURIComponent(s.channel) + "&start=" + iso(start) + "&end=" + iso(end);
    }

    function suspectOf(s, i, start, end) {
      if (known && start >= whole[0] && end <= whole[1]) {
        return {marks: known[i].filter((m) => m[0] >= start && m[0] < end)};
      }
      return get(d.suspectUrl + "?" + query(s, start, end));
    }

    async function fetchBuckets(s, i, start, end, buckets) {
      const [range, suspect] = await Promise.all([
        get(d.api + "/readings?" + query(s, start, end) + "&buckets=" + buckets),
        suspectOf(s, i, start, end),
      ]);
      return {
        points: range.buckets.map((b) => {
          const t0 = Date.parse(b.start), t1 = Date.parse(b.end);
          return [(t0 + t1) / 2000, b.mean, b.min, b.max];
        }),
        suspect: suspect.marks.map((m) => [m[0] / 1000, m[1]]),
      };
    }

    async function fetchRaw(s, start, end) {
      const points = [], suspect = [];
      for (let offset = 0; ; offset += RAW_PAGE) {
        const page = await get(d.api + "/readings?" + query(s, start, end) +
                               "&limit=" + RAW_PAGE + "&offset=" + offset);
        for (const p of page.points) {
          const t = Date.parse(p.ts) / 1000;
          points.push([t, p.value, null, null]);
          if (p.suspect) suspect.push([t, p.value]);
        }
        if (page.points.length < RAW_PAGE) break;
      }
      return {points, suspect};
    }

    // One x array for every series (the buckets of a range share their grid), a value
    // array per series and, for buckets, the lowest and highest as a band.
    function align(results) {
      const xs = [...new Set(results.flatMap((r) => r.points.map((p) => p[0])))];
      xs.sort((a, b) => a - b);
      const at = new Map(xs.map((x, i) => [x, i]));
      const data = [xs];
      results.forEach((r) => {
        const mean = new Array(xs.length).fill(null);
        const low = new Array(xs.length).fill(null);
        const high = new Array(xs.length).fill(null);
        r.points.forEach((p) => { const i = at.get(p[0]); mean[i] = p[1]; low[i] = p[2]; high[i] = p[3]; });
        data.push(mean);
        if (!raw) data.push(low, high);
      });
      return data;
    }

    function options(results) {
      const {width, height} = size();
      const step = raw ? 1 : 3;
      const opts = {
        width, height,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), zone),
        fmtDate: dateFormatter(lang),
        legend: {show: false},
        cursor: {drag: {x: true, y: false, setScale: false}},
        scales: {x: {time: true, min: range[0] / 1000, max: range[1] / 1000}},
        series: [{}],
        bands: [],
        axes: [{}],
        hooks: {draw: [drawMarks], setSelect: [selected]},
      };
      units.forEach((unit, i) => {
        const key = "u" + i;
        opts.scales[key] = {auto: true};
        opts.axes.push({scale: key, side: i === 0 ? 3 : 1, label: unit || undefined,
                        grid: {show: i === 0}, size: 60,
                        values: (u, splits) => splits.map((v) => numbers.format(v))});
      });
      series.forEach((s, i) => {
        const look = LOOKS[i % LOOKS.length];
        const scale = "u" + units.indexOf(s.unit);
        opts.series.push({label: s.label, scale, stroke: look[0], dash: look[1], width: 2,
                          spanGaps: false, points: {show: false}});
        if (!raw) {
          const base = 1 + i * step;
          opts.series.push({label: s.label + " min", scale, stroke: look[0] + "55", width: 1,
                            points: {show: false}});
          opts.series.push({label: s.label + " max", scale, stroke: look[0] + "55", width: 1,
                            points: {show: false}});
          opts.bands.push({series: [base + 2, base + 1], fill: look[0] + "22"});
        }
      });
      opts.suspect = results.map((r) => r.suspect);
      return opts;
    }

    // Suspect readings as triangles (a shape, not only a colour); a run's notes as
    // numbered dashed lines.
    function drawMarks(u) {
      const ctx = u.ctx;
      const ratio = devicePixelRatio || 1;
      const top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      suspect.forEach((list, i) => {
        const scale = "u" + units.indexOf(series[i].unit);
        const r = 6 * ratio;
        ctx.fillStyle = "#a4161a";
        ctx.strokeStyle = "#1d2329";
        ctx.lineWidth = ratio;
        list.forEach(([t, v]) => {
          const x = u.valToPos(t, "x", true), y = u.valToPos(v, scale, true);
          ctx.beginPath();
          ctx.moveTo(x, y - r); ctx.lineTo(x + r, y + r * 0.8); ctx.lineTo(x - r, y + r * 0.8);
          ctx.closePath(); ctx.fill(); ctx.stroke();
        });
      });
      ctx.setLineDash([4 * ratio, 4 * ratio]);
      ctx.strokeStyle = "#4f5b66";
      ctx.fillStyle = "#1d2329";
      ctx.font = (12 * ratio) + "px system-ui, sans-serif";
      marks.forEach((m, i) => {
        const x = u.valToPos(m.ts / 1000, "x", true);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
        ctx.fillText(String(i + 1), x + 3 * ratio, top + 14 * ratio);
      });
      ctx.restore();
      finished();
    }

    function selected(u) {
      if (u.select.width < 5) return;
      const start = u.posToVal(u.select.left, "x") * 1000;
      const end = u.posToVal(u.select.left + u.select.width, "x") * 1000;
      u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
      load(start, end);
    }

    async function load(start, end) {
      if (end - start < ZOOM_MIN_MS) {
        const middle = (start + end) / 2;
        start = middle - ZOOM_MIN_MS / 2; end = middle + ZOOM_MIN_MS / 2;
      }
      range = [Math.round(start), Math.round(end)];
      const mine = ++asked;
      const began = performance.now();
      figure.setAttribute("aria-busy", "true");
      status.textContent = d.wordLoading || "";
      const buckets = Math.max(10, Math.min(BUCKETS_MAX, Math.round(size().width)));
      let results;
      try {
        results = await Promise.all(series.map((s, i) => raw
          ? fetchRaw(s, range[0], range[1]) : fetchBuckets(s, i, range[0], range[1], buckets)));
      } catch (e) {
        if (mine === asked) {
          status.textContent = d.wordFailed || "";
          figure.removeAttribute("aria-busy");
        }
        return;
      }
      if (mine !== asked) return;
      figure.dataset.fetchedMs = (performance.now() - began).toFixed(1);
      const opts = options(results);
      const data = align(results);
      suspect = opts.suspect;
      loading = {began, points: data[0].length};
      if (plot) plot.destroy();
      plot = new uPlot(opts, data, plotBox);
    }

    // After uPlot's first draw of a load: the time from asking to drawn, for the
    // benchmark (data-drawn-ms) and the tests (data-drawn counts the draws).
    function finished() {
      if (loading === null) return;
      drawn += 1;
      figure.dataset.drawnMs = (performance.now() - loading.began).toFixed(1);
      figure.dataset.points = String(loading.points);
      figure.dataset.suspect = String(suspect.reduce((n, l) => n + l.length, 0));
      figure.dataset.drawn = String(drawn);
      loading = null;
      figure.removeAttribute("aria-busy");
      status.textContent = (d.wordShowing || "%(start)s – %(end)s")
        .replace("%(start)s", when.format(range[0])).replace("%(end)s", when.format(range[1]));
      if (d.link === "true" && drawn > 1) keepInAddress();
    }

    // data-link: the page's address (and its form) follow a zoom or pan, so the chart
    // shown stays a link (minutes in the lab's zone, as the form's fields take them).
    const fieldTime = new Intl.DateTimeFormat("sv-SE", {timeZone: zone, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    function keepInAddress() {
      const local = (ms) => fieldTime.format(ms).replace(" ", "T");
      const address = new URL(location.href);
      address.searchParams.set("range", "custom");
      address.searchParams.set("start", local(range[0]));
      address.searchParams.set("end", local(range[1]));
      history.replaceState(null, "", address);
      const form = document.querySelector("form.chart-form");
      if (!form) return;
      const custom = form.querySelector("input[name=range][value=custom]");
      if (custom) custom.checked = true;
      if (form.elements.start) form.elements.start.value = local(range[0]);
      if (form.elements.end) form.elements.end.value = local(range[1]);
    }

    if (controls) {
      controls.addEventListener("click", (event) => {
        const act = event.target.closest("button[data-act]");
        if (!act) return;
        const span = range[1] - range[0], middle = (range[0] + range[1]) / 2;
        const moves = {
          in: [middle - span / 4, middle + span / 4],
          out: [middle - span, middle + span],
          earlier: [range[0] - span / 2, range[1] - span / 2],
          later: [range[0] + span / 2, range[1] + span / 2],
          reset: whole,
        };
        const next = moves[act.dataset.act];
        if (next) load(next[0], next[1]);
      });
    }

    let pending = false;
    window.addEventListener("resize", () => {
      if (pending || !plot) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; plot.setSize(size()); });
    });

    load(range[0], range[1]);
  }

  function mountAll() {
    document.querySelectorAll("figure.chart[data-chart]").forEach(mount);
  }

  window.LabHubChart = {mount};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();

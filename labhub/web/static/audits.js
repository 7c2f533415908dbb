// An audit's scan session: the audit is not finished while scans wait in this device's
// outbox (scan.js keeps them until the hub answers); they would be refused after it.
"use strict";

document.addEventListener("submit", (event) => {
  const finish = event.target.closest("form.audit-finish");
  const scans = document.querySelector("form.scan[data-scan-outbox]");
  if (!finish || !scans || !window.LabHubScan) {
    return;
  }
  const waiting = window.LabHubScan.outboxOf(scans).length;
  finish.querySelector(".finish-waiting").hidden = waiting === 0;
  if (waiting) {
    event.preventDefault();
    window.LabHubScan.flush(scans);
  }
});

// The settings page's calibration forms: show only the fields of the calibration chosen
// (without this script every field shows, and the hub reads only the chosen ones).
"use strict";

function showChosen(form) {
  const chosen = form.querySelector("select[name=cal]");
  if (!chosen) return;
  for (const set of form.querySelectorAll("fieldset.cal")) {
    set.hidden = set.dataset.cal !== chosen.value;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.channel-form")) {
    showChosen(form);
    form.addEventListener("change", (event) => {
      if (event.target.name === "cal") showChosen(form);
    });
  }
});

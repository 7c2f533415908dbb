// The import page: a file over the hub's limit is refused here, in words beside the field,
// before it travels (the hub refuses it too). Nothing else: the form works without this.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("file");
  if (!field) return;
  const form = field.form;
  const max = Number(field.dataset.maxBytes);
  form.addEventListener("submit", (event) => {
    const file = field.files && field.files[0];
    const old = document.getElementById("file-error");
    if (!file || !max || file.size <= max) return;
    event.preventDefault();
    const said = old || document.createElement("p");
    said.className = "error";
    said.id = "file-error";
    said.textContent = field.dataset.wordTooLarge;
    if (!old) field.after(said);
    field.setAttribute("aria-invalid", "true");
    const described = (field.getAttribute("aria-describedby") || "").split(" ");
    if (!described.includes("file-error")) {
      field.setAttribute("aria-describedby", [...described, "file-error"].join(" ").trim());
    }
    field.focus();
  });
});

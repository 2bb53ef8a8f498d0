// Forms: labelled fields and the API's field errors shown next to the fields they name.

import { h } from "./dom.js";

let seq = 0;

/** A labelled field; returns {row, input}. `control` is an input/select/textarea element. */
export function field(label, control, hint) {
  seq += 1;
  control.id = control.id || `f${seq}`;
  const error = h("p.field-error", { id: `${control.id}-error`, hidden: true });
  const described = [hint ? `${control.id}-hint` : null, error.id].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  const row = h("div.field",
    h("label", { for: control.id }, label),
    control,
    hint ? h("p.hint", { id: `${control.id}-hint` }, hint) : null,
    error);
  row.dataset.fieldError = error.id;
  return { row, input: control, error };
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error, .form-error")) {
    el.hidden = true;
    el.textContent = "";
  }
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/**
 * Show an ApiError: each {field, message} next to the element `fields[field]` returns
 * (exact name, else the longest known prefix), the rest in the form's summary.
 */
export function showErrors(form, err, fields) {
  clearErrors(form);
  const summary = form.querySelector(".form-error");
  const loose = [];
  for (const { field: name, message } of err.errors || []) {
    let target = fields[name];
    if (!target) {
      const prefix = Object.keys(fields)
        .filter((k) => name.startsWith(`${k}.`))
        .sort((a, b) => b.length - a.length)[0];
      target = prefix ? fields[prefix] : null;
    }
    if (target) {
      const error = target.error;
      error.hidden = false;
      error.textContent = error.textContent ? `${error.textContent}; ${message}` : message;
      target.input.setAttribute("aria-invalid", "true");
    } else {
      loose.push(`${name}: ${message}`);
    }
  }
  if (summary) {
    const text = loose.length ? loose.join("; ") : !(err.errors || []).length ? err.message : "";
    summary.hidden = !text;
    summary.textContent = text ? `${err.problem?.title ? `${err.problem.title}: ` : ""}${text}` : "";
  }
  const first = form.querySelector("[aria-invalid]");
  if (first) first.focus();
  else if (summary && !summary.hidden) summary.focus();
}

export function formError() {
  return h("p.form-error", { role: "alert", tabindex: -1, hidden: true });
}

// The UI's own confirmation dialog: a modal <dialog> in the page's style, keyboard-accessible
// (focus starts on the safe choice, Escape declines), instead of the browser's confirm box.

import { h } from "./dom.js";

let counter = 0;

/** Resolves true when the user confirms, false when they decline (button, Escape). */
export function confirmDialog({ title, message, confirmLabel, cancelLabel = "Keep it", danger = true }) {
  const id = `confirm-${++counter}`;
  return new Promise((resolve) => {
    const keep = h("button.secondary", { type: "button", value: "no" }, cancelLabel);
    const go = h(danger ? "button.danger" : "button", { type: "button", value: "yes" }, confirmLabel);
    const dialog = h("dialog.confirm", { "aria-labelledby": `${id}-t`, "aria-describedby": `${id}-d` },
      h("h2", { id: `${id}-t` }, title),
      h("p", { id: `${id}-d` }, message),
      h("div.buttons", keep, go));
    let answer = false;
    keep.addEventListener("click", () => dialog.close());
    go.addEventListener("click", () => { answer = true; dialog.close(); });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    keep.focus();
  });
}

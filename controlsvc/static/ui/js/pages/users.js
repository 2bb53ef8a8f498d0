// Users (admin): list, invite, change role, disable or enable.

import { api, currentUser, hasRole, listAll } from "../api.js";
import { h, clear } from "../dom.js";
import { field, formError, showErrors, clearErrors } from "../forms.js";
import { fmtTime, stateWord, tone } from "../format.js";

const ROLES = ["viewer", "operator", "admin"];

export function usersPage(main) {
  if (!hasRole("admin")) {
    clear(main, h("h1", "Users"), h("p", "Only administrators manage users."));
    return null;
  }
  const rows = h("tbody");
  const message = h("p.notice", { role: "status", hidden: true });
  const email = field("Email", h("input", { type: "email", name: "email", required: true }));
  const role = field("Role", h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r, selected: r === "operator" }, r))));
  const submit = h("button", { type: "submit" }, "Send invite");
  const form = h("form.inline-form", { novalidate: true, "aria-labelledby": "invite-h" },
    email.row, role.row, submit, formError());
  clear(main, h("h1", "Users"), message,
    h("section.panel", h("h2#invite-h", "Invite a user"), form),
    h("section.panel", h("h2", "Accounts"),
      h("div.table-wrap", h("table.data",
        h("thead", h("tr", ["Email", "Role", "State", "Last login", ""].map((c) => h("th", { scope: "col" }, c)))),
        rows))));

  function say(text) {
    message.hidden = false;
    message.textContent = text;
  }

  async function patch(user, change, what) {
    try {
      await api("PATCH", `/api/users/${user.id}`, change);
      say(`${user.email}: ${what}.`);
    } catch (err) {
      say(`Could not change ${user.email}: ${err.message}`);
    }
    load();
  }

  function row(user) {
    const me = currentUser()?.id === user.id;
    const select = h("select", { "aria-label": `Role of ${user.email}`, disabled: me,
      onchange: () => patch(user, { role: select.value }, `role is now ${select.value}`) },
    ROLES.map((r) => h("option", { value: r, selected: r === user.role }, r)));
    return h("tr", { dataset: { user: user.email } },
      h("td", user.email, me ? h("span.muted", " (you)") : null),
      h("td", select),
      h("td", h(`span.badge.tone-${tone(user.state)}`, stateWord(user.state))),
      h("td", fmtTime(user.last_login_at)),
      h("td", me ? null : h("button.secondary.small", { type: "button",
        onclick: () => patch(user, { disabled: !user.disabled }, user.disabled ? "enabled" : "disabled") },
      user.disabled ? `Enable ${user.email}` : `Disable ${user.email}`)));
  }

  async function load() {
    try {
      const users = await listAll("/api/users", {}, 2000, 200);
      clear(rows, users.map(row));
    } catch (err) {
      clear(rows, h("tr", h("td", { colspan: 5, class: "error-text" }, `Could not load users: ${err.message}`)));
    }
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      const user = await api("POST", "/api/users/invites", { email: email.input.value.trim(), role: role.input.value });
      say(`Invite sent to ${user.email} (${user.role}).`);
      email.input.value = "";
      load();
    } catch (err) {
      showErrors(form, err, { email, role });
    } finally {
      submit.disabled = false;
    }
  });
  load();
  return null;
}

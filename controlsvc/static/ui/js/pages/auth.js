// Login, request a password reset, and the pages behind the emailed links.

import { api, login, storeTokens } from "../api.js";
import { h, clear } from "../dom.js";
import { field, formError, showErrors, clearErrors } from "../forms.js";

function card(title, ...content) {
  return h("div.auth-card", h("h1", title), ...content);
}

export function loginPage(main, flash) {
  const email = field("Email", h("input", { type: "email", name: "email", autocomplete: "username", required: true }));
  const password = field("Password", h("input", { type: "password", name: "password", autocomplete: "current-password", required: true }));
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { novalidate: true }, email.row, password.row, formError(), submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      await login(email.input.value.trim(), password.input.value); // main.js routes on
    } catch (err) {
      showErrors(form, err, { email, password });
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, card("Log in to jaxmba",
    flash ? h("p.notice", { role: "status" }, flash) : null,
    form,
    h("p", h("a", { href: "#/forgot" }, "Forgot your password?"))));
  email.input.focus();
}

export function requestResetPage(main) {
  const email = field("Email", h("input", { type: "email", autocomplete: "username", required: true }));
  const submit = h("button", { type: "submit" }, "Send me a link");
  const done = h("p.notice", { role: "status", hidden: true });
  const form = h("form", { novalidate: true }, email.row, formError(), submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const answer = await api("POST", "/api/auth/password-reset", { email: email.input.value.trim() }, { anonymous: true });
      clearErrors(form);
      done.textContent = answer.detail;
      done.hidden = false;
    } catch (err) {
      showErrors(form, err, { email });
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, card("Reset your password",
    h("p", "We email a link to set a new password."), form, done,
    h("p", h("a", { href: "#/login" }, "Back to log in"))));
  email.input.focus();
}

/** /invite/<token> and /reset-password/<token>: choose a password. */
export function linkPage(main, { kind, token }) {
  const invite = kind === "invite";
  const password = field("New password", h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 }),
    "At least 8 characters, not a common password.");
  const again = field("Repeat the password", h("input", { type: "password", autocomplete: "new-password", required: true }));
  const submit = h("button", { type: "submit" }, invite ? "Set password and log in" : "Set new password");
  const form = h("form", { novalidate: true }, password.row, again.row, formError(), submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (password.input.value !== again.input.value) {
      showErrors(form, { errors: [{ field: "again", message: "the two passwords differ" }] }, { again });
      return;
    }
    submit.disabled = true;
    const path = invite
      ? `/api/auth/invites/${encodeURIComponent(token)}`
      : `/api/auth/password-reset/${encodeURIComponent(token)}`;
    try {
      const body = await api("POST", path, { password: password.input.value }, { anonymous: true });
      if (invite) {
        history.replaceState(null, "", "/#/");
        storeTokens(body); // main.js routes on
      } else {
        clear(main, card("Password changed",
          h("p.notice", { role: "status" }, "Your password is set. Every earlier login has ended."),
          h("p", h("a", { href: "/#/login" }, "Log in"))));
      }
    } catch (err) {
      if (err.status === 404) err.errors = [];
      showErrors(form, err, { password });
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, card(invite ? "Welcome to jaxmba" : "Choose a new password",
    h("p", invite ? "Choose a password to activate your account." : "Enter your new password."),
    form));
  password.input.focus();
}

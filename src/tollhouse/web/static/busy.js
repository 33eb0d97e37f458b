// Progress for every form: once a form is submitted its button shows that the request is
// running (a spinner and `data-busy`'s words, or "Working…") and a second submit is ignored
// until the page answers. Links marked `data-busy` (Stripe Connect, which leaves for Stripe)
// show the same. Without JavaScript forms work as before.
"use strict";

function markBusy(element, words) {
  element.classList.add("is-busy");
  element.setAttribute("aria-busy", "true");
  element.setAttribute("aria-disabled", "true");
  element.dataset.idle = element.textContent;
  element.textContent = words || element.dataset.busy || "Working…";
}

function markIdle(element) {
  element.classList.remove("is-busy");
  element.removeAttribute("aria-busy");
  element.removeAttribute("aria-disabled");
  if (element.dataset.idle !== undefined) {
    element.textContent = element.dataset.idle;
    delete element.dataset.idle;
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  if (form.dataset.submitting) {
    event.preventDefault();
    return;
  }
  form.dataset.submitting = "true";
  form.setAttribute("aria-busy", "true");
  const button = event.submitter || form.querySelector("button[type=submit], button:not([type])");
  // The button is marked, not disabled: a disabled submitter would drop its name and value
  // from what the form sends.
  if (button) markBusy(button);
});

document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-busy]") : null;
  if (!link) return;
  if (link.classList.contains("is-busy")) {
    event.preventDefault();
    return;
  }
  markBusy(link);
});

// Back to a page kept in the browser's cache: its forms and links are idle again.
window.addEventListener("pageshow", () => {
  for (const form of document.querySelectorAll("form[data-submitting]")) {
    delete form.dataset.submitting;
    form.removeAttribute("aria-busy");
  }
  for (const element of document.querySelectorAll(".is-busy")) markIdle(element);
});

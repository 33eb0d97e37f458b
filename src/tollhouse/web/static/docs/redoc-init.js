// Starts ReDoc on /redoc (no inline script, so the page keeps a self-only CSP).
"use strict";
const root = document.getElementById("redoc");
Redoc.init(root.dataset.openapiUrl, {}, root);

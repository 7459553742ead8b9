// Starts Swagger UI on the exchange's own OpenAPI (no inline script: the page's CSP forbids it).
"use strict";
(function () {
  var holder = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: holder.getAttribute("data-openapi"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null
  });
})();

// The API docs at /docs: Swagger UI, whose scripts this server serves itself (the swagger-ui-bundle-v2 package),
// showing /openapi.json. Nothing is fetched from elsewhere: no CDN, no validator badge.
"use strict";

SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});

"""/api/v1/docs: a self-contained page that renders the OpenAPI document (no CDN).

Its script and style are files of this service (`/ui/static/apidocs.*`), as the
Content-Security-Policy allows no inline script.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dynvm API v1</title>
<link rel="stylesheet" href="/ui/static/apidocs.css"></head>
<body><h1>dynvm API v1</h1>
<p>Every route but this page and <a href="openapi.json">openapi.json</a> needs
<code>Authorization: Bearer &lt;token&gt;</code> (<code>dynvm token create</code>).
Errors are RFC 7807 problem details.</p>
<div id="ops">Loading <a href="openapi.json">openapi.json</a>...</div>
<script src="/ui/static/apidocs.js"></script></body></html>
"""

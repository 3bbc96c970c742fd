"""/api/v1/docs: a self-contained page that renders the OpenAPI document (no CDN)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dynvm API v1</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;margin-top:2em}
.op{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em 1em}
.m{display:inline-block;min-width:4.5em;font-weight:bold;font-family:monospace}
.GET{color:#0a6}.POST{color:#06c}.DELETE{color:#c30}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:20em}
details{margin:.3em 0}
</style></head>
<body><h1>dynvm API v1</h1>
<p>Every route but this page and <a href="openapi.json">openapi.json</a> needs
<code>Authorization: Bearer &lt;token&gt;</code> (<code>dynvm token create</code>).
Errors are RFC 7807 problem details.</p>
<div id="ops">Loading <a href="openapi.json">openapi.json</a>...</div>
<script>
function el(tag, attrs, text){const e=document.createElement(tag);
  for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function schemaBlock(title, schema){const d=el("details");d.appendChild(el("summary",{},title));
  d.appendChild(el("pre",{},JSON.stringify(schema,null,2)));return d;}
fetch("openapi.json").then(r=>r.json()).then(doc=>{
  const root=document.getElementById("ops");root.textContent="";
  const byTag={};
  for(const [path,ops] of Object.entries(doc.paths))for(const [m,op] of Object.entries(ops))
    (byTag[op.tags[0]]=byTag[op.tags[0]]||[]).push([m.toUpperCase(),path,op]);
  for(const [tag,ops] of Object.entries(byTag)){root.appendChild(el("h2",{},tag));
    for(const [m,path,op] of ops){const box=el("div",{class:"op"});
      const head=el("div");head.appendChild(el("span",{class:"m "+m},m));
      head.appendChild(el("code",{},path));head.appendChild(document.createTextNode(" \\u2014 "+op.summary));
      box.appendChild(head);
      if(op.parameters.length)box.appendChild(schemaBlock("parameters",op.parameters));
      if(op.requestBody)box.appendChild(schemaBlock("body",op.requestBody.content["application/json"].schema));
      box.appendChild(schemaBlock("responses",op.responses));root.appendChild(box);}}
  root.appendChild(el("h2",{},"schemas"));
  for(const [name,s] of Object.entries(doc.components.schemas))root.appendChild(schemaBlock(name,s));
}).catch(e=>{document.getElementById("ops").textContent="could not load openapi.json: "+e;});
</script></body></html>
"""

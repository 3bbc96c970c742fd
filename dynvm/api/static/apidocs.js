// Renders /api/v1/openapi.json on /api/v1/docs (served from here: no inline script).
"use strict";
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
      head.appendChild(el("code",{},path));head.appendChild(document.createTextNode(" \u2014 "+op.summary));
      box.appendChild(head);
      if(op.parameters.length)box.appendChild(schemaBlock("parameters",op.parameters));
      if(op.requestBody)box.appendChild(schemaBlock("body",op.requestBody.content["application/json"].schema));
      box.appendChild(schemaBlock("responses",op.responses));root.appendChild(box);}}
  root.appendChild(el("h2",{},"schemas"));
  for(const [name,s] of Object.entries(doc.components.schemas))root.appendChild(schemaBlock(name,s));
}).catch(e=>{document.getElementById("ops").textContent="could not load openapi.json: "+e;});

"""The page at ``/``: type a text, see the prediction, its explanation shading and (with a
routing table) the route. One self-contained HTML file; it calls the service's own API."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attnkit</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
textarea{width:100%;height:5rem;font:inherit}select,button,input{font:inherit}
#out{margin-top:1rem}.w{padding:1px 2px;border-radius:3px}.muted{color:#777}
table{border-collapse:collapse}td{padding:2px 8px;border-bottom:1px solid #eee}
</style></head><body>
<h1>attnkit</h1>
<p class="muted">Type a text and press Predict. API: <a href="docs">/docs</a></p>
<p><label>Model <select id="model"></select></label>
<label>API key <input id="key" type="password" size="16"></label></p>
<textarea id="text">the staff were kind and the room was spotless</textarea>
<p><button id="go">Predict</button> <button id="route">Route</button></p>
<div id="out"></div>
<script>
const $ = id => document.getElementById(id);
function headers(){const h={"content-type":"application/json"};const k=$("key").value;if(k)h.authorization="Bearer "+k;return h}
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]))}
async function call(path, body){
  const r = await fetch(path,{method:body?"POST":"GET",headers:headers(),body:body?JSON.stringify(body):undefined});
  const j = await r.json(); if(!r.ok) throw new Error(j.error?j.error.message:r.statusText); return j}
async function models(){
  try{const j=await call("v1/models");$("model").innerHTML=j.models.map(m=>`<option>${esc(m.name)}</option>`).join("")}
  catch(e){$("out").innerHTML=`<p id="error">${esc(e.message)}</p>`}}
function shade(tokens, scores){
  const m=Math.max(1e-9,...scores.map(Math.abs));
  return tokens.map((t,i)=>`<span class="w" style="background:rgba(230,85,13,${(Math.abs(scores[i])/m).toFixed(3)})">${esc(t)}</span>`).join(" ")}
async function predict(){
  const name=$("model").value, texts=[$("text").value];
  try{
    const p=(await call(`v1/models/${encodeURIComponent(name)}/predict`,{texts})).predictions[0];
    let html="";
    if(p.label!==undefined){
      html+=`<p id="label"><b>${esc(p.label)}</b></p><table>`+Object.entries(p.scores).map(([k,v])=>`<tr><td>${esc(k)}</td><td>${v.toFixed(3)}</td></tr>`).join("")+"</table>";
      const x=(await call(`v1/models/${encodeURIComponent(name)}/explain`,{texts})).explanations[0];
      html+=`<p id="shading">${shade(x.tokens,x.scores)}</p>`;
    } else if(p.tags!==undefined){
      html+=`<p id="label">`+p.tokens.map((t,i)=>`${esc(t)}<sub>${esc(p.tags[i])}</sub>`).join(" ")+"</p>";
    } else { html+=`<pre id="label">${esc(JSON.stringify(p,null,1))}</pre>` }
    $("out").innerHTML=html;
  }catch(e){$("out").innerHTML=`<p id="error">${esc(e.message)}</p>`}}
async function route(){
  try{const r=(await call("v1/route",{texts:[$("text").value]})).routes[0];
    $("out").innerHTML=`<p id="routed">route <b>${esc(r.route)}</b>${r.handoff?" (handed to a person)":""}: intent ${esc(r.intent)}, confidence ${r.confidence.toFixed(3)} <span class="muted">${esc(r.reason)}</span></p>`}
  catch(e){$("out").innerHTML=`<p id="error">${esc(e.message)}</p>`}}
$("go").onclick=predict; $("route").onclick=route; $("key").onchange=models; models();
</script></body></html>
"""

/* A static Microscope: routes #/, #/layer/NAME[/view/VIEW], #/layer/NAME/unit/U[/view/VIEW].
   Data comes from <script> files (data/index.js, data/layer-*.js): no fetch, works from file://. */
"use strict";
(function () {
  const A = window.ATLAS;
  const layerData = {};
  window.ATLAS_LAYER = function (name, data) { layerData[name] = data; };
  const app = document.getElementById("app");
  const crumbs = document.getElementById("crumbs");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }
  function layerInfo(name) { return A.layers.find((layer) => layer.name === name); }
  function unitUrl(layer, unit, view) {
    return "#/layer/" + encodeURIComponent(layer) + "/unit/" + unit + (view ? "/view/" + view : "");
  }
  function layerUrl(layer, view) {
    return "#/layer/" + encodeURIComponent(layer) + (view ? "/view/" + view : "");
  }
  function picture(layer, unit, view, alt) {
    const info = layerInfo(layer);
    const file = info && info.images[view] && info.images[view][unit];
    if (!file) return el("div", { class: "missing", title: "not in the atlas yet", text: "missing" });
    return el("img", { src: file, alt: alt || layer + " unit " + unit + " " + view, loading: "lazy" });
  }
  function withLayer(name, then) {
    if (layerData[name]) return then(layerData[name]);
    const info = layerInfo(name);
    const script = el("script", { src: info.data });
    script.onload = () => then(layerData[name] || {});
    script.onerror = () => then({});
    document.body.appendChild(script);
  }
  function setCrumbs(parts) {
    crumbs.textContent = "";
    for (const [text, href] of parts) {
      crumbs.appendChild(document.createTextNode(" / "));
      crumbs.appendChild(href ? el("a", { href: href, text: text }) : el("span", { text: text }));
    }
  }

  function modelPage() {
    setCrumbs([[A.model, null]]);
    const filter = el("input", { class: "filter", placeholder: "filter layers", id: "filter" });
    const rows = A.layers.map((layer) => {
      const strip = el("div", { class: "strip" },
        layer.units.slice(0, 8).map((u) => picture(layer.name, u, A.views[0])));
      return el("a", { class: "layer-row", href: layerUrl(layer.name), "data-name": layer.name }, [
        el("span", { class: "name", text: layer.name }),
        el("span", { class: "muted count", text: layer.units.length + " / " + layer.count + " units" }),
        strip,
      ]);
    });
    filter.addEventListener("input", () => {
      const query = filter.value.toLowerCase();
      for (const row of rows) row.style.display = row.dataset.name.toLowerCase().includes(query) ? "" : "none";
    });
    app.replaceChildren(el("h1", { text: A.model }),
      el("div", { class: "muted", text: A.layers.length + " layers, " + A.total_units + " units, views: " + A.views.join(", ") }),
      filter, el("div", { id: "layers" }, rows));
    filter.focus();
  }

  function viewButtons(current, hrefOf) {
    return el("div", { class: "views" }, A.views.map((view) =>
      el("button", { class: view === current ? "on" : "", "data-view": view, text: view,
        onclick: () => { location.hash = hrefOf(view); } })));
  }

  function layerPage(name, view) {
    const info = layerInfo(name);
    if (!info) return notFound("layer " + name);
    view = view || A.views[0];
    setCrumbs([[A.model, "#/"], [name, null]]);
    const grid = el("div", { class: "grid", id: "grid" }, info.units.map((u) =>
      el("a", { class: "cell", href: unitUrl(name, u, view === A.views[0] ? null : view) },
        [picture(name, u, view), el("span", { text: String(u) })])));
    app.replaceChildren(el("h1", { text: name }),
      el("div", { class: "muted", text: info.type + " " + info.shape.join("x") + ", " + info.units.length + " units" }),
      viewButtons(view, (v) => layerUrl(name, v)), el("p"), grid);
  }

  function examplesRow(list, size) {
    return el("div", { class: "examples" }, (list || []).map((ex) => {
      const [top, left, bottom, right] = ex.box;
      const box = el("div", { class: "box" });
      box.style.top = (100 * top / size[0]) + "%";
      box.style.left = (100 * left / size[1]) + "%";
      box.style.height = (100 * (bottom - top) / size[0]) + "%";
      box.style.width = (100 * (right - left) / size[1]) + "%";
      const file = A.examples[ex.index];
      const image = file ? el("img", { src: file, alt: "dataset image " + ex.index, title: ex.source })
        : el("div", { class: "missing", text: "missing" });
      return el("div", { class: "example" }, [image, box, el("span", { class: "value", text: ex.value.toFixed(2) })]);
    }));
  }

  function linksRow(entry) {
    if (!entry || !entry.layer || !layerInfo(entry.layer)) {
      return el("div", { class: "muted", text: entry ? "from " + (entry.layer || "the input") : "none" });
    }
    const covered = layerInfo(entry.layer).units;
    return el("div", { class: "links" }, entry.units.map((u, i) => {
      const label = el("span", { text: entry.layer + ":" + u + " (" + Number(entry.strength[i]).toFixed(2) + ")" });
      if (!covered.includes(u)) return el("span", { class: "link", title: "not in this atlas" }, [picture(entry.layer, u, A.views[0]), label]);
      return el("a", { href: unitUrl(entry.layer, u), class: "link" }, [picture(entry.layer, u, A.views[0]), label]);
    }));
  }

  function connectionsBlock(links) {
    if (!links) return el("p", { class: "muted", text: "Connections were not computed for this atlas." });
    if (links.available === false) return el("p", { class: "muted", text: "Connections not available: " + links.reason });
    return el("div", {}, [el("h3", { text: "Strongest inputs" }), linksRow(links.in),
      el("h3", { text: "Strongest outputs" }), linksRow(links.out)]);
  }

  function unitPage(name, unit) {
    const info = layerInfo(name);
    if (!info || !info.units.includes(unit)) return notFound(name + " unit " + unit);
    setCrumbs([[A.model, "#/"], [name, layerUrl(name)], ["unit " + unit, null]]);
    const position = info.units.indexOf(unit);
    const previous = info.units[position - 1], next = info.units[position + 1];
    const nav = el("div", { class: "nav" }, [
      previous !== undefined ? el("a", { href: unitUrl(name, previous), id: "prev", text: "< unit " + previous }) : null,
      next !== undefined ? el("a", { href: unitUrl(name, next), id: "next", text: "unit " + next + " >" }) : null,
      el("span", { class: "muted", text: "(arrow keys: previous / next unit)" })]);
    const views = el("div", { class: "unit-views" }, A.views.map((view) =>
      el("figure", {}, [picture(name, unit, view), el("figcaption", { text: view })])));
    const body = el("div", { id: "unit-body", text: "Loading..." });
    app.replaceChildren(el("h1", { text: name + " unit " + unit }), nav, views, body);
    withLayer(name, (data) => {
      const examples = data.examples && data.examples[unit];
      const facts = el("table", { class: "facts" }, Object.entries(info.facts).map(([key, value]) =>
        el("tr", {}, [el("td", { class: "muted", text: key }), el("td", { text: String(value) })])));
      body.replaceChildren(
        el("h2", { text: "Dataset examples" }),
        examples ? el("div", { id: "examples" }, [el("div", { class: "muted", text: "most positive" }),
          examplesRow(examples.top, data.input_size), el("div", { class: "muted", text: "most negative" }),
          examplesRow(examples.bottom, data.input_size)])
          : el("p", { class: "muted", text: "No dataset pass in this atlas." }),
        el("h2", { text: "Connections" }), el("div", { id: "connections" }, [connectionsBlock(data.links && data.links[unit])]),
        el("h2", { text: "Layer facts" }), facts);
    });
  }

  function notFound(what) {
    setCrumbs([[A.model, "#/"]]);
    app.replaceChildren(el("h1", { text: "Not found" }), el("p", { text: what + " is not in this atlas." }));
  }

  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    if (parts[0] === "layer" && parts[1]) {
      if (parts[2] === "unit") return unitPage(parts[1], Number(parts[3]));
      return layerPage(parts[1], parts[2] === "view" ? parts[3] : null);
    }
    return modelPage();
  }

  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT") return;
    const link = document.getElementById(event.key === "ArrowLeft" || event.key === "k" ? "prev"
      : event.key === "ArrowRight" || event.key === "j" ? "next" : "");
    if (link) { event.preventDefault(); location.hash = link.getAttribute("href"); }
  });
  window.addEventListener("hashchange", route);
  route();
})();

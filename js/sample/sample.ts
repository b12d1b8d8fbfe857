// Sample panel: an image through the network (upload or w.sample = image): its predictions and,
// for the selected layer, the units it excites most with their activation maps.
import { sampleViews } from "../blocks/views";
import { BlobUrls, objectUrl, signature, toBytes } from "../shared/binary";
import { Bindings, formatNumber, h } from "../shared/dom";
import type { AnyModel, Prediction, SampleUnit } from "../shared/types";

function predictionRow(prediction: Prediction): HTMLElement {
  const percent = Math.max(0, Math.min(100, prediction.probability * 100));
  const fill = h("span", { class: "lw-prediction-fill" });
  fill.style.width = `${percent.toFixed(1)}%`;
  return h(
    "li",
    { class: "lw-prediction", "data-testid": "lw-prediction", "data-class": prediction.index, title: `logit ${formatNumber(prediction.logit)}` },
    h("span", { class: "lw-prediction-label" }, prediction.label),
    h("span", { class: "lw-prediction-bar" }, fill),
    h("span", { class: "lw-prediction-value" }, `${percent.toFixed(1)}%`),
  );
}

export function samplePanel(model: AnyModel, bindings: Bindings): HTMLElement {
  const input = h("input", { type: "file", accept: "image/*", class: "lw-file", "data-testid": "lw-sample-upload" });
  const upload = h("label", { class: "lw-button lw-small lw-upload", title: "Run an image file through the network" }, input, "Upload image…");
  const name = h("span", { class: "lw-sample-name", "data-testid": "lw-sample-name" });
  const status = h("span", { class: "lw-sample-status", "data-testid": "lw-sample-status" });
  const image = h("img", { class: "lw-sample-image", "data-testid": "lw-sample-image", alt: "sample image" });
  const placeholder = h("div", { class: "lw-sample-empty", "data-testid": "lw-sample-empty" }, "No sample image. Upload one, or in Python: w.sample = image (path, PIL, array, tensor).");
  const predictions = h("ol", { class: "lw-predictions", "data-testid": "lw-predictions" });
  const unitsTitle = h("div", { class: "lw-section-sub", "data-testid": "lw-sample-units-title" });
  const units = h("div", { class: "lw-sample-units", "data-testid": "lw-sample-units" });
  const blocks = sampleViews(model, bindings);
  const root = h(
    "section",
    { class: "lw-sample", "data-testid": "lw-sample" },
    h("header", { class: "lw-sample-head" }, h("span", { class: "lw-section-title" }, "Sample image"), upload, name, status, blocks.tabs),
    h(
      "div",
      { class: "lw-sample-body" },
      h("div", { class: "lw-sample-picture" }, image, placeholder),
      h("div", { class: "lw-sample-side" }, h("div", { class: "lw-section-sub" }, "Predictions"), predictions, unitsTitle, units),
    ),
    blocks.body,
  );
  let imageUrl: string | null = null;
  let imageSig = "";
  let unitsDrawn = "";
  const urls = new BlobUrls(bindings);
  bindings.add(() => imageUrl && URL.revokeObjectURL(imageUrl));

  const showPicture = (url: string | null): void => {
    if (url) image.src = url;
    else image.removeAttribute("src");
  };

  const unitCard = (entry: SampleUnit, blob: Uint8Array | null): HTMLElement => {
    const mapUrl = urls.url(blob, entry.map);
    const thumbUrl = urls.url(blob, entry.thumb);
    const pictures = h("span", { class: "lw-sample-unit-pics" });
    if (thumbUrl) pictures.append(h("img", { class: "lw-sample-thumb", "data-testid": "lw-sample-thumb", src: thumbUrl, alt: `unit ${entry.unit} visualization` }));
    else pictures.append(h("span", { class: "lw-sample-nothumb", title: "its grid thumbnail is not rendered yet" }, "not rendered"));
    if (mapUrl) pictures.append(h("img", { class: "lw-sample-map", "data-testid": "lw-sample-map", src: mapUrl, alt: `unit ${entry.unit} activation map` }));
    const card = h(
      "button",
      { type: "button", class: "lw-sample-unit", "data-testid": "lw-sample-unit", "data-unit": entry.unit, title: `unit ${entry.unit} · max activation ${formatNumber(entry.value)} · click: open the unit` },
      pictures,
      h("span", { class: "lw-example-caption" }, h("span", { class: "lw-sample-unit-name" }, `unit ${entry.unit}`), h("span", { class: "lw-sample-value", "data-testid": "lw-sample-value" }, formatNumber(entry.value))),
    );
    card.disabled = model.get("readonly");
    card.addEventListener("click", () => model.send({ type: "open_unit", unit: entry.unit, layer: model.get("layer") }));
    card.addEventListener("mouseenter", () => mapUrl && showPicture(mapUrl));
    card.addEventListener("mouseleave", () => showPicture(imageUrl));
    return card;
  };

  const draw = (): void => {
    const info = model.get("sample_info") ?? {};
    const bytes = toBytes(model.get("sample_image"));
    const sig = bytes && bytes.length ? signature(bytes) : "";
    if (sig !== imageSig) {
      imageSig = sig;
      const old = imageUrl;
      if (old) setTimeout(() => URL.revokeObjectURL(old), 5000);
      imageUrl = bytes && bytes.length ? objectUrl(bytes) : null;
      showPicture(imageUrl);
    }
    image.hidden = !imageUrl;
    placeholder.hidden = Boolean(imageUrl);
    const state = info.state ?? "";
    root.dataset.state = state || "empty";
    status.dataset.state = state;
    status.textContent = state === "running" ? "running…" : state === "error" ? `error: ${info.message ?? ""}` : "";
    name.textContent = info.name ?? "";
    predictions.replaceChildren(...(info.predictions ?? []).map(predictionRow));
    const layer = model.get("layer");
    const row = (model.get("layers") ?? []).find((entry) => entry.name === layer);
    const layerName = row?.alias || layer;
    const fresh = state === "done" && info.layer === layer && Boolean(layer);
    const blob = toBytes(model.get("sample_blob"));
    const key = JSON.stringify([fresh, info.units, model.get("readonly")]) + (blob ? signature(blob) : "");
    if (key !== unitsDrawn) {
      unitsDrawn = key;
      urls.clear();
      units.replaceChildren(...(fresh ? info.units ?? [] : []).map((entry) => unitCard(entry, blob)));
    }
    unitsTitle.textContent = !layer ? "Pick a layer to see the units this image excites most" : fresh ? `Units of ${layerName} it excites most` : imageUrl ? `Running ${layerName}…` : "";
    upload.hidden = model.get("readonly");
    const unitsView = model.get("sample_view") === "units";
    units.hidden = !unitsView;
    unitsTitle.hidden = !unitsView;
  };

  bindings.listen(input, "change", () => {
    const file = input.files?.[0];
    if (!file || model.get("readonly")) return;
    void file.arrayBuffer().then((buffer) => {
      model.send({ type: "sample_upload", name: file.name }, undefined, [buffer]);
      input.value = "";
    });
  });
  bindings.on(["sample_info", "sample_image", "sample_blob", "layer", "readonly", "sample_view"], draw);
  draw();
  return root;
}

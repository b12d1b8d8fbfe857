// Settings forms: the live preview's (steps, size, lr, seed, param, ...) and the grid's.
import { Bindings, h, save } from "../shared/dom";
import { PARAMS } from "../shared/types";
import type { AnyModel, GridSettings, PreviewSettings } from "../shared/types";

type Field =
  | { key: string; label: string; kind: "number"; min: number; max: number; step: number; title: string }
  | { key: string; label: string; kind: "bool"; title: string }
  | { key: string; label: string; kind: "select"; options: string[]; title: string };

const PREVIEW_FIELDS: Field[] = [
  { key: "steps", label: "steps", kind: "number", min: 1, max: 100000, step: 1, title: "Optimizer steps of the run" },
  { key: "size", label: "size", kind: "number", min: 8, max: 2048, step: 8, title: "Image side in pixels (restarts)" },
  { key: "lr", label: "lr", kind: "number", min: 0.0001, max: 10, step: 0.01, title: "Learning rate: Adam's, NAdam's with maco; choosing a param resets it to that param's default (applies at the next step)" },
  { key: "seed", label: "seed", kind: "number", min: 0, max: 2147483647, step: 1, title: "Random seed (restarts)" },
  { key: "batch", label: "batch", kind: "number", min: 1, max: 64, step: 1, title: "Images optimized at once (restarts)" },
  { key: "diversity", label: "diversity", kind: "number", min: 0, max: 1000000, step: 1, title: "Weight of the diversity penalty: objective − w · diversity(layer) (batch ≥ 2)" },
  { key: "param", label: "param", kind: "select", options: [...PARAMS], title: "Image parameterization: fft / pixel (Lucid's), maco (phase only, natural spectrum, its own crops; restarts)" },
  { key: "decorrelate", label: "decorrelate", kind: "bool", title: "Decorrelated colour space (restarts)" },
  { key: "alpha", label: "alpha", kind: "bool", title: "Transparent (RGBA) image; with maco: its transparency map (where the gradient went) as alpha (restarts)" },
  { key: "transforms", label: "transforms", kind: "bool", title: "Random jitter / scale / rotate each step; with maco: its random crops (applies at the next step)" },
];

const GRID_FIELDS: Field[] = [
  { key: "size", label: "size", kind: "number", min: 8, max: 1024, step: 8, title: "Thumbnail side in pixels" },
  { key: "steps", label: "steps", kind: "number", min: 1, max: 100000, step: 1, title: "Optimizer steps per batch" },
  { key: "batch_size", label: "batch", kind: "number", min: 1, max: 256, step: 1, title: "Units rendered together" },
  { key: "seed", label: "seed", kind: "number", min: 0, max: 2147483647, step: 1, title: "Random seed" },
  { key: "param", label: "param", kind: "select", options: [...PARAMS], title: "Image parameterization: fft / pixel (Lucid's), maco" },
  { key: "decorrelate", label: "decorrelate", kind: "bool", title: "Decorrelated colour space" },
  { key: "transforms", label: "transforms", kind: "bool", title: "Random jitter / scale / rotate" },
];

function form(
  model: AnyModel,
  bindings: Bindings,
  trait: "settings" | "grid_settings",
  fields: Field[],
  prefix: string,
): HTMLElement[] {
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();
  const controls = fields.map((field) => {
    const testid = `${prefix}-${field.key}`;
    let input: HTMLInputElement | HTMLSelectElement;
    if (field.kind === "select") {
      input = h("select", { "data-testid": testid, name: field.key }, ...field.options.map((option) => h("option", { value: option }, option)));
    } else if (field.kind === "bool") {
      input = h("input", { type: "checkbox", "data-testid": testid, name: field.key });
    } else {
      input = h("input", { type: "number", "data-testid": testid, name: field.key, min: field.min, max: field.max, step: field.step });
    }
    inputs.set(field.key, input);
    bindings.listen(input, "change", () => {
      const current = { ...(model.get(trait) as unknown as Record<string, unknown>) };
      if (field.kind === "bool") current[field.key] = (input as HTMLInputElement).checked;
      else if (field.kind === "select") current[field.key] = input.value;
      else {
        const value = Number(input.value);
        if (!Number.isFinite(value)) return;
        current[field.key] = value;
      }
      if (trait === "settings") save(model, "settings", current as unknown as PreviewSettings);
      else save(model, "grid_settings", current as unknown as GridSettings);
    });
    const cls = field.kind === "bool" ? "lw-field lw-field-bool" : "lw-field";
    return field.kind === "bool"
      ? h("label", { class: cls, title: field.title }, input, field.label)
      : h("label", { class: cls, title: field.title }, h("span", {}, field.label), input);
  });
  const draw = (): void => {
    const values = (model.get(trait) ?? {}) as unknown as Record<string, unknown>;
    const locked = model.get("readonly") || model.get("external");
    for (const [key, input] of inputs) {
      const value = values[key];
      if (input instanceof HTMLInputElement && input.type === "checkbox") input.checked = Boolean(value);
      else if (document.activeElement !== input && value !== undefined) input.value = String(value);
      input.disabled = locked;
    }
  };
  bindings.on([trait, "readonly", "external"], draw);
  draw();
  return controls;
}

export function previewSettingsForm(model: AnyModel, bindings: Bindings): HTMLElement {
  return h(
    "details",
    { class: "lw-settings", "data-testid": "lw-settings" },
    h("summary", {}, "Settings"),
    h("div", { class: "lw-fields" }, ...form(model, bindings, "settings", PREVIEW_FIELDS, "lw-setting")),
  );
}

export function gridSettingsForm(model: AnyModel, bindings: Bindings): HTMLElement {
  return h(
    "details",
    { class: "lw-settings lw-grid-settings", "data-testid": "lw-grid-settings" },
    h("summary", {}, "Grid settings"),
    h("div", { class: "lw-fields" }, ...form(model, bindings, "grid_settings", GRID_FIELDS, "lw-grid-setting")),
  );
}

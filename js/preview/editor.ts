// Objective editor: type an expression, Enter applies it at the next step of the run.
import { Bindings, h, save } from "../shared/dom";
import type { AnyModel, ObjectiveError } from "../shared/types";

const HELP =
  "layer:unit terms combined with + − * / and numbers, e.g. mixed4a:476 − 0.5 * mixed4a:465 − 100 * diversity(mixed4a). " +
  "Functions: channel, neuron, deepdream, diversity, total_variation, L1, L2, class_logit, alignment. " +
  "layer:unit@x,y is a neuron at a position. Enter applies.";

function errorView(text: string, error: ObjectiveError, pick: (suggestion: string) => void): Node[] {
  const nodes: Node[] = [h("span", { class: "lw-error-text" }, error.message ?? "invalid objective")];
  const start = error.position ?? -1;
  if (start >= 0 && text) {
    const end = Math.max(start + 1, error.end ?? start + 1);
    nodes.push(
      h(
        "code",
        { class: "lw-error-snippet", "data-testid": "lw-objective-error-snippet" },
        text.slice(0, start),
        h("mark", {}, text.slice(start, end) || " "),
        text.slice(end),
      ),
    );
  }
  if (error.expected) nodes.push(h("span", { class: "lw-error-expected" }, `expected ${error.expected}`));
  const suggestions = error.suggestions ?? [];
  if (suggestions.length) {
    const buttons = suggestions.map((suggestion) => {
      const button = h("button", { type: "button", class: "lw-chip", "data-testid": "lw-objective-suggestion" }, suggestion);
      button.addEventListener("click", () => pick(suggestion));
      return button;
    });
    nodes.push(h("span", { class: "lw-suggestions" }, "did you mean ", ...buttons));
  }
  return nodes;
}

export function objectiveEditor(model: AnyModel, bindings: Bindings): HTMLElement {
  const input = h("input", {
    class: "lw-objective",
    "data-testid": "lw-objective",
    type: "text",
    spellcheck: "false",
    autocomplete: "off",
    placeholder: "layer:unit − 0.5 * layer:unit …",
    "aria-label": "Objective expression",
  });
  const apply = h("button", { type: "button", class: "lw-button lw-small", "data-testid": "lw-apply" }, "Apply");
  const error = h("div", { class: "lw-objective-error", "data-testid": "lw-objective-error", role: "alert" });
  const applied = h("div", { class: "lw-objective-applied", "data-testid": "lw-objective-applied" });
  const root = h(
    "div",
    { class: "lw-editor", "data-testid": "lw-editor" },
    h("label", { class: "lw-editor-label", title: HELP }, "Objective ", h("span", { class: "lw-help", title: HELP }, "?")),
    h("div", { class: "lw-editor-row" }, input, apply),
    error,
    applied,
  );
  let dirty = false;

  const submit = (): void => {
    dirty = false;
    input.classList.remove("lw-dirty");
    if (input.value !== model.get("objective")) save(model, "objective", input.value);
  };

  const pick = (suggestion: string): void => {
    const problem = model.get("objective_error") ?? {};
    const text = input.value;
    const start = problem.position ?? -1;
    if (start < 0) return;
    input.value = text.slice(0, start) + suggestion + text.slice(Math.max(start + 1, problem.end ?? start + 1));
    submit();
  };

  const draw = (): void => {
    const text = model.get("objective");
    if (!dirty && input.value !== text) input.value = text;
    const problem = model.get("objective_error") ?? {};
    const bad = Boolean(problem.message);
    error.replaceChildren(...(bad ? errorView(text, problem, pick) : []));
    error.hidden = !bad;
    input.setAttribute("aria-invalid", bad ? "true" : "false");
    const locked = model.get("readonly") || model.get("external");
    input.readOnly = locked;
    apply.hidden = locked;
    const running = model.get("objective_applied");
    applied.textContent = running && running !== text ? `running: ${running}` : "";
    applied.hidden = !applied.textContent;
  };

  bindings.listen(input, "input", () => {
    dirty = input.value !== model.get("objective");
    input.classList.toggle("lw-dirty", dirty);
  });
  bindings.listen(input, "keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
    } else if (event.key === "Escape") {
      dirty = false;
      input.classList.remove("lw-dirty");
      input.value = model.get("objective");
    }
    event.stopPropagation(); // keep Jupyter's keyboard shortcuts out of the editor
  });
  bindings.listen(apply, "click", submit);
  bindings.on(["objective", "objective_error", "objective_applied", "readonly", "external"], draw);
  draw();
  return root;
}
